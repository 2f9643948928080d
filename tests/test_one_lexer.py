"""One grammar, one lexer: the parser, the formatter, `--set` values and `--data` sources all read
text through nnspec.lark, and the keywords and data sources are declared once."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import nnc.compiler.format as fmt
import nnc.data as D
from nnc.compiler import datasource
from nnc.errors import NncError
from nnc.compiler.parse import KEYWORDS, parse, parse_value, read_value
from nnc.compiler.trainspec import SOURCES
from nnc.grammar import get_parser, lex

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.nnspec"))


def test_keywords_are_the_grammars_word_literals_and_never_names():
    parser = get_parser()[0]
    words = {t.pattern.value for t in parser.terminals if t.pattern.type == "str" and t.pattern.value.isalpha()}
    assert set(KEYWORDS) == words and len(KEYWORDS) == len(words)
    name = next(t for t in parser.terminals if t.name == "NAME").pattern.to_regexp()
    for word in KEYWORDS:
        assert not re.fullmatch(name, word), f"NAME must refuse the keyword {word!r}"
        assert re.fullmatch(name, word + "s") and re.fullmatch(name, word + "_1")


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_lexer_is_lossless_and_finds_the_parsers_comments(path):
    text = path.read_text(encoding="utf-8")
    toks = list(lex(text))
    assert "".join(t.value for t in toks) == text
    comments = [(t.line, t.column, t.value) for t in toks if t.type == "COMMENT"]
    assert comments == parse(text, comments=True).comments


def test_formatter_has_no_lexer_of_its_own():
    source = Path(fmt.__file__).read_text(encoding="utf-8")
    assert "re.compile" not in source and "import re" not in source
    text = 'model m {  # a\n    input x: [4,]\n\n    # own\n    dense(2)   -> relu\n}\n'
    toks = fmt._lex(text)
    assert [t.text for t in toks] == ["model", "m", "{", "input", "x", ":", "[", "4", ",", "]",
                                      "dense", "(", "2", ")", "->", "relu", "}", ""]
    assert [c.text for c in toks[2].after] == ["# a"]
    assert [(c.text, c.blank_before) for c in toks[10].before] == [("# own", True)]


def test_set_values_are_read_in_place_with_their_own_positions():
    v = parse_value("[1,\n  2]")
    assert (v.items[1].span.line, v.items[1].span.column) == (2, 3)
    with pytest.raises(NncError) as info:
        parse_value("sgd(lr=0.1,\n  momentum=)")
    d = info.value.diagnostics[0]
    assert d.code == "E102" and (d.span.line, d.span.column) == (2, 12)
    assert info.value.sources == {"<value>": "sgd(lr=0.1,\n  momentum=)"}


def test_words_mode_reads_keywords_as_names():
    with pytest.raises(NncError):
        parse_value("f(target=output)")
    v = read_value("f(target=output, x=true)", words=True)
    assert [a.value.name for a in v.args] == ["output", "true"]


@pytest.mark.parametrize("text,expected", [
    ('csv("a.csv", target=output)', ("csv", {"path": "a.csv", "target": "output"})),
    ("npz('a.npz', x=input, y=model)", ("npz", {"path": "a.npz", "x": "input", "y": "model"})),
    ('csv("a.csv", target=3)', ("csv", {"path": "a.csv", "target": "3"})),
    ('csv(\n  "a.csv",\n  target="y",\n)', ("csv", {"path": "a.csv", "target": "y"})),
    ('dataset("iris")  # the flowers', ("dataset", {"name": "iris"})),
])
def test_data_source_conveniences(text, expected):
    assert D.parse_source(text) == expected


@pytest.mark.parametrize("text,line,column,needle", [
    ('csv("a.csv",\n  targt="y")', 2, 3, "no parameter `targt`"),
    ('csv("a.csv", target=[1, 2])', 1, 21, "expected a string"),
    ('csv("a.csv", target=', 1, 21, "`target=` needs a value"),
    ('dataset("iris") let', 1, 17, "after `)`"),
    ('dataset("iris"))', 1, 16, "after `)`"),
    ('csv(["a.csv"', 1, 13, "missing `]`"),
    ('npzz("a.npz")', 1, 1, "unknown data source `npzz`"),
])
def test_data_source_errors_are_located(text, line, column, needle):
    with pytest.raises(NncError) as info:
        D.parse_source(text)
    d = info.value.diagnostics[0]
    assert d.code == "E709" and d.hint and needle in d.message, d
    assert (d.span.line, d.span.column) == (line, column), d


def test_data_sources_are_declared_once():
    for name in ("SOURCE_KINDS", "_REQUIRED", "_NPZ_DEFAULTS", "_TOKEN_RE", "_tokens"):
        assert not hasattr(D, name), name
    assert D.parse_source is datasource.parse_source
    for kind, sig in SOURCES.signatures.items():
        assert datasource.parameters(sig) == tuple(p.name for p in sig.params)
    npz = SOURCES.signatures["npz"]
    assert datasource.with_defaults(npz, {"path": "a.npz"}) == {
        "path": "a.npz", **{p.name: p.default for p in npz.params[1:]}}
    # the runtime's own check reads the same catalogue
    with pytest.raises(NncError) as info:
        D.load_source("npz", {"path": "a.npz", "z": "x"}, ROOT)
    assert "npz() takes " + ", ".join(datasource.parameters(npz)) in info.value.diagnostics[0].hint


def test_data_layer_imports_no_lark():
    code = "import sys, nnc.data, nnc.dataload; print('lark' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
