"""The language server's analysis, in process (no client): the diagnostics are ``nnc check``'s over
the whole error corpus; positions in UTF-16 / UTF-8 code units; the tree before a syntax error;
hover, inlay hints, symbols, definitions and completion on the example specs; quick fixes that
remove the diagnostic they fix. The end-to-end tests through a real client are in test_lsp.py.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("lsprotocol", reason="the language server's extra (pip install 'nnc[lsp]') is not installed")

from nnc.compiler.lower import check_source  # noqa: E402
from nnc.compiler.parse import parse_prefix  # noqa: E402
from nnc.errors import NncError, SourceSpan  # noqa: E402
from nnc.lang import ast as A  # noqa: E402
from nnc.lsp import completion, features  # noqa: E402
from nnc.lsp.analysis import analyze  # noqa: E402
from nnc.lsp.positions import TextIndex  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

def _utf8(p: Path) -> bool:
    try:
        p.read_bytes().decode("utf-8")
        return True
    except UnicodeDecodeError:  # E001's cases: an editor decodes such bytes itself, before the server
        return False


CORPUS = [p for p in sorted((ROOT / "tests" / "errors").glob("*.nnspec")) if _utf8(p)]
EXAMPLES = sorted((ROOT / "specs").rglob("*.nnspec"))
URL = "https://example.org/errors.md"


def _check(data: bytes | str, path: str) -> list:
    """``nnc check``'s diagnostics of a text, as dicts."""
    try:
        warnings: list = []
        check_source(data, path, warnings=warnings)
        return [d.as_dict() for d in warnings]
    except NncError as err:
        return [d.as_dict() for d in err.diagnostics]


@pytest.mark.parametrize("spec", CORPUS + EXAMPLES, ids=lambda p: p.stem)
def test_diagnostics_are_nnc_checks(spec: Path):
    data = spec.read_bytes()
    text = data.decode("utf-8")
    if text.startswith("\ufeff"):
        text = text[1:]
    got = [d.as_dict() for d in analyze(text, str(spec)).diagnostics]
    assert got == _check(data, str(spec))


def at(text: str, needle: str, delta: int = 0) -> int:
    """The offset of the first ``needle`` in ``text`` (plus ``delta``)."""
    i = text.index(needle)
    return i + delta


def hover(text: str, needle: str, delta: int = 1) -> str:
    a = analyze(text, "t.nnspec")
    h = features.hover(a, TextIndex(text), at(text, needle, delta))
    return h.contents.value if h is not None else ""


# ----------------------------------------------------------------------------------------------
# positions

def test_utf16_and_utf8_columns():
    text = 'let s = "é😀x" # ü\nmodel m {\n'
    ix16, ix8, ix32 = TextIndex(text), TextIndex(text, "utf-8"), TextIndex(text, "utf-32")
    x = text.index("x")  # after é (1 code point) and 😀 (outside the BMP)
    assert ix16.to_client(0, x) == (0, x + 1)       # the emoji takes two UTF-16 units
    assert ix8.to_client(0, x) == (0, x + 1 + 3)    # é 2 bytes, 😀 4 bytes
    assert ix32.to_client(0, x) == (0, x)
    for ix in (ix16, ix8, ix32):
        line, units = ix.to_client(0, x)
        assert ix.from_client(line, units) == x
    assert ix16.from_client(0, x) == x - 1          # the middle of the surrogate pair: the emoji's start
    assert ix16.from_client(0, 999) == text.index("\n")  # past the end of the line: its end
    assert ix16.from_client(1, 3) == text.index("model") + 3
    assert ix16.span_range(SourceSpan(2, 1, 2, 6)) == ((1, 0), (1, 5))


# ----------------------------------------------------------------------------------------------
# the tree before a syntax error

