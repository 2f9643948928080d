"""`nnc fmt`: golden input/output pairs, round trips and idempotence (sqlglot's validate_identity).

For every example spec, every golden file and every parseable spec of the error corpus:
    parse -> fmt -> parse gives the same syntax tree and, where the file compiles, the same IR
    (positions, the source text and the path left out); fmt(fmt(x)) == fmt(x); every comment
    survives. A Hypothesis test does the same for random specs laid out with random white space and
    comments between any two tokens.

    NNC_UPDATE_GOLDEN=1 pytest tests/test_format.py     # rewrite tests/fmt/*.out.nnspec

Read the diff before committing: the golden outputs are the documented canonical form.
"""
from __future__ import annotations

import dataclasses
import os
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnc.errors import NncError
from nnc.compiler.format import format_source
from nnc.compiler.lower import compile_source
from nnc.compiler.parse import decode_source, parse

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "fmt"
GOLDEN_INPUTS = sorted(GOLDEN.glob("*.in.nnspec"))
UPDATE = os.environ.get("NNC_UPDATE_GOLDEN") == "1"


def _read(path: Path) -> str | None:
    """The file's text as `nnc fmt` sees it, or None when it is not text or does not parse."""
    try:
        text = decode_source(path.read_bytes(), str(path))
        parse(text, str(path))
    except NncError:
        return None
    return text


def _corpus() -> list[Path]:
    # globbed at collection time: other engineers keep adding specs and error cases
    files = sorted((ROOT / "specs").glob("*.nnspec")) + GOLDEN_INPUTS
    files += sorted(GOLDEN.glob("*.out.nnspec"))
    files += [p for p in sorted((ROOT / "tests" / "errors").glob("*.nnspec")) if _read(p) is not None]
    return files


CORPUS = _corpus()


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT))


# ----------------------------------------------------------------------------------------------
# comparisons

