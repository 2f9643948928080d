"""Constant expressions: the grammar (good and bad snippets), precedence and associativity, integer
and float results (against Python's own arithmetic), where expressions may stand, and their errors."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnc.compiler.format import format_source
from nnc.compiler.lower import check_source, compile_source
from nnc.compiler.parse import parse
from nnc.errors import NncError


def const(expr: str, lets: str = ""):
    """The value of ``let v = <expr>`` as the compiler evaluates it (the IR's constants table)."""
    program = compile_source(f"{lets}\nlet v = {expr}\nmodel m {{ input x: [2] dense(1) }}", "e.nnspec")
    return program.constants["v"]


@pytest.mark.parametrize("expr, value", [
    ("2 + 3 * 4", "14"),
    ("(2 + 3) * 4", "20"),
    ("10 - 4 - 3", "3"),              # left-associative
    ("100 / 10 / 5", "2.0"),
    ("2 * 3 // 4", "1"),              # (2 * 3) // 4
    ("7 % 4 * 2", "6"),
    ("-2 * 3", "-6"),
    ("-(2 + 3)", "-5"),
    ("--2", "2"),
    ("- 2", "-2"),
    ("2 - -2", "4"),
    ("2--2", "4"),
    ("depth-1", "3"),                 # a subtraction, not a name and a number
    ("depth - 1", "3"),
    ("-depth", "-4"),
    ("64 / 2", "32.0"),               # `/` always gives a float
    ("64 // 2", "32"),
    ("-7 // 2", "-4"),                # Python's floor division
    ("-7 % 2", "1"),
    ("7 % -2", "-1"),
    ("0.5 * 4", "2.0"),
    ("1e3 // 7", "142"),              # 1e3 is the whole number 1000
    ("1_000 + 1", "1001"),
    ("base_lr / 10", "0.003"),
    ("width * 2 + 1", "65"),
    ("((((1))))", "1"),
])
def test_precedence_and_results(expr, value):
    assert const(expr, "let depth = 4\nlet width = 32\nlet base_lr = 0.03") == value


def _python(expr: str):
    """The reference: Python's own arithmetic (same precedence and associativity for these
    operators), with nnspec's two refusals: `//` and `%` of a float (E408), division by zero (E406)."""
    import ast
    import operator
    ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}

    def ev(node):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.UnaryOp):
            return -ev(node.operand)
        a, b = ev(node.left), ev(node.right)
        if isinstance(node.op, (ast.FloorDiv, ast.Mod)) and (isinstance(a, float) or isinstance(b, float)):
            raise TypeError("E408")
        if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and b == 0:
            raise TypeError("E406")
        return ops[type(node.op)](a, b)
    return ev(ast.parse(expr, mode="eval").body)


@given(st.integers(-50, 50), st.integers(-50, 50), st.integers(-50, 50),
       st.sampled_from(["+", "-", "*", "//", "%", "/"]), st.sampled_from(["+", "-", "*", "//", "%", "/"]),
       st.booleans())
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
def test_arithmetic_is_pythons(a, b, c, op1, op2, group):
    expr = f"({a} {op1} {b}) {op2} {c}" if group else f"{a} {op1} {b} {op2} {c}"
    try:
        want = _python(expr)
    except TypeError as refused:
        with pytest.raises(NncError) as info:
            const(expr)
        assert info.value.diagnostics[0].code == str(refused)
        return
    got = const(expr)
    assert got == (str(want) if isinstance(want, int) else repr(want)), (expr, got, want)


def test_expressions_wherever_a_value_goes():
    program = compile_source("""
let width = 8
let depth = 3
let base_lr = 0.1
model m {
    input x: [width * 2]
    repeat depth - 1 { dense(width // 2) }
    conv_in = reshape([2, width // 4])
    head = flatten -> dense(width % 5)
    assert params <= 10 * 1000
    assert output == [width - 5]
}
train {
    loss = mse
    optimizer = sgd(lr=base_lr / 10, momentum=1 - 0.1)
    epochs = depth * 2
    batch_size = 2 * 16
    validation = 1 / 4
}""", "e.nnspec")
    nodes = program.model.nodes
    assert [n.op for n in nodes] == ["dense", "dense", "reshape", "flatten", "dense"]
    assert nodes[2].attrs["shape"] == [2, 2]
    t = program.train
    assert t.optimizer["lr"] == pytest.approx(0.01) and t.optimizer["momentum"] == pytest.approx(0.9)
    assert (t.epochs, t.batch_size, t.validation) == (6, 32, 0.25)