def _stmts(f: A.File) -> list[str]:
    out = []
    for item in f.items:
        out.append(type(item).__name__ + (f" {item.name}" if hasattr(item, "name") else ""))
        for st in getattr(item, "body", []):
            out.append("  " + type(st).__name__ + (f" {st.name}" if isinstance(st, A.Binding) else ""))
    return out


@pytest.mark.parametrize("text, expected", [
    ("let a = 3\nmodel m {\n    input x: [4]\n    h = dense(a) -> relu\n    dense(\n",
     ["LetStmt a", "Model m", "  InputDecl", "  Binding h", "  Pipeline"]),
    ("model m {\n    input x: [4]\n    h = dense(3)\n    let w =\n}\n",
     ["Model m", "  InputDecl", "  Binding h"]),
    ("model m {\n    input x: [4]\n    dense(3 -> relu\n}\n", ["Model m", "  InputDecl", "  Pipeline"]),
    ("model m {\n    input x: [4]\n    dense(3)\n}\ntrain {\n    loss = \n}\n", ["Model m", "  InputDecl",
                                                                           "  Pipeline", "Train"]),
    ("let x =", []),
    ("", []),
])
def test_parse_prefix_keeps_what_parsed_before_the_error(text, expected):
    f = parse_prefix(text)
    assert f is not None and _stmts(f) == expected


def test_parse_prefix_refuses_nothing_and_raises_nothing():
    for text in ["\x00\x01\x02", "(" * 500, "}}}}", "model { { {", "x" * 100, "model m { input x: [4] dense(3) }"]:
        parse_prefix(text)  # never raises
    assert parse_prefix("#" + "x" * (2 << 20)) is None  # too large to parse at all


def test_a_syntax_error_keeps_hover_and_symbols_before_it():
    text = "let width = 8\nmodel m {\n    input x: [4]\n    h = dense(width) -> relu\n    dense(2 ->\n}\n"
    a = analyze(text, "t.nnspec")
    assert [d.code for d in a.diagnostics] == ["E102"]
    assert "[8]" in hover(text, "dense(width)")
    assert "let width = 8" in hover(text, "(width)", 2)
    names = [s.name for s in features.document_symbols(a, TextIndex(text))]
    assert names == ["width", "m"]
    model = features.document_symbols(a, TextIndex(text))[1]
    assert [c.name for c in model.children] == ["x", "h"]


# ----------------------------------------------------------------------------------------------
# hover, inlay hints, symbols, definitions on the example specs

RESNET = (ROOT / "specs" / "resnet_small.nnspec").read_text(encoding="utf-8")
DIGITS = (ROOT / "specs" / "digits_cnn.nnspec").read_text(encoding="utf-8")


def test_hover_on_a_stage_shows_signature_shape_parameters_and_flops():
    text = hover(DIGITS, "conv2d(16")
    assert "conv2d(filters, kernel, stride=1, padding=valid" in text
    # conv2d(16, 3, same) on [1, 8, 8]: 16*1*9 weights + 16 biases; 2 * 16*8*8 * 1*9 FLOPs
    assert "**conv2d_1** → `[16, 8, 8]` · 160 parameters · 18,432 FLOPs" in text
    assert "`weight [16, 1, 3, 3]`" in text and "`bias [16]`" in text


def test_hover_on_a_block_use_a_constant_a_key_and_a_value():
    use = hover(RESNET, 'stage(2 * base, name="stage2")')
    assert "block stage(c)" in use and "**stage2** → `[16, 16, 16]`" in use and "c = 16" in use
    assert "let base = 8" in hover(RESNET, "base = 8")
    assert "train key `optimizer`" in hover(RESNET, "optimizer  =")
    assert "adam(lr=0.001, beta1=0.9" in hover(RESNET, "adam(lr")
    # a value bound in a block body used three times has one shape per use
    assert "`[8, 32, 32] | [16, 16, 16] | [32, 8, 8]`" in hover(RESNET, "main = ")
    assert "parameter `stride` of `block down(c, stride = 2)`" in hover(RESNET, "stride = 2")


