"""The nnspec grammar (docs/language.md, sections 2 and 3): tables of snippets that must parse, with
what they parse to, and of snippets that must not, with the error code and where it points.

The parser is checked on its own (``nnc.compiler.parse.parse``); snippets that are whole valid
specs are also run through ``check_source`` so the tables stay honest about the language.
"""
from __future__ import annotations

import re

import pytest

from nnc.lang import ast as A
from nnc.errors import NncError
from nnc.compiler.lower import check_source
from nnc.compiler.parse import KEYWORDS, parse


def model(body: str, before: str = "", after: str = "") -> str:
    """A file whose model block holds ``body`` (an input ``x: [4]`` is declared first)."""
    return f"{before}model m {{\n    input x: [4]\n{body}\n}}\n{after}"


def the_model(f: A.File) -> A.Model:
    (m,) = [i for i in f.items if isinstance(i, A.Model)]
    return m


# ----------------------------------------------------------------------------------------------
# snippets that parse (and check)

GOOD = {
    # let
    "let top level": "let width = 32\nmodel m { input x: [4] dense(width) }",
    "let after the model": "model m { input x: [4] dense(width) }\nlet width = 32",
    "let inside the model": model("    let w = 8\n    dense(w)"),
    "let in train": model("    dense(3) -> softmax", after='let lr = 0.01\ntrain { loss = cross_entropy '
                                                            'optimizer = adam(lr=lr) }'),
    "let holding a call": model("    dense(3) -> act", before="let act = leaky_relu(alpha=0.2)\n"),
    "let holding a list": model("    reshape(shape)", before="let shape = [2, 2]\n"),
    "let holding a string": model('    dense(3, name=title)', before='let title = "head"\n'),
    "let holding a boolean": model("    dense(3, bias=use_bias)", before="let use_bias = false\n"),
    # input
    "input without dtype": "model m { input x: [4] dense(1) }",
    "input float32": "model m { input x: float32 [4] dense(1) }",
    "input int64": "model m { input t: int64 [12] embedding(20, 4) }",
    "input several dims": "model m { input img: [3, 32, 32] flatten }",
    "input dims from constants": "let h = 8\nmodel m { input img: [1, h, h] flatten }",
    "input trailing comma": "model m { input img: [1, 8, 8,] flatten }",
    "two inputs": "model m { input a: [4]\n input b: [4]\n add(a, b) }",
    # output
    "output one name": model("    h = dense(3)\n    output h"),
    "output several names": model("    h = dense(3)\n    g = x -> dense(2)\n    output h, g"),
    # bindings and pipelines
    "binding": model("    h = dense(8) -> relu"),
    "pipeline of three": model("    dense(8) -> relu -> dropout(0.5)"),
    "pipeline from a value": model("    h = dense(8)\n    h -> dense(2) -> softmax"),
    "pipeline from the input": model("    x -> dense(2)"),
    "bare stages": model("    flatten\n    identity\n    relu"),
    "stage with empty parens": model("    dense(3) -> relu()"),
    "positional and keyword args": "model m { input i: [1, 8, 8] conv2d(4, 3, stride=1, padding=same) }",
    "keyword only": model("    dense(units=3, bias=false)"),
    "trailing comma in call": model("    dense(3, bias=true,)"),
    "list argument": "model m { input i: [1, 8, 8] conv2d(4, kernel=[3, 1], padding=[1, 0]) }",
    "call as an argument value": model("    dense(3, init=uniform(-0.1, 0.1))"),
    "keyword call as an argument": model("    dense(3, init=normal(mean=0, std=0.02))"),
    "merge add": model("    a = dense(4)\n    b = x -> dense(4)\n    add(a, b) -> relu"),
    "merge multiply": model("    a = dense(4)\n    multiply(a, x)"),
    "merge concat with axis": model("    a = dense(4)\n    concat(a, x, axis=0)"),
    "merge bound": model("    a = dense(4)\n    c = concat(a, x)\n    c -> dense(2)"),
    # repeat
    "repeat constant count": model("    repeat 3 { dense(4) -> relu }"),
    "repeat let count": model("    repeat n { dense(4) }", before="let n = 2\n"),
    "nested repeat": model("    repeat 2 {\n        repeat 3 { dense(4) }\n        relu\n    }"),
    "repeat with local binding": model("    repeat 2 {\n        h = dense(4)\n        r = h -> dense(4)\n"
                                       "        add(h, r)\n    }"),
    # assert
    "assert params <=": model("    dense(3)\n    assert params <= 100"),
    "assert params <": model("    dense(3)\n    assert params < 100"),
    "assert params ==": model("    dense(3)\n    assert params == 15"),
    "assert params >=": model("    dense(3)\n    assert params >= 15"),
    "assert params >": model("    dense(3)\n    assert params > 1"),
    "assert flops": model("    dense(3)\n    assert flops < 2e7"),
    "assert shape": model("    h = dense(3)\n    assert shape(h) == [3]"),
    "assert output": model("    dense(3)\n    assert output == [3]"),
    "assert with underscores": model("    dense(3)\n    assert params <= 50_000"),
    # train block with every value kind
    "train every value kind": model(
        "    dense(3) -> softmax", after=(
            "train {\n"
            '    data = dataset("iris")\n'                 # call with a string
            "    validation = .2\n"                        # leading-dot number
            "    loss = cross_entropy\n"                   # bare name
            "    optimizer = sgd(lr=1e-2, momentum=0.9, nesterov=true)\n"   # call with keywords
            "    schedule = step(10, gamma=0.5)\n"         # positional + keyword
            "    epochs = 1_000\n"                         # underscores
            "    batch_size = 16\n"
            "    shuffle = false\n"                        # boolean
            "    metrics = [accuracy, mse,]\n"             # list with a trailing comma
            "    patience = 3\n"
            "    clip_norm = 1.0\n"
            "    dtype = float64\n"
            "}")),
    "empty train block": model("    dense(1)", after="train { loss = mse }"),
    "single-quoted string": model("    dense(3) -> softmax", after="train { data = dataset('iris') loss = cross_entropy }"),
    "string holding the other quote": model('    dense(3, name="it_s")', after="let s = \"it's\"\nlet t = 'a \"b\"'"),
    # lexical
    "comments everywhere": (
        "# header\nlet w = 4 # trailing\nmodel m { # after brace\n  # own line\n  input x: [4] # c\n"
        "  dense(w) # c\n    -> relu # between stages\n  assert params <= 100 # c\n} # end\n"
        "train { # c\n loss = mse # c\n} # last"),
    "comment without newline at end": "model m { input x: [4] dense(1) } # no newline",
    "statement spanning lines": model("    dense(\n        3,\n        bias = false,\n    )\n    ->\n    relu"),
    "one line file": "model m { input x: [4] dense(8) -> relu dense(1) }",
    "crlf line endings": "model m {\r\n    input x: [4]\r\n    dense(1)\r\n}\r\n",
    "tabs": "model m {\n\tinput x: [4]\n\tdense(1)\n}\n",
    "utf-8 in comments and strings": model('    dense(3, name="h")  # größe → 3', after='let label = "naïve ✓"'),
    "names with digits and underscores": model("    h_1 = dense(3)\n    _tmp2 = h_1 -> relu"),
    "keyword as name prefix": model("    models = dense(3)\n    inputs = models -> relu\n    output_1 = inputs -> dense(2)"),
    "negative numbers": model("    dense(3) -> softmax(axis=-1)\n    reshape([-1])"),
}