def _strip(obj):
    """Syntax tree or IR dump as plain data, without positions."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return (type(obj).__name__,
                {f.name: _strip(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                 if not f.name.endswith("span") and f.name != "comments"})
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if not k.endswith("span")}
    if isinstance(obj, (list, tuple)):
        return [_strip(x) for x in obj]
    return obj


def _ast(text: str):
    return _strip(parse(text))


def _ir(text: str):
    """The compiled IR without spans, source and path; None when the file does not compile."""
    try:
        program = compile_source(text)
    except NncError:
        return None
    return _strip(program.model_dump(exclude={"source", "path"}))


def _comments(text: str) -> Counter:
    # NOTE: comment text is compared without trailing white space (fmt removes it, and a CRLF
    # file's comments end in "\r" as lark sees them)
    return Counter(c[2].rstrip() for c in parse(text, comments=True).comments)


def check_round_trip(text: str) -> str:
    """All the properties fmt promises, for one source text; returns the formatted text."""
    out = format_source(text)
    assert format_source(out) == out, "fmt is not idempotent"
    assert _ast(out) == _ast(text), "fmt changed the syntax tree"
    before = _ir(text)
    after = _ir(out)
    assert (before is None) == (after is None), "fmt changed whether the file compiles"
    assert after == before, "fmt changed the IR"
    assert _comments(out) == _comments(text), "fmt lost or changed a comment"
    if out:
        assert out.endswith("\n") and not out.endswith("\n\n"), "the file must end in one newline"
    for n, line in enumerate(out.split("\n"), 1):
        assert line == line.rstrip(), f"trailing white space on line {n}"
        assert "\r" not in line, f"carriage return on line {n}"
    return out


# ----------------------------------------------------------------------------------------------
# corpus

@pytest.mark.parametrize("path", CORPUS, ids=_id)
def test_round_trip(path: Path) -> None:
    text = _read(path)
    assert text is not None, f"{path} does not parse"
    check_round_trip(text)


@pytest.mark.parametrize("path", sorted((ROOT / "specs").glob("*.nnspec")), ids=_id)
def test_example_specs_are_canonical(path: Path) -> None:
    """`make check` runs `nnc fmt --check specs`: the examples are written in canonical form."""
    text = path.read_text(encoding="utf-8")
    assert format_source(text) == text, f"run `nnc fmt {_id(path)}`"


@pytest.mark.parametrize("path", GOLDEN_INPUTS, ids=lambda p: p.name.removesuffix(".in.nnspec"))
def test_golden(path: Path) -> None:
    expected_path = path.with_name(path.name.replace(".in.nnspec", ".out.nnspec"))
    out = format_source(decode_source(path.read_bytes(), str(path)), str(path))
    if UPDATE:
        expected_path.write_bytes(out.encode("utf-8"))
    assert expected_path.exists(), f"missing {expected_path.name}; run with NNC_UPDATE_GOLDEN=1"
    assert out == expected_path.read_bytes().decode("utf-8")


def test_golden_corpus_covers_the_brief() -> None:
    names = {p.name.removesuffix(".in.nnspec") for p in GOLDEN_INPUTS}
    assert len(names) >= 10
    raw = {n: (GOLDEN / f"{n}.in.nnspec").read_bytes() for n in names}
    assert any(b"\r\n" in b for b in raw.values()), "a CRLF input"
    assert any(b and not b.endswith(b"\n") for b in raw.values()), "an input without a final newline"
    assert any(b"\t" in b for b in raw.values()), "an input with tabs"


# ----------------------------------------------------------------------------------------------
# specific rules

@pytest.mark.parametrize("source, expected", [
    ("model m{input x:[2] dense(4)->relu}", "model m {\n    input x: [2]\n    dense(4) -> relu\n}\n"),
    ("model m {\n input t :int64[ 5 ,]\n}", "model m {\n    input t: int64 [5]\n}\n"),
    ("let a=50_000\nlet b = 1E-3\nlet c=.5\nlet d='q'", "let a = 50_000\nlet b = 1E-3\nlet c = .5\nlet d = 'q'\n"),
    ("train{x=f(1,k = [2,3,],)}", "train {\n    x = f(1, k=[2, 3])\n}\n"),
    ("train {\n a = 1\n long_key = 2\n}", "train {\n    a        = 1\n    long_key = 2\n}\n"),
    ("let a = 1 # c", "let a = 1                                  # c\n"),
    ("let a_much_longer_constant_name_here = [1, 2, 3] # c",
     "let a_much_longer_constant_name_here = [1, 2, 3]  # c\n"),
    ("", ""),
    ("\n \n\t\n", ""),
    ("# only\n\n\n", "# only\n"),
    ("let a = 1\r\nlet b = 2\r\n", "let a = 1\nlet b = 2\n"),
    ("let a = f(1,   # one\n  2)", "let a = f(1,                               # one\n        2)\n"),
    ("model m {\n    input x: [2]\n    # end\n\n}", "model m {\n    input x: [2]\n    # end\n}\n"),
    # inside a statement: comments keep their lines, blank lines go
    ("let a = f(\n\n# one\n\n# two\n\n1)", "let a = f(\n        # one\n        # two\n        1)\n"),
    ("let a = [1,  # one\n\n# two\n\n]", "let a = [1                                 # one\n        # two\n        ]\n"),
])
def test_rules(source: str, expected: str) -> None:
    assert format_source(source) == expected
    check_round_trip(source)


def test_long_pipeline_breaks_after_arrows() -> None:
    stages = " -> ".join(f"dense({n})" for n in range(100, 130))
    out = check_round_trip(f"model m {{\n    input x: [2]\n    h = {stages}\n}}\n")
    body = out.split("\n")[2:-2]
    assert len(body) > 1
    assert body[0].startswith("    h = dense(100) -> ")
    assert all(line.endswith(" ->") for line in body[:-1])
    assert all(line.startswith(" " * 12) and not line.startswith(" " * 13) for line in body[1:])
    assert all(len(line) <= 100 for line in body)
    # exactly at the limit: one line
    line = "    " + "identity -> " * 7 + "dense(12345)"
    assert len(line) == 100
    fits = "model m {\n    input x: [2]\n" + line + "\n}\n"
    assert format_source(fits) == fits
    too_long = fits.replace("12345", "123456")
    assert format_source(too_long) == too_long.replace("-> dense", "->\n            dense")


def test_syntax_errors_raise_nnc_error() -> None:
    with pytest.raises(NncError):
        format_source("model m { dense(", "bad.nnspec")


# ----------------------------------------------------------------------------------------------
# Hypothesis: random specs, random layout, comments between tokens

COMMENTS = ["# c", "#", "#x", "# has -> an (arrow), [list] and = sign", "# 'quotes' \"both\"",
            "#\ttab", "# trailing spaces   ", "# ünïcödé"]

STAGES = [["relu"], ["tanh"], ["identity"], ["layernorm"], ["dense", "(", "4", ")"],
          ["dense", "(", "4", ",", "bias", "=", "false", ")"], ["dropout", "(", ".5", ")"],
          ["dense", "(", "w", ")"], ["dense", "(", "4", ",", "init", "=", "uniform", "(", "-0.1", ",",
                                                 "0.1", ",", ")", ",", ")"],
          ["dense", "(", "4", ",", "name", "=", '"n"', ")"], ["softmax", "(", "axis", "=", "-1", ")"]]


@st.composite
def _pipeline(draw) -> list[str]:
    stages = draw(st.lists(st.sampled_from(STAGES), min_size=1, max_size=12))
    toks: list[str] = []
    for k, s in enumerate(stages):
        if k:
            toks.append("->")
        toks += s
    return toks


@st.composite
def _statement(draw, depth: int, counter: list[int]) -> list[str]:
    kind = draw(st.sampled_from(["pipe", "pipe", "bind", "repeat", "assert", "let"]
                                if depth < 2 else ["pipe", "bind", "assert"]))
    if kind == "pipe":
        return draw(_pipeline())
    if kind == "bind":
        counter[0] += 1
        return [f"v{counter[0]}", "="] + draw(_pipeline())
    if kind == "assert":
        return draw(st.sampled_from([["assert", "params", "<=", "1_000_000"],
                                     ["assert", "flops", "<", "1e9"],
                                     ["assert", "output", "==", "[", "4", ",", "]"]]))
    if kind == "let":
        counter[0] += 1
        return ["let", f"k{counter[0]}", "=", draw(st.sampled_from(["1", "2.5", '"s"', "true"]))]
    body = draw(st.lists(_statement(depth + 1, counter), min_size=1, max_size=3))
    return ["repeat", draw(st.sampled_from(["1", "2", "w"])), "{"] + [t for s in body for t in s] + ["}"]


@st.composite
def _spec(draw) -> str:
    counter = [0]
    toks: list[str] = []
    if draw(st.booleans()):
        toks += ["let", "w", "=", "4"]
    toks += ["model", "m", "{", "input", "x", ":"] + draw(st.sampled_from([[], ["float32"]]))
    toks += ["[", "4", "]"] + (["dense", "(", "w", ")"] if toks[0] == "let" else [])
    for s in draw(st.lists(_statement(0, counter), min_size=0, max_size=6)):
        toks += s
    toks += ["}"]
    if draw(st.booleans()):
        toks += ["train", "{", "loss", "=", "mse", "optimizer", "=", "adam", "(", "lr", "=", "1e-3",
                 ",", ")", "metrics", "=", "[", "mae", ",", "]", "epochs", "=", "2", "}"]
    if draw(st.booleans()):
        toks += ["let", "tail", "=", "[", "1", ",", "2", "]"]
    seps = st.one_of(
        st.sampled_from([" ", " ", " ", "\n", "\n", "  ", "\t", "\n\n", "\n\n\n", " \n    ", "\r\n"]),
        st.sampled_from(COMMENTS).map(lambda c: "  " + c + "\n"),
        st.sampled_from(COMMENTS).map(lambda c: "\n" + c + "\n"),
        st.sampled_from(COMMENTS).map(lambda c: "\n\n" + c + "\n\n"),
    )
    parts = [draw(st.sampled_from(["", "# head\n", "\n\n"]))]
    for t in toks:
        parts += [t, draw(seps)]
    parts[-1] = draw(st.sampled_from(["", "\n", "\n\n", "  # eof", "\n# eof\n"]))
    return "".join(parts)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_spec())
def test_random_specs_round_trip(source: str) -> None:
    check_round_trip(source)