def test_hover_on_a_computed_constant_shows_its_value():
    text = "let width = 16\nlet half = width // 2\nmodel m {\n    input x: [4]\n    dense(half)\n}\n"
    shown = hover(text, "(half)", 2)
    assert "let half = width // 2" in shown and "= `8`" in shown


def test_inlay_hints_show_each_stages_output_shape():
    a = analyze(DIGITS, "t.nnspec")
    ix = TextIndex(DIGITS)
    hints = {(h.position.line, h.label) for h in features.inlay_hints(a, ix)}
    line = DIGITS[:DIGITS.index("conv2d(16")].count("\n")
    assert (line, "[16, 8, 8]") in hints  # conv2d, and relu after it
    assert (line + 1, "[16, 4, 4]") in hints
    assert (line + 3, "[512]") in hints   # flatten of [32, 4, 4]
    assert len(features.inlay_hints(a, ix)) == 11  # one per stage


def test_definitions_of_values_constants_blocks_and_parameters():
    ix = TextIndex(RESNET)
    a = analyze(RESNET, "t.nnspec")

    def target(needle, delta=1):
        loc = features.definition(a, ix, "file:///r", at(RESNET, needle, delta))
        return None if loc is None else RESNET[ix.from_client(loc.range.start.line, loc.range.start.character):
                                             ix.from_client(loc.range.end.line, loc.range.end.character)]
    assert target("basic(base)") == "basic"
    assert target("basic(base)", 7) == "base"
    assert target("skip = x", 8) == "x"
    assert target("add(main, skip)", 11) == "skip"
    assert target("stride=stride", 8) == "stride"
    loc = features.definition(a, ix, "file:///r", at(RESNET, "basic(base)"))
    assert loc.range.start.line == RESNET[:RESNET.index("block basic")].count("\n")
    assert features.definition(a, ix, "file:///r", at(RESNET, "globalavgpool2d")) is None  # an op


def test_document_symbols():
    a = analyze(RESNET, "t.nnspec")
    syms = features.document_symbols(a, TextIndex(RESNET))
    assert [s.name for s in syms] == ["base", "classes", "basic", "down", "stage", "resnet_small", "train"]
    down = syms[3]
    assert [c.name for c in down.children] == ["c", "stride", "x", "main", "skip"]
    assert [c.name for c in syms[-1].children][:3] == ["data", "validation", "loss"]


# ----------------------------------------------------------------------------------------------
# completion

def labels(text: str) -> list[str]:
    """Completion labels with the cursor at ``|``."""
    offset = text.index("|")
    text = text.replace("|", "")
    return [i.label for i in completion.complete(analyze(text, "t.nnspec"), TextIndex(text), offset)]


HEAD = "let width = 8\nblock unit(c, act = relu) {\n    dense(c)\n}\nmodel m {\n    input x: [4]\n    h = dense(width)\n"


def test_completion_after_an_arrow_offers_ops_and_blocks():
    got = labels(HEAD + "    dense(3) -> |\n}\n")
    assert {"relu", "conv2d", "unit", "flatten"} <= set(got)
    assert "epochs" not in got


def test_completion_in_a_call_offers_its_keyword_parameters_and_the_names_in_scope():
    got = labels(HEAD + "    conv2d(16, |\n}\n")
    assert {"kernel=", "padding=", "stride=", "name="} <= set(got) and "filters=" not in got
    assert "width" in got
    assert labels(HEAD + "    conv2d(16, 3, padding=|\n}\n")[:2] == ["valid", "same"]
    assert "glorot_uniform" in labels(HEAD + "    dense(3, init=|\n}\n")
    assert {"c=", "act=", "name="} <= set(labels(HEAD + "    unit(|)\n}\n"))
    assert {"h", "x"} <= set(labels(HEAD + "    concat(|\n}\n"))  # a merge takes values