# snippets that parse but are not whole valid specs (the parser alone is tested)
PARSE_ONLY = {
    "empty file": "",
    "only comments": "# nothing\n# here\n",
    "only lets": "let a = 1\nlet b = [1, 2]",
    "empty model": "model m { }",
    "empty train": "train { }",
    "numbers": "let a = 128 let b = 1_000 let c = 0.5 let d = .5 let e = 1e-3 let f = -2 let g = 1E+3",
    "nested lists": "let a = [[1, 2], [3, 4], []]",
    "call values": "let a = f() let b = g(1, k=2,) let c = h(x=[1], y='s', z=true)",
}


@pytest.mark.parametrize("source", list(GOOD.values()) + list(PARSE_ONLY.values()),
                         ids=list(GOOD) + list(PARSE_ONLY))
def test_parses(source: str):
    assert isinstance(parse(source, "t.nnspec"), A.File)


@pytest.mark.parametrize("source", list(GOOD.values()), ids=list(GOOD))
def test_good_snippets_check(source: str):
    program = check_source(source, "t.nnspec")
    assert program["model"]["name"] == "m"


# ----------------------------------------------------------------------------------------------
# what snippets parse to

def _let_values(source: str) -> dict:
    return {i.name: i.value for i in parse(source).items if isinstance(i, A.LetStmt)}


