# Every target creates and uses its own virtual environment in .venv: nothing depends on what the
# machine already has installed beyond a Python >= 3.10.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup system-deps bytecode run test check bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

# Byte-compile nnc, as pip does for a regular (non-editable) install: Python then reads the .pyc
# files even where PYTHONDONTWRITEBYTECODE=1 (common in containers and CI) forbids writing them, and
# `nnc check` starts about twice as fast (docs/ci.md, Tips). Files edited since are compiled
# again here (the rest are skipped in a few milliseconds); a stale .pyc is never used.
bytecode: $(STAMP)
	$(BIN)/python -m compileall -q nnc

setup: bytecode

# Graphviz's `dot` draws `nnc graph -o net.svg`; without it those tests skip and say why. Installed
# with apt-get where that is possible (root on Debian or Ubuntu, as in CI); never fails the build.
system-deps:
	@if command -v dot >/dev/null 2>&1; then \
	    echo "graphviz: $$(dot -V 2>&1)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    export DEBIAN_FRONTEND=noninteractive; \
	    if apt-get install -y -q graphviz >/dev/null 2>&1 || \
	       { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q graphviz >/dev/null 2>&1; }; then \
	        echo "graphviz: installed, $$(dot -V 2>&1)"; \
	    else echo "graphviz: apt-get could not install it; the drawing tests of nnc graph skip"; fi; \
	else \
	    echo "graphviz: not installed (apt-get install graphviz, brew install graphviz); the drawing tests of nnc graph skip"; \
	fi

# The main job: check every example spec, then train the digits CNN on built-in data.
run: bytecode
	$(BIN)/nnc check specs
	$(BIN)/nnc summary specs/digits_cnn.nnspec
	$(BIN)/nnc train specs/digits_cnn.nnspec

test: bytecode
	$(BIN)/python -m pytest

check: bytecode
	$(BIN)/nnc check specs
	$(BIN)/nnc fmt --check specs

bench: bytecode
	$(BIN)/python benchmarks/check_speed.py

clean:
	rm -rf $(VENV) runs .pytest_cache
