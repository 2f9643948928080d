"""Source text -> syntax tree (:mod:`nnc.lang.ast`), with syntax errors in the user's words.

The syntax tree's builders and the fast path (lark's tables driven by :mod:`nnc.grammar.lalr`) are
here; what needs lark itself (syntax errors, ``parse_prefix``, ``read_value``, ``parse_value``) is
in :mod:`.parse_lark`, loaded on first use, and reachable from here under the same names.

Every input, however broken (binary, not UTF-8, deeply nested, megabytes long), either parses or
raises :class:`NncError`; nothing else escapes.
"""
from __future__ import annotations

import contextlib
import gc
import re

from ..grammar import KEYWORDS
from ..lang import ast as A
from ..errors import NncError, SourceSpan

__all__ = ["KEYWORDS", "parse", "parse_prefix", "parse_value", "read_value", "decode_source"]
MAX_NESTING = 64
MAX_SOURCE_BYTES = 1 << 20  # 1 MiB: no real spec comes close (a 1,000-layer spec is about 20 KiB)

# NOTE: what only lark's parser does lives in parse_lark (syntax errors, the prefix tree, single
# values, lark's tree -> the syntax tree), loaded on first use: `nnc check` of a good spec never
# compiles it
_LARK_SIDE = frozenset({"parse_prefix", "read_value", "parse_value", "_transform"})