@pytest.mark.parametrize("source, code, where", [
    ("let w = 4\nmodel m { input x: [2] dense(w / 2) }", "E401", (2, 30)),
    ("let w = 4\nmodel m { input x: [2] dense(w // 0) }", "E406", (2, 30)),
    ("let w = 4\nmodel m { input x: [2] dense(w % (w - 4)) }", "E406", (2, 30)),
    ("let w = 4.5\nmodel m { input x: [2] dense(w // 2) }", "E408", (2, 30)),
    ("model m { input x: [2] h = relu\n dense(h + 1) }", "E407", (2, 8)),
    ("let s = \"a\"\nmodel m { input x: [2] dense(s * 2) }", "E407", (2, 30)),
    ("let l = [1]\nmodel m { input x: [2] dense(l * 2) }", "E407", (2, 30)),
    ("model m { input x: [2] dense(relu * 2) }", "E407", (1, 30)),
    ("model m { input x: [2] dense(widht * 2) }", "E303", (1, 30)),
    ("let a = b * 2\nlet b = 3\nmodel m { input x: [2] dense(a) }", "E303", (1, 9)),
    ("let a = a + 1\nmodel m { input x: [2] dense(1) }", "E303", (1, 9)),
    ("model m { input x: [2] repeat 2 - 2 { relu } }", "E402", (1, 31)),
    ("model m { input x: [2 - 3] relu }", "E402", (1, 21)),
])
def test_expression_errors_are_located(source, code, where):
    with pytest.raises(NncError) as info:
        check_source(source, "e.nnspec")
    d = info.value.diagnostics[0]
    assert (d.code, d.span.line, d.span.column) == (code, *where), (d.code, d.span, d.message)


def test_a_failed_constant_is_reported_once_at_its_definition():
    with pytest.raises(NncError) as info:
        check_source("let a = 1 // 0\nmodel m { input x: [2] dense(a) -> dense(a * 2) }", "e.nnspec")
    assert [d.code for d in info.value.diagnostics] == ["E406"]


# ----------------------------------------------------------------------------------------------
# grammar

@pytest.mark.parametrize("snippet", [
    "let a = 1 + 2", "let a = 1 - -2", "let a = (1)", "let a = -(1 + 2) * 3 // 4 % 5 / 6",
    "let a = [1 + 1, -2, b * 3]", "let a = adam(lr=1e-3 * 2)",
    "block b() { relu }", "block b(c) { dense(c) }", "block b(c, d = 2,) { dense(c * d) }",
    "block b(c = 1, d = c * 2) { dense(d) }",
    "block b(c) { x = identity\n h = dense(c)\n add(x, h) }",
    "model m { input x: [2 * 3, n - 1] repeat (d - 1) * 2 { relu } }",
    "model m { input x: [2] assert params <= 10 * 1000 }",
])
def test_good_snippets_parse(snippet):
    parse(snippet)


@pytest.mark.parametrize("snippet, code", [
    ("let a = 1 +", "E103"), ("let a = * 2", "E102"), ("let a = (1 + 2", "E103"),
    ("let a = 1 ** 2", "E102"), ("let a = 2 (3)", "E102"),
    ("block { relu }", "E102"), ("block b { relu }", "E102"), ("block b(1) { relu }", "E102"),
    ("block b(c d) { relu }", "E102"), ("model m { block b() { relu } }", "E102"),
    ("let block = 3", "E102"), ("model m { input x: [2] block = relu }", "E102"),
    ("model m { input x: [2] dense(3) - relu }", "E102"),
    ("model m { input x: [2] h = 2 * relu }", "E102"),
])
def test_bad_snippets_are_syntax_errors(snippet, code):
    with pytest.raises(NncError) as info:
        parse(snippet)
    assert info.value.diagnostics[0].code == code


@pytest.mark.parametrize("source, canonical", [
    ("let a=-(3+4)*2//-1\n", "let a = -(3 + 4) * 2 // -1\n"),
    ("let a = - 2\n", "let a = -2\n"),
    ("let a = 2--2\n", "let a = 2 - -2\n"),
    ("block  q ( a,b=  - 2 , ) { repeat a-1 { dense( a*  b ) } }\n",
     "block q(a, b = -2) {\n    repeat a - 1 {\n        dense(a * b)\n    }\n}\n"),
])
def test_fmt_writes_expressions_and_blocks_canonically(source, canonical):
    assert format_source(source) == canonical
    assert format_source(canonical) == canonical
