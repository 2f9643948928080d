"""Robustness of the front end: whatever the input, nothing but NncError escapes (the OSS-Fuzz lark
harness rule), nothing hangs, and the CLI never prints a traceback.

* random programs drawn from the grammar itself (``hypothesis.extra.lark.from_lark``);
* mutations of the example specs (lines deleted, duplicated, swapped; characters and tokens
  inserted; truncation; flipped bytes);
* garbage: random bytes, NULs, invalid UTF-8, megabyte files, deep nesting, empty files.

Crashes found by this file are kept at the bottom as regression cases.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnc.cli import main
from nnc.errors import NncError
from nnc.compiler.lower import check_source, compile_source
from nnc.compiler.ops import OPS
from nnc.compiler.parse import KEYWORDS

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.nnspec"))
SPEC_TEXTS = [p.read_bytes() for p in SPECS]

FUZZ = settings(max_examples=400, deadline=None, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much, HealthCheck.large_base_example])


def only_nnc_errors(fn, source, path="fuzz.nnspec"):
    """Run ``fn(source)``; an NncError is fine, any other exception fails the test."""
    try:
        fn(source, path)
    except NncError as err:
        for d in err.diagnostics:
            assert d.code and d.message, err
    return True


# ----------------------------------------------------------------------------------------------
# programs from the grammar

NAMES = sorted(set(OPS) | {"x", "h", "a", "b", "width", "params", "flops", "shape", "float32", "int64",
                           "data", "loss", "optimizer", "schedule", "epochs", "batch_size", "seed",
                           "metrics", "validation", "patience", "dataset", "csv", "npz", "adam", "sgd",
                           "cross_entropy", "mse", "accuracy", "same", "valid", "kernel", "units",
                           "axis", "name", "init", "uniform", "Foo", "_", "basic", "stage", "c",
                           "stride"})
NUMBERS = ["0", "1", "2", "3", "8", "16", "-1", "-2", "0.5", ".5", "1e-3", "1_000", "2.", "1e3", "0.0",
           "100000", "1e9", "-0.5", "64", "1e-320", "1_0_0"]
STRINGS = ['"iris"', '"digits"', "'xor'", '""', '"a.csv"', '"y"', "'h'", '"sine"']


def _grammar_strategy(spaced: bool):
    from hypothesis.extra.lark import from_lark
    from lark import Lark

    from nnc.grammar import GRAMMAR_PATH, get_parser

    parser = get_parser()[0]
    if not hasattr(parser, "grammar"):  # NOTE: a parser loaded from lark's cache has no .grammar
        parser = Lark(GRAMMAR_PATH.read_text(encoding="utf-8"), parser="lalr", propagate_positions=True,
                      maybe_placeholders=True)
    pad = (lambda s: s.map(lambda t: f" {t} ")) if spaced else (lambda s: s)
    explicit = {
        "NAME": pad(st.sampled_from(NAMES)),
        "NUMBER": pad(st.sampled_from(NUMBERS)),
        "STRING": pad(st.sampled_from(STRINGS)),
        "COMMENT": st.sampled_from(["# c\n", "#\n", "# ü → ✓\n"]),
        "CMP": st.sampled_from(["<=", "<", "==", ">=", ">"]),
    }
    if spaced:
        for t in parser.terminals:
            if t.pattern.type == "str" and t.pattern.value.isalpha():
                explicit[t.name] = st.just(f" {t.pattern.value} ")
    return from_lark(parser, start="start", explicit=explicit)


SPACED = _grammar_strategy(spaced=True)      # built once: from_lark compiles the grammar
UNSPACED = _grammar_strategy(spaced=False)


@FUZZ
@given(SPACED)
def test_programs_from_the_grammar(source):
    only_nnc_errors(check_source, source)


@FUZZ
@given(UNSPACED)
def test_programs_from_the_grammar_unspaced(source):
    only_nnc_errors(check_source, source)
    only_nnc_errors(check_source, source.encode("utf-8"))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(SPACED)
def test_grammar_programs_that_check_also_compile(source):
    try:
        check_source(source, "g.nnspec")
    except NncError:
        return
    only_nnc_errors(compile_source, source)


# numbers in every numeric slot (drawn from the NUMBER terminal's own pattern)

NUMBER_RE = r"-?(?:[0-9][0-9_]{0,12}(?:\.[0-9_]{0,6})?|\.[0-9][0-9_]{0,5})(?:[eE][+-]?[0-9]{1,3})?"
NUMERIC_SLOTS = [
    "model m {{ input x: [{n}] dense(2) }}",
    "model m {{ input x: [2] dense({n}) -> dropout({n}) -> leaky_relu(alpha={n}) }}",
    "model m {{ input x: [2] repeat {n} {{ relu }} }}",
    "model m {{ input x: [1, 8, 8] conv2d(2, {n}, stride={n}, padding={n}, dilation={n}) }}",
    "model m {{ input x: [1, 8, 8] maxpool2d({n}, stride={n}, padding={n}) }}",
    "model m {{ input x: [2] softmax(axis={n}) }}",
    "model m {{ input x: [2] reshape([{n}, -1]) }}",
    "model m {{ input x: [2] a = dense(2)\n concat(a, x, axis={n}) }}",
    "model m {{ input x: [2] dense(2, init=uniform({n}, {n})) -> batchnorm(momentum={n}, eps={n}) }}",
    "model m {{ input x: [2] dense(2)\n assert params < {n}\n assert flops >= {n} }}",
    "model m {{ input x: int64 [{n}] embedding({n}, {n}) -> lstm({n}, return_sequences=true) }}",
    "let w = {n} * 2 - {n}\nmodel m {{ input x: [w] dense({n} // 2) -> dropout({n} / 4) }}",
    "block b(c, s = {n}) {{ dense(c * s) }}\nmodel m {{ input x: [2] b({n}) -> b({n} % 3, s={n}) }}",
    "model m {{ input x: [2] dense(3) }}\ntrain {{ loss = huber({n}) optimizer = adam(lr={n}, beta1={n}, "
    "eps={n}) schedule = step({n}, gamma={n}) epochs = {n} batch_size = {n} seed = {n} validation = {n} "
    "patience = {n} clip_norm = {n} }}",
]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(NUMERIC_SLOTS), st.from_regex(NUMBER_RE, fullmatch=True))
def test_numbers_in_every_slot(template, number):
    source = template.format(n=number)
    only_nnc_errors(check_source, source)
    only_nnc_errors(compile_source, source)


# ----------------------------------------------------------------------------------------------
# mutations of the example specs

TOKENS = ["{", "}", "(", ")", "[", "]", ",", "=", "->", ":", "#", '"', "'", "\n", " ", "-", ".", "_",
          "0", "1", "-1", "1e3", "0.5", "x", "h", "relu", "dense(3)", "flatten", "add(h, h)", "concat(x, x)",
          "repeat 2 {", "repeat 0 {", "output", "input x: [2]", "input t: int64 [3]", "assert params < 1",
          "assert shape(h) == [2]", "assert output == [1]", "let", "let w = 3", "model", "model m {",
          "train {", "train", "true", "false", "name=\"dense_1\"", "loss = mse", "data = dataset(\"sine\")",
          "\t", "\r\n", "\ufeff", "é", "→", "\\", ";", "@"]


@st.composite
def mutated_spec(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SPEC_TEXTS)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["delete", "duplicate", "swap", "chars", "token", "truncate", "flip",
                                     "splice"]))
        lines = bytes(data).split(b"\n")
        if kind == "delete" and len(lines) > 1:
            del lines[draw(st.integers(0, len(lines) - 1))]
            data = bytearray(b"\n".join(lines))
        elif kind == "duplicate":
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[i])
            data = bytearray(b"\n".join(lines))
        elif kind == "swap" and len(lines) > 1:
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
            data = bytearray(b"\n".join(lines))
        elif kind == "chars":
            pos = draw(st.integers(0, len(data)))
            text = draw(st.text(max_size=5)).encode("utf-8", "surrogatepass")
            data[pos:pos] = text
        elif kind == "token":
            pos = draw(st.integers(0, len(data)))
            data[pos:pos] = draw(st.sampled_from(TOKENS)).encode("utf-8")
        elif kind == "truncate":
            del data[draw(st.integers(0, len(data))):]
        elif kind == "flip" and data:
            pos = draw(st.integers(0, len(data) - 1))
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "splice":
            other = draw(st.sampled_from(SPEC_TEXTS))
            a, b = sorted((draw(st.integers(0, len(other))), draw(st.integers(0, len(other)))))
            pos = draw(st.integers(0, len(data)))
            data[pos:pos] = other[a:b]
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutated_spec())
def test_mutated_specs(source: bytes):
    only_nnc_errors(check_source, source)
    only_nnc_errors(compile_source, source)
    try:
        text = source.decode("utf-8")
    except UnicodeDecodeError:
        return
    only_nnc_errors(compile_source, text)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=400))
def test_random_bytes(source: bytes):
    only_nnc_errors(check_source, source)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.sampled_from(list("{}()[],=->:#\"' \n\t.0123456789_abcdemxyz") + list(KEYWORDS)
                                + list(OPS)), max_size=120).map("".join))
def test_random_token_soup(source: str):
    only_nnc_errors(check_source, source)


# ----------------------------------------------------------------------------------------------
# garbage. NOTE: nothing here times itself (machines differ 2-3x); a hang is caught by the generous
# per-test timeout below, and speed is measured by benchmarks/check_speed.py.

HANG = pytest.mark.timeout(300)


def _dense_lines(size: int) -> bytes:
    line = b"dense(3) -> relu\n"
    return b"model big {\n    input x: [3]\n" + line * (size // len(line)) + b"}\n"


GARBAGE = {
    "empty": b"",
    "only whitespace": b"  \n\t\r\n   \n",
    "only comments": b"# one\n# two\n   # three\n",
    "random bytes": bytes(range(256)) * 64,
    "binary with NULs": b"\x00" * 100 + b"model m {}",
    "NUL late in the file": b"model m { input x: [2] dense(1) }\n" + b"# pad\n" * 2000 + b"\x00",
    "invalid utf-8": b"model m {\n input x: [2]\n dense(1) \xff\xfe\n}\n",
    "truncated utf-8": "model m { input x: [2] dense(1) } # é".encode("utf-8")[:-1],
    "utf-16": "model m { input x: [2] dense(1) }".encode("utf-16"),
    "lone surrogate bytes": b"let a = '\xed\xa0\x80'",
    "byte order mark only": b"\xef\xbb\xbf",
    "10,000 nested brackets": b"let a = " + b"[" * 10_000 + b"]" * 10_000,
    "10,000 nested parens": b"model m { input x: [2] dense" + b"(" * 10_000 + b")" * 10_000 + b" }",
    "10,000 open braces": b"{" * 10_000,
    "10,000 unclosed brackets": b"let a = " + b"[" * 10_000,
    "1 MB single line": b"model m { input x: [3] " + b"relu -> " * 125_000 + b"relu }",
    "1 MB comment": b"# " + b"x" * 1_000_000,
    "1 MB name": b"let " + b"a" * 1_000_000 + b" = 1",
    "1 MB string": b"let a = '" + b"a" * 1_000_000 + b"'",
    "1 MB unclosed string": b"model m { input x: [2] dense(1, name=\"" + b"a" * 1_000_000 + b" }",
    "1 MB of one error": b"model m { input x: [3]\n" + b"rellu\n" * 1000 + b"}\n" + b"#" * 1_000_000,
    "many lines of garbage": b"@@@ ;;; \n" * 50_000,
    "repeat far too often": b"model m { input x: [2] repeat 1000000000 { repeat 1000000000 { relu } } }",
    "deep repeat nesting": b"model m { input x: [2] " + b"repeat 2 { " * 60 + b"relu" + b" }" * 60 + b" }",
    "long numbers": b"let a = 1" + b"0" * 4000 + b"\nlet b = 1e" + b"9" * 4000 + b"\nlet c = ." + b"5" * 4000,
    "very long pipeline": b"model m { input x: [3] " + b" -> ".join([b"dense(3)"] * 2000) + b" }",
}


@pytest.mark.parametrize("source", list(GARBAGE.values()), ids=list(GARBAGE))
@HANG
def test_garbage(source: bytes):
    only_nnc_errors(check_source, source)


@HANG
def test_two_megabytes_of_layers_is_refused():
    source = _dense_lines(2_000_000)
    with pytest.raises(NncError) as info:
        check_source(source, "big.nnspec")
    assert [d.code for d in info.value.diagnostics] == ["E107"]   # over the 1 MiB limit


@HANG
def test_a_spec_just_under_the_size_limit_is_checked():
    source = _dense_lines(800_000)            # about 47,000 lines, 94,000 layers: checked, not refused
    program = check_source(source, "big.nnspec")
    assert len(program["model"]["nodes"]) > 90_000


@HANG
def test_a_large_valid_spec_checks():
    source = _dense_lines(200_000)           # about 12,000 layers, under the layer limit
    program = check_source(source, "big.nnspec")
    assert len(program["model"]["nodes"]) > 20_000


@pytest.mark.parametrize("name", ["empty", "binary with NULs", "invalid utf-8", "10,000 nested brackets",
                                  "1 MB comment", "many lines of garbage", "utf-16", "1 MB unclosed string"])
@HANG
def test_cli_never_prints_a_traceback(name, tmp_path, capsys):
    f = tmp_path / "garbage.nnspec"
    f.write_bytes(GARBAGE[name])
    code = main(["check", str(f)])
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text and "internal error" not in text
    assert code == 1
    assert "error[E" in out.out


@pytest.mark.parametrize("fmt", ["json", "github"])
def test_cli_formats_survive_garbage(fmt, tmp_path, capsys):
    for i, name in enumerate(["invalid utf-8", "binary with NULs", "many lines of garbage"]):
        (tmp_path / f"g{i}.nnspec").write_bytes(GARBAGE[name])
    assert main(["check", "--format", fmt, str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    if fmt == "json":
        import json
        report = json.loads(out.out)
        assert report["files_checked"] == 3 and len(report["diagnostics"]) == 3
    else:
        assert out.out.count("::error ") == 3


# ----------------------------------------------------------------------------------------------
# start-up: `nnc check` stays light

def test_check_does_not_import_heavy_modules():
    code = ("import sys\nfrom nnc.cli import main\n"
            "try:\n    main(['check', 'specs/digits_cnn.nnspec'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('onnx', 'onnxruntime', 'numpy', 'pydantic')))")
    env = dict(os.environ)
    env.pop("NNC_DEBUG", None)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


# ----------------------------------------------------------------------------------------------
# crashes found here once (fixed): regression cases

CRASHES = {
    # parse.py `_number`: int() of more than 4,300 digits raises ValueError inside lark (VisitError)
    "integer literal of 5,000 digits": "let a = " + "9" * 5000,
    "5,000-digit dense units": "model m { input x: [2] dense(" + "1" * 5000 + ") }",
    # types.Int.coerce: the hint computes round(inf) -> OverflowError
    "dense(1e999)": "model m { input x: [2] dense(1e999) }",
    "repeat 1e999": "model m { input x: [2] repeat 1e999 { dense(2) } }",
    "softmax(axis=-1e999)": "model m { input x: [2] softmax(axis=-1e999) }",
    "input x: [1e999]": "model m { input x: [1e999] dense(2) }",
    "epochs = -1e999": "model m { input x: [2] dense(2) }\ntrain { loss = mse epochs = -1e999 }",
    # types.Float.coerce: float() of an integer above 1e308 -> OverflowError
    "constant(10**400)": "model m { input x: [2] dense(2, init=constant(1" + "0" * 400 + ")) }",
    "lr = 10**400": "model m { input x: [2] dense(2) }\ntrain { loss = mse optimizer = sgd(lr=1" + "0" * 400 + ") }",
}


@pytest.mark.parametrize("source", list(CRASHES.values()), ids=list(CRASHES))
def test_known_crashes(source):
    only_nnc_errors(check_source, source)
    only_nnc_errors(compile_source, source)