def test_completion_in_the_train_block():
    text = HEAD + "}\ntrain {\n    loss = cross_entropy\n    |\n}\n"
    got = labels(text)
    assert "optimizer" in got and "epochs" in got and "loss" not in got
    assert {"mse", "cross_entropy", "huber"} <= set(labels(HEAD + "}\ntrain {\n    loss = |\n}\n"))
    assert {"lr=", "beta1=", "weight_decay="} <= set(labels(HEAD + "}\ntrain {\n    optimizer = adam(|\n}\n"))
    assert {"accuracy", "mae"} <= set(labels(HEAD + "}\ntrain {\n    metrics = [|\n}\n"))
    assert set(labels(HEAD + "}\ntrain {\n    shuffle = |\n}\n")) >= {"true", "false"}


def test_completion_at_statement_starts_and_top_level():
    got = labels(HEAD + "    |\n}\n")
    assert {"h", "x", "width", "dense", "repeat", "let", "output", "unit"} <= set(got)
    assert labels("|") == ["let", "block", "model", "train"]
    assert labels(HEAD + "    # a comment |\n}\n") == []
    assert labels(HEAD + '    dense(3, name="ab|\n}\n') == []
    assert labels(HEAD + "    assert |") == ["params", "flops", "output", "shape"]


def test_completion_inside_a_block_body_sees_its_parameters_not_the_models_values():
    got = labels("let width = 8\nmodel m {\n    input x: [4]\n    h = dense(3)\n}\nblock b(c) {\n    dense(|)\n}\n")
    assert "c" in got and "width" in got and "h" not in got and "x" not in got


# ----------------------------------------------------------------------------------------------
# quick fixes: each mechanical fix removes the diagnostic it fixes

def _apply(text: str, ix: TextIndex, edits) -> str:
    for span, new in sorted(edits, key=lambda e: (e[0].line, e[0].column), reverse=True):
        a, b = ix.span_offsets(span)
        text = text[:a] + new + text[b:]
    return text


FIXABLE = []
for _p in CORPUS + [ROOT / "tests" / "lsp" / "fixes.nnspec"]:
    try:
        _text = _p.read_text(encoding="utf-8")
    except (UnicodeDecodeError, FileNotFoundError):
        continue
    _a = analyze(_text, str(_p))
    for _d in _a.diagnostics:
        if features.mechanical_fix(_d, TextIndex(_text)) is not None:
            FIXABLE.append(pytest.param(_p, _d.code, _d.span, id=f"{_p.stem}-{_d.code}-{_d.span.line}"))


def test_the_corpus_has_fixable_diagnostics_of_each_kind():
    codes = {p.values[1] for p in FIXABLE}
    assert {"E301", "E302", "E303", "E310", "E201", "E101"} <= codes, codes


@pytest.mark.parametrize("path, code, span", FIXABLE)
def test_a_quick_fix_removes_its_diagnostic(path: Path, code: str, span: SourceSpan):
    text = path.read_text(encoding="utf-8")
    ix = TextIndex(text)
    d = next(d for d in analyze(text, str(path)).diagnostics if d.code == code and d.span == span)
    title, edits = features.mechanical_fix(d, ix)
    fixed = _apply(text, ix, edits)
    after = analyze(fixed, str(path)).diagnostics
    # nothing of that code is left on that line
    assert not [x for x in after if x.code == code and x.span.line == span.line], (title, fixed)


