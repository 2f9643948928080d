# Every target creates and uses its own virtual environment in .venv: nothing depends on what the
# machine already has installed beyond a Python >= 3.10.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run test check bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

# The main job: check every example spec, then train the digits CNN on built-in data.
run: $(STAMP)
	$(BIN)/nnc check specs
	$(BIN)/nnc summary specs/digits_cnn.nnspec
	$(BIN)/nnc train specs/digits_cnn.nnspec

test: $(STAMP)
	$(BIN)/python -m pytest

check: $(STAMP)
	$(BIN)/nnc check specs
	$(BIN)/nnc fmt --check specs

bench: $(STAMP)
	$(BIN)/python benchmarks/check_speed.py

clean:
	rm -rf $(VENV) runs .pytest_cache