@pytest.mark.parametrize("text, value, is_int", [
    ("128", 128, True), ("1_000", 1000, True), ("0.5", 0.5, False), (".5", 0.5, False),
    ("1e-3", 0.001, False), ("-2", -2, True), ("-0.25", -0.25, False), ("2.", 2.0, False),
    ("1_000.5", 1000.5, False), ("3E2", 300.0, False),
])
def test_numbers(text, value, is_int):
    v = _let_values(f"let n = {text}")["n"]
    assert isinstance(v, A.Num)
    assert v.value == value and v.is_int == is_int and v.text == text


@pytest.mark.parametrize("text, value", [('"abc"', "abc"), ("'abc'", "abc"), ('"it\'s"', "it's"),
                                         ("'say \"hi\"'", 'say "hi"'), ('""', ""), ('"# not a comment"', "# not a comment")])
def test_strings(text, value):
    v = _let_values(f"let s = {text}")["s"]
    assert isinstance(v, A.Str) and v.value == value and v.text == text


def test_values_of_every_kind():
    vals = _let_values("let a = true let b = false let c = relu let d = [1, 2.5, 'x'] "
                       "let e = adam(0.1, beta1=0.8) let f = []")
    assert isinstance(vals["a"], A.Bool) and vals["a"].value is True
    assert isinstance(vals["b"], A.Bool) and vals["b"].value is False
    assert isinstance(vals["c"], A.Name) and vals["c"].name == "relu"
    assert isinstance(vals["d"], A.List) and [type(x) for x in vals["d"].items] == [A.Num, A.Num, A.Str]
    e = vals["e"]
    assert isinstance(e, A.Call) and e.name == "adam"
    assert [p.value for p in e.positional] == [0.1]
    assert [(k.name, k.value.value) for k in e.keywords] == [("beta1", 0.8)]
    assert isinstance(vals["f"], A.List) and vals["f"].items == []


def test_statements_parse_to_their_nodes():
    src = model("    let w = 2\n    h = dense(w) -> relu\n    h -> dense(1)\n    flatten\n"
                "    repeat 2 { identity }\n    output h\n    assert shape(h) == [2]\n    assert params < 9\n"
                "    assert output == [1]")
    body = the_model(parse(src)).body
    kinds = [type(s).__name__ for s in body]
    assert kinds == ["InputDecl", "LetStmt", "Binding", "Pipeline", "Pipeline", "Repeat", "OutputDecl",
                     "AssertStmt", "AssertStmt", "AssertStmt"]
    inp, _, binding, pipe, bare, rep, out, a1, a2, a3 = body
    assert inp.name == "x" and inp.dtype is None and [d.value for d in inp.dims] == [4]
    assert binding.name == "h" and [s.name for s in binding.pipeline.stages] == ["dense", "relu"]
    assert binding.pipeline.stages[1].args is None          # a bare stage
    assert [s.name for s in pipe.stages] == ["h", "dense"]
    assert bare.stages[0].name == "flatten" and bare.stages[0].args is None
    assert rep.count.value == 2 and len(rep.body) == 1
    assert [n.name for n in out.names] == ["h"]
    assert (a1.quantity.kind, a1.quantity.name, a1.quantity.arg.name, a1.op) == ("call", "shape", "h", "==")
    assert (a2.quantity.kind, a2.quantity.name, a2.op, a2.value.value) == ("name", "params", "<", 9)
    assert a3.quantity.kind == "output"


def test_input_dtype_and_output_names():
    src = "model m { input t: int64 [12, 3]\n a = dense(2)\n b = t -> dense(2)\n output a, b }"
    body = the_model(parse(src)).body
    assert body[0].dtype.name == "int64" and [d.value for d in body[0].dims] == [12, 3]
    assert [n.name for n in body[-1].names] == ["a", "b"]


@pytest.mark.parametrize("op", ["<=", "<", "==", ">=", ">"])
def test_every_comparison(op):
    body = the_model(parse(model(f"    dense(3)\n    assert params {op} 15"))).body
    assert body[-1].op == op


def test_spans_are_one_based_and_end_exclusive():
    f = parse("let width = 32\nmodel m {\n    input x: [4]\n    dense(width) -> relu\n}\n")
    let = f.items[0]
    assert (let.name_span.line, let.name_span.column, let.name_span.end_column) == (1, 5, 10)
    stage = the_model(f).body[1].stages[0]
    assert (stage.span.line, stage.span.column, stage.span.end_column) == (4, 5, 17)
    assert (stage.name_span.column, stage.name_span.end_column) == (5, 10)


def test_a_byte_order_mark_is_skipped():
    assert parse("\ufeffmodel m { input x: [4] dense(1) }".encode("utf-8")).items