def __getattr__(name: str):
    if name in _LARK_SIDE:
        from . import parse_lark
        return getattr(parse_lark, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _number(text: str) -> int | float:
    if text.isdigit() and text.isascii():
        return int(text) if len(text) < 4000 else _number_slow(text)
    return _number_slow(text)


def _number_slow(text: str) -> int | float:
    clean = text.replace("_", "")
    if re.fullmatch(r"-?[0-9]+", clean):
        try:
            return int(clean)
        except ValueError:  # more digits than Python converts: an out-of-range value, not a crash
            return float(clean)
    return float(clean)


def _sp(ext) -> SourceSpan:
    """The span of a rule's extent ``(_, line, column, end_line, end_column)`` (None: nothing)."""
    if ext is None:
        return SourceSpan()
    _, line, column, end_line, end_column = ext
    return SourceSpan(line, column, end_line, end_column)


def _ts(tok) -> SourceSpan:
    """The span of a token ``(text, line, column, end_line, end_column)``."""
    _, line, column, end_line, end_column = tok
    return SourceSpan(line, column, end_line, end_column)


# ----------------------------------------------------------------------------------------------
# the syntax tree's builders: one per grammar rule, shared by the fast path (nnc.grammar.lalr) and
# lark's tree (ToAst). ``c`` are the rule's children as lark shapes them, tokens as
# ``(text, line, column, end_line, end_column)``; ``x`` is the rule's extent (for its span), the
# same tuple with no text.

def _v_number(c, x):
    tok = c[0]
    return A.Num(_number(tok[0]), tok[0], _ts(tok))


def _v_string(c, x):
    tok = c[0]
    return A.Str(tok[0][1:-1], tok[0], _ts(tok))


def _v_list(c, x):
    return A.List([v for v in c if v is not None], _sp(x))


def _call(c, x):
    name, args = c
    return A.Call(name[0], _ts(name), args or [], _sp(x))


def _binop(op):
    def build(c, x):
        return A.BinOp(op, c[0], c[1], _sp(x))
    return build


def _e_neg(c, x):
    (operand,) = c
    if type(operand) is A.Num and operand.source is None and not operand.text.startswith("-"):
        # `-2` is a negative number, as before expressions existed (its text keeps the sign)
        return A.Num(-operand.value, "-" + operand.text, _sp(x))
    return A.Neg(operand, _sp(x))


def _input_decl(c, x):
    name, dtype, *dims = c
    dt = A.Name(dtype[0], _ts(dtype)) if dtype is not None else None
    return A.InputDecl(name[0], _ts(name), dt, dims, _sp(x))


def _block_def(c, x):
    name, *rest = c
    params = [v for v in rest if isinstance(v, A.Param)]
    body = [v for v in rest if v is not None and not isinstance(v, A.Param)]
    return A.BlockDef(name[0], _ts(name), params, body, _sp(x))


def _stage_bare(c, x):
    span = _ts(c[0])  # (a span is immutable: the name's span is the stage's)
    return A.Call(c[0][0], span, None, span)


def _first(c, x):
    return c[0]


BUILDERS = {
    "v_number": _v_number,
    "v_string": _v_string,
    "v_true": lambda c, x: A.Bool(True, _sp(x)),
    "v_false": lambda c, x: A.Bool(False, _sp(x)),
    "v_name": lambda c, x: A.Name(c[0][0], _ts(c[0])),
    "v_list": _v_list,
    "v_call": _call,
    "e_add": _binop("+"), "e_sub": _binop("-"), "e_mul": _binop("*"), "e_div": _binop("/"),
    "e_floordiv": _binop("//"), "e_mod": _binop("%"),
    "e_neg": _e_neg,
    "e_paren": lambda c, x: A.Paren(c[0], _sp(x)),
    "arglist": lambda c, x: list(c),
    "arg_pos": _first,
    "arg_kw": lambda c, x: A.KwArg(c[0][0], _ts(c[0]), c[1], _sp(x)),
    "stage_bare": _stage_bare,
    "stage_call": _call,
    "pipeline": lambda c, x: A.Pipeline(c, _sp(x)),  # (``c`` is a list of its own, from either parser)
    "binding": lambda c, x: A.Binding(c[0][0], _ts(c[0]), c[1], _sp(x)),
    "dim": _first,
    "count": _first,
    "input_decl": _input_decl,
    "output_decl": lambda c, x: A.OutputDecl([A.Name(t[0], _ts(t)) for t in c], _sp(x)),
    "quantity_name": lambda c, x: A.Quantity("name", c[0][0], None, _sp(x)),
    "quantity_output": lambda c, x: A.Quantity("output", "output", None, _sp(x)),
    "quantity_call": lambda c, x: A.Quantity("call", c[0][0], A.Name(c[1][0], _ts(c[1])), _sp(x)),
    "assert_stmt": lambda c, x: A.AssertStmt(c[0], c[1][0], c[2], _sp(x)),
    "repeat": lambda c, x: A.Repeat(c[0], c[1:], _sp(x)),
    "let_stmt": lambda c, x: A.LetStmt(c[0][0], _ts(c[0]), c[1], _sp(x)),
    "param": lambda c, x: A.Param(c[0][0], _ts(c[0]), c[1], _sp(x)),
    "block_def": _block_def,
    "model": lambda c, x: A.Model(c[0][0], _ts(c[0]), c[1:], _sp(x)),
    "entry": lambda c, x: A.Entry(c[0][0], _ts(c[0]), c[1], _sp(x)),
    "train": lambda c, x: A.Train(list(c), _sp(x)),
    "start": lambda c, x: A.File(list(c)),
    "<passes>": ("arg_pos", "dim", "count"),  # (for the fast path: these return their one child,
    "<lists>": ("arglist",),  # these their children as a list)
}


# ----------------------------------------------------------------------------------------------
# input sanitising

def decode_source(data: bytes, path: str | None) -> str:
    """UTF-8 text of a spec file, or an E001 diagnostic at the first bad byte."""
    if b"\x00" in data[:8192]:
        raise NncError.single("E001", "this is not a text file (it contains NUL bytes)",
                              hint="nnspec files are UTF-8 text; check the path", path=path,
                              span=SourceSpan(1, 1, 1, 2))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[:exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise NncError.single("E001", f"the file is not valid UTF-8 (byte 0x{data[exc.start]:02x})",
                              hint="save the file as UTF-8", path=path,
                              span=SourceSpan(line, column, line, column + 1)) from None
    return text[1:] if text.startswith("\ufeff") else text


_BRACKETS = re.compile(r"[\[\](){}]|#[^\n]*|\"[^\"\n]*\"|'[^'\n]*'")


def _check_nesting(text: str, path: str | None) -> None:
    """Refuse absurd nesting before the (recursive) tree transformer sees it."""
    depth = 0
    for m in _BRACKETS.finditer(text):
        ch = m.group()
        if ch in "([{":
            depth += 1
            if depth > MAX_NESTING:
                line = text.count("\n", 0, m.start()) + 1
                col = m.start() - (text.rfind("\n", 0, m.start()) + 1) + 1
                raise NncError.single(
                    "E106", f"brackets are nested more than {MAX_NESTING} deep",
                    hint="no nnspec construct needs this much nesting; check for a runaway bracket",
                    span=SourceSpan(line, col, line, col + 1), path=path)
        elif ch in ")]}":
            depth = max(0, depth - 1)


# ----------------------------------------------------------------------------------------------

@contextlib.contextmanager
def gc_paused():
    """Pause the cyclic garbage collector: building big trees of small objects otherwise triggers
    collections whose cost grows with the tree (quadratic overall on megabyte inputs)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def parse(source: str | bytes, path: str | None = None, *, comments: bool = False) -> A.File:
    """Parse nnspec source into an :class:`ast.File`. Raises :class:`NncError` on any problem."""
    _check_size(source, path)
    text = decode_source(source, path) if isinstance(source, bytes) else source
    _check_nesting(text, path)
    if not comments:
        from ..grammar.lalr import FAILED, run
        with gc_paused():
            result = run(text, BUILDERS)
        if result is not FAILED:
            return result
    # lark's own parser: for the comments, and wherever the fast path leaves the answer to it
    from .parse_lark import parse_with_lark
    return parse_with_lark(text, path, comments)


def _check_size(source, path: str | None) -> None:
    if len(source) > MAX_SOURCE_BYTES:
        raise NncError.single(
            "E107", f"the file is {len(source):,} bytes; nnc reads spec files of at most 1 MiB ({MAX_SOURCE_BYTES:,} bytes)",
            hint="a spec this large is almost certainly generated by mistake (a 1,000-layer spec is about "
            "20 KiB); use `repeat` instead of copies", path=path, span=SourceSpan(1, 1, 1, 2))