def test_code_actions_carry_the_edit_and_the_diagnostic():
    text = "model m {\n    input x: [1, 4, 4]\n    dnse(3)\n}\n"
    a = analyze(text, "t.nnspec")
    ix = TextIndex(text)
    from lsprotocol import types as T
    actions = features.code_actions(a, ix, "file:///t", T.Range(T.Position(2, 0), T.Position(2, 0)), URL)
    assert [x.title for x in actions] == ["Replace `dnse` with `dense`"]
    edit = actions[0].edit.changes["file:///t"][0]
    assert (edit.range.start.line, edit.range.start.character, edit.new_text) == (2, 4, "dense")
    assert actions[0].diagnostics[0].code == "E301"
    fixed = _apply(text, ix, features.mechanical_fix(a.diagnostics[0], ix)[1])
    b = analyze(fixed, "t.nnspec")
    flatten = features.mechanical_fix(b.diagnostics[0], TextIndex(fixed))
    assert flatten[0] == "Add `flatten` before it"
    assert analyze(_apply(fixed, TextIndex(fixed), flatten[1]), "t.nnspec").diagnostics == []


def test_diagnostics_link_their_code_and_name_the_block_use():
    text = ("block b(c) {\n    dense(c) -> conv2d(4, 3)\n}\nmodel m {\n    input x: [4]\n    b(8)\n    b(16)\n}\n")
    a = analyze(text, "t.nnspec")
    (d,) = features.diagnostics(a, TextIndex(text), "file:///t", URL)
    assert d.code == "E202" and d.code_description.href == URL + "#e202"
    assert "\nhint: " in d.message
    assert [r.location.range.start.line for r in d.related_information] == [5]
    assert re.search(r"expanded from `b\(8\)` at line 6", d.related_information[0].message)


def test_formatting_is_nnc_fmt():
    from nnc.compiler.format import format_source
    text = "model m {\ninput x: [4]\n  dense(3)->relu\n}\n"
    (edit,) = features.formatting(text, TextIndex(text), "t.nnspec")
    assert edit.new_text == format_source(text, "t.nnspec")
    assert features.formatting(edit.new_text, TextIndex(edit.new_text), "t.nnspec") == []
    assert features.formatting("model {", TextIndex("model {"), "t.nnspec") is None


def test_completion_after_an_arrow_offers_constants_that_name_ops_only():
    got = labels("let act = relu\nlet width = 8\nmodel m {\n    input x: [4]\n    dense(width) -> |\n}\n")
    assert "act" in got and "width" not in got


def test_a_byte_order_mark_and_crlf_line_ends_keep_the_columns():
    text = "\ufeffmodel m {\r\n    input x: [4]\r\n    dnse(3) -> relu\r\n}\r\n"
    a = analyze(text, "t.nnspec")
    assert [(d.code, d.span.line, d.span.column) for d in a.diagnostics] == [("E301", 3, 5)]
    (d,) = features.diagnostics(a, TextIndex(text), "file:///t", URL)
    assert (d.range.start.line, d.range.start.character, d.range.end.character) == (2, 4, 8)
    assert "**dense_1** → `[3]`" in hover(text.replace("dnse", "dense"), "dense")


def _every_feature(text: str) -> None:
    from lsprotocol import types as T
    a = analyze(text, "t.nnspec")
    ix = TextIndex(text)
    features.diagnostics(a, ix, "file:///t", URL)
    features.inlay_hints(a, ix)
    features.document_symbols(a, ix)
    features.code_actions(a, ix, "file:///t", T.Range(T.Position(0, 0), T.Position(10 ** 6, 0)), URL)
    features.formatting(text, ix, "t.nnspec")
    step = max(1, len(text) // 25)
    for offset in range(0, len(text) + 1, step):
        features.hover(a, ix, offset)
        features.definition(a, ix, "file:///t", offset)
        completion.complete(a, ix, offset)


@pytest.mark.parametrize("spec", EXAMPLES + CORPUS[::10], ids=lambda p: p.stem)
def test_every_feature_on_every_prefix_of_a_spec(spec: Path):
    """What an editor sends while a file is typed: each feature, at many places, on prefixes of the
    file cut anywhere (mid-name, mid-call, mid-block). None may raise."""
    text = spec.read_text(encoding="utf-8")
    for cut in sorted({len(text), *range(0, len(text), max(1, len(text) // 7))}):
        _every_feature(text[:cut])