def test_comments_are_collected_for_the_formatter():
    f = parse("# a\nmodel m { input x: [4] # b\n dense(1) }\n# c", comments=True)
    assert [(line, text) for line, _, text in f.comments] == [(1, "# a"), (2, "# b"), (4, "# c")]


# ----------------------------------------------------------------------------------------------
# snippets that do not parse: (source, code, line, column)

BAD = {
    "keyword as let name": ("let model = 3", "E102", 1, 5),
    "keyword as value name": ("model m { input x: [4]\n repeat = dense(2) }", "E102", 2, 2),
    "keyword as input name": ("model m { input input: [4] dense(1) }", "E102", 1, 17),
    "keyword as train key": ("model m { input x: [4] dense(1) }\ntrain { input = 3 }", "E102", 2, 9),
    "true as a name": ("model m { input x: [4]\n true = dense(2) }", "E102", 2, 2),
    "semicolon": ("model m { input x: [4]\n dense(1);\n}", "E101", 2, 10),
    "single dash": ("model m { input x: [4]\n dense(2) - relu }", "E102", 2, 11),
    "unicode arrow": ("model m { input x: [4]\n dense(2) → relu }", "E101", 2, 11),
    "at sign": ("model m { input x: [4] dense(1) }\n@", "E101", 2, 1),
    "dollar in a name": ("let $a = 1", "E101", 1, 5),
    "non-ascii name": ("let größe = 1", "E101", 1, 7),
    "unclosed double quote": ('let s = "abc\nmodel m {}', "E104", 1, 9),
    "unclosed single quote": ("model m { input x: [4]\n dense(1, name='h) }", "E104", 2, 16),
    "missing colon after input": ("model m { input x [4] dense(1) }", "E102", 1, 19),
    "missing shape": ("model m { input x: dense(1) }", "E102", 1, 25),
    "missing comma between args": ("model m { input x: [4]\n dense(3 bias=false) }", "E102", 2, 10),
    "missing comma in list": ("let a = [1 2]", "E102", 1, 12),
    "double comma": ("model m { input x: [4]\n dense(3,, bias=false) }", "E102", 2, 10),
    "number starts a statement": ("model m { input x: [4]\n 3 -> relu }", "E102", 2, 2),
    "string starts a statement": ("model m { input x: [4]\n 'relu' }", "E102", 2, 2),
    "arrow starts a statement": ("model m { input x: [4]\n -> relu }", "E102", 2, 2),
    "dangling arrow": ("model m { input x: [4]\n dense(1) ->\n}", "E102", 3, 1),
    "double arrow": ("model m { input x: [4]\n dense(1) -> -> relu }", "E102", 2, 14),
    "fat arrow": ("model m { input x: [4]\n dense(1) => relu }", "E102", 2, 11),
    "assert with =": ("model m { input x: [4]\n dense(1)\n assert params = 3 }", "E102", 3, 16),
    "assert without value": ("model m { input x: [4]\n dense(1)\n assert params <=\n}", "E102", 4, 1),
    "assert shape of two": ("model m { input x: [4]\n h = dense(1)\n assert shape(h, x) == [1] }", "E102", 3, 16),
    "assert at top level": ("model m { input x: [4] dense(1) }\nassert params < 3", "E102", 2, 1),
    "input at top level": ("input x: [4]\nmodel m { dense(1) }", "E102", 1, 1),
    "train inside model": ("model m { input x: [4]\n dense(1)\n train { loss = mse } }", "E102", 3, 2),
    "model inside model": ("model m { input x: [4]\n model n { } }", "E102", 2, 2),
    "train with colon": ("model m { input x: [4] dense(1) }\ntrain { loss: mse }", "E102", 2, 13),
    "train with a pipeline": ("model m { input x: [4] dense(1) }\ntrain { loss = mse -> sgd }", "E102", 2, 20),
    "let in train": ("model m { input x: [4] dense(1) }\ntrain { let a = 1 }", "E102", 2, 9),
    "model without name": ("model { input x: [4] dense(1) }", "E102", 1, 7),
    "model with parens": ("model m ( input x: [4] )", "E102", 1, 9),
    "repeat without count": ("model m { input x: [4]\n repeat { dense(1) } }", "E102", 2, 9),
    "repeat with a list count": ("model m { input x: [4]\n repeat [2] { dense(1) } }", "E102", 2, 9),
    "output without names": ("model m { input x: [4]\n dense(1)\n output\n}", "E102", 4, 1),
    "output trailing comma": ("model m { input x: [4]\n h = dense(1)\n output h,\n}", "E102", 4, 1),
    "inputs on one line with commas": ("model m { input x: [4], y: [3] }", "E102", 1, 23),
    "extra closing brace": ("model m { input x: [4] dense(1) }\n}", "E102", 2, 1),
    "empty dims": ("model m { input x: [] dense(1) }", "E102", 1, 21),
    "comparison as a value": ("let a = <", "E102", 1, 9),
    "equals twice": ("let a == 3", "E102", 1, 8),
    # unexpected end of file: points at the end of the last non-blank line
    "eof in call": ("model m { input x: [4]\n dense(3", "E103", 2, 9),
    "eof in list": ("model m { input x: [1, 8", "E103", 1, 25),
    "eof in model": ("model m { input x: [4]\n dense(3) -> relu\n\n\n", "E103", 2, 18),
    "eof in train": ("model m { input x: [4] dense(1) }\ntrain { loss = mse\n   \n", "E103", 2, 19),
    "eof after let": ("let a =", "E103", 1, 8),
    "eof after keyword": ("model", "E103", 1, 6),
    "eof after comment": ("model m { input x: [4]\n dense(1) # the end", "E103", 2, 20),
    "eof in repeat": ("model m { input x: [4]\n repeat 2 { dense(1)", "E103", 2, 21),
    # input problems
    "deep nesting": ("let a = " + "[" * 100 + "1" + "]" * 100, "E106", 1, 73),
    "deep call nesting": ("let a = " + "f(" * 80 + "1" + ")" * 80, "E106", 1, 138),
    "NUL byte": ("model m {\x00}", "E001", 1, 1),
}


@pytest.mark.parametrize("source, code, line, column", list(BAD.values()), ids=list(BAD))
def test_bad_snippets(source, code, line, column):
    data = source.encode("utf-8") if "\x00" in source else source
    with pytest.raises(NncError) as info:
        parse(data, "t.nnspec")
    (d,) = info.value.diagnostics
    assert (d.code, d.span.line, d.span.column) == (code, line, column), (d.code, d.span, d.message)
    assert d.path == "t.nnspec"
    assert d.message
    for text in (d.message, d.hint or ""):   # the user's words, never lark's terminal names
        assert not re.search(r"\b(?:RPAR|LPAR|RSQB|LSQB|RBRACE|LBRACE|COMMA|COLON|EQUAL)\b|__ANON|\$END", text), text


@pytest.mark.parametrize("word", KEYWORDS)
def test_keywords_are_reserved(word):
    with pytest.raises(NncError) as info:
        parse(f"let {word} = 3")
    (d,) = info.value.diagnostics
    assert d.code == "E102" and (d.span.line, d.span.column) == (1, 5)
    assert f"keyword `{word}`" in d.message
    assert "reserved" in d.hint and f"`{word}`" in d.hint


def test_reserved_word_message():
    with pytest.raises(NncError) as info:
        parse("let model = 3")
    (d,) = info.value.diagnostics
    assert d.message == "unexpected keyword `model`; expected a name"
    assert d.hint == "`model` is a reserved word and cannot be used as a name; choose another name"


def test_invalid_utf8_points_at_the_byte():
    with pytest.raises(NncError) as info:
        parse(b"model m {\n  input x: [4] # caf\xe9\n}")
    (d,) = info.value.diagnostics
    assert d.code == "E001" and (d.span.line, d.span.column) == (2, 21)
    assert "0xe9" in d.message


def test_unexpected_end_of_file_hints():
    cases = {"model m { input x: [4]\n dense(3": "`)`", "let a = [1, 2": "`]`",
             "model m { input x: [4]\n dense(3)": "`}`"}
    for src, closer in cases.items():
        with pytest.raises(NncError) as info:
            parse(src)
        (d,) = info.value.diagnostics
        assert d.code == "E103" and d.message.startswith("unexpected end of file")
        assert closer in d.hint, (src, d.hint)


@pytest.mark.parametrize("source", ["model m { input x: [4]\n dense(bias=false, 3) }",
                                    "model m { input x: [1, 8, 8]\n conv2d(4, padding=same, 3) }"])
def test_positional_after_keyword_is_an_error(source):
    with pytest.raises(NncError) as info:
        check_source(source)
    (d,) = info.value.diagnostics
    assert d.code in ("E102", "E404") and d.span.line == 2
    assert "positional" in d.message


def test_eof_expected_list_is_not_cut_silently():
    """An unexpected end of file lists what could come next; a cut list ends in `...`."""
    with pytest.raises(NncError) as info:
        parse("model m { input x: [4]\n dense(3) -> relu\n")
    (d,) = info.value.diagnostics
    assert d.code == "E103"
    assert "`}`" in d.message or d.message.endswith("...")
