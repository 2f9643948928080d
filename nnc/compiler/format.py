"""The canonical printer behind ``nnc fmt``: syntax tree + comments -> canonical text.

Canonical form
--------------
Layout
  - One statement per line. Statements inside ``model { }``, ``train { }`` and ``repeat N { }``
    are indented 4 spaces per level; ``{`` ends the header line and ``}`` stands on its own line at
    the header's indentation.
  - Top-level items keep their order. A ``model``, ``block`` or ``train`` block is separated from
    the items around it by exactly one blank line; between two consecutive top-level ``let`` lines the user's
    blank line is kept (at most one). The file starts with its first item or comment.
  - Inside blocks, a blank line the user left between statements (or comments) is kept; runs of
    blank lines collapse to one. Blank lines right after ``{`` or right before ``}`` are removed,
    and so are blank lines inside a statement that spans lines.
  - No tabs in indentation, no trailing white space, ``\\r\\n`` becomes ``\\n``, and the file ends
    with exactly one newline (an empty file stays empty).
Tokens
  - ``a -> b``: one space on each side of ``->``. Calls ``dense(64, bias=false)``: no space before
    ``(``, none inside the parentheses, none around ``=`` of a keyword argument, ``, `` between
    arguments. Lists ``[1, 8, 8]``. A trailing comma in a list, argument list or input shape is
    dropped.
  - ``input x: [1, 8, 8]``; with a dtype ``input t: int64 [20]`` (one space between the dtype and
    the shape). ``output a, b``. ``assert params <= 50_000``, ``assert shape(h) == [32]``.
    ``let width = 32``, ``x = dense(8)``, ``repeat 3 {``, ``block basic(c, stride = 1) {`` (a
    parameter's default has spaces around ``=``, as a ``let`` has).
  - Constant expressions: one space on each side of a binary operator (``4 * width``,
    ``depth - 1``, ``width // 2``), none after a unary minus (``-2``, ``-width``); parentheses are
    kept as written (``(a + b) * 2``), never added or removed.
  - Train entries are ``key = value`` with the ``=`` of all entries of the block aligned in one
    column: each key is padded to the longest key of the block, then `` = ``.
  - Numbers, strings and names are printed exactly as written (``50_000``, ``1e-3``, ``.5``,
    ``'single'`` quotes stay as they are).
Long statements
  - A statement is printed on one line, whatever its line breaks in the source. Only a pipeline
    whose one-line form would pass column 100 is broken, and only after a ``->``: stages are
    filled onto a line while the next stage and its ``->`` still fit in 100 columns, then the
    pipeline continues on a line indented 8 spaces more than the statement. (The decision depends
    on the tokens alone, never on the source layout, so formatting is idempotent.) A single stage
    longer than that stays on one line.
Comments (every comment is kept, with trailing white space removed)
  - A comment on its own line stays on its own line, before the statement (or ``}``, or the end of
    the file) that follows it, at that statement's indentation; comments before ``}`` are indented
    like the block's statements.
  - A trailing comment (after code on the same line) stays at the end of the line of the token it
    follows. Trailing comments start at column 44 (as in the example specs), or two spaces after the
    code when the code reaches column 42 or beyond.
  - Inside a statement or block header (e.g. in a call's arguments spanning lines): a trailing comment
    ends the line after the token it follows, and the statement continues on the next line,
    indented 8 spaces more than the statement; an own-line comment stands on its own line at that
    continuation indentation, and the statement continues on the following line. So a statement
    keeps exactly the line breaks its comments need, and no others (plus the long-pipeline ones).
  - A comment after a dropped trailing comma moves to the token before the comma.

Formatting never changes the syntax tree (apart from positions), hence never the compiled IR.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..grammar import lex
from ..lang import ast as A
from .parse import parse

INDENT = 4
CONTINUATION = 8
MAX_WIDTH = 100
COMMENT_COLUMN = 44  # 1-based column where trailing comments start, when the code leaves room


# ----------------------------------------------------------------------------------------------
# tokens and the comments attached to them

@dataclass
class Comment:
    text: str
    line: int
    blank_before: bool = False  # a blank line separates it from what precedes it


@dataclass
class Tok:
    text: str
    line: int
    blank_before: bool = False
    before: list[Comment] = field(default_factory=list)  # own-line comments just before it
    after: list[Comment] = field(default_factory=list)   # trailing comment(s) after it


def _lex(text: str) -> list[Tok]:
    """Tokens with their comments attached; the last token is an end-of-file marker ``""``.

    The tokens are the grammar's (:func:`nnc.grammar.lex`, comments and white space included), so
    the printer sees exactly what the parser saw."""
    toks: list[Tok] = []
    pending: list[Comment] = []
    last_line = None  # line where the previous token or comment ended
    for t in lex(text):
        if t.type == "WS":
            continue
        line = t.line
        blank = last_line is not None and line - last_line >= 2
        if t.type == "COMMENT":
            c = Comment(t.value.rstrip(), line, blank)
            if toks and toks[-1].line == line and not pending:
                toks[-1].after.append(c)
            else:
                pending.append(c)
        else:
            toks.append(Tok(t.value, line, blank, pending))
            pending = []
        last_line = line
    line = text.count("\n") + 1
    toks.append(Tok("", line, last_line is not None and line - last_line >= 2, pending))
    return toks


# ----------------------------------------------------------------------------------------------
# pieces: the tokens of one statement, as printed

@dataclass
class Piece:
    text: str
    space: int                      # spaces before it when it continues a line
    before: list[Comment]
    after: list[Comment]
    blank_before: bool = False
    arrow: bool = False             # a pipeline's `->` (a break point for long pipelines)


class _Reader:
    """Walks the source tokens in step with the syntax tree, collecting pieces of a statement."""

    def __init__(self, toks: list[Tok]):
        self.toks = toks
        self.i = 0
        self.pieces: list[Piece] = []
        self.carry: list[Comment] = []  # own-line comments of a dropped token, for the next piece

    def peek(self) -> str:
        return self.toks[self.i].text

    def take(self, text: str, space: int = 1, arrow: bool = False) -> None:
        tok = self.toks[self.i]
        if tok.text != text:  # pragma: no cover - would be a bug in the printer
            raise AssertionError(f"nnc fmt: expected {text!r} at line {tok.line}, found {tok.text!r}")
        self.i += 1
        self.pieces.append(Piece(text, space, self.carry + tok.before, list(tok.after),
                                 tok.blank_before, arrow))
        self.carry = []

    def drop(self, text: str) -> None:
        """Skip an optional token (a trailing comma), keeping its comments."""
        tok = self.toks[self.i]
        assert tok.text == text
        self.i += 1
        self.carry += tok.before
        self.pieces[-1].after += tok.after

    def statement(self) -> list[Piece]:
        out, self.pieces = self.pieces, []
        return out

    # values -----------------------------------------------------------------------------------
    def value(self, v: A.Value, space: int = 1) -> None:
        if isinstance(v, A.Num) and v.text.startswith("-"):
            self.take("-", space)  # a negative number is unary minus and a number: two tokens
            self.take(v.text[1:], 0)
        elif isinstance(v, A.Num):
            self.take(v.text, space)
        elif isinstance(v, A.Str):
            self.take(v.text, space)
        elif isinstance(v, A.Bool):
            self.take("true" if v.value else "false", space)
        elif isinstance(v, A.Name):
            self.take(v.name, space)
        elif isinstance(v, A.List):
            self.take("[", space)
            self.items(v.items, "]")
        elif isinstance(v, A.Call):
            self.call(v, space)
        elif isinstance(v, A.BinOp):
            self.value(v.left, space)
            self.take(v.op, 1)
            self.value(v.right, 1)
        elif isinstance(v, A.Neg):
            self.take("-", space)
            self.value(v.operand, 0)
        elif isinstance(v, A.Paren):
            self.take("(", space)
            self.value(v.inner, 0)
            self.take(")", 0)
        else:  # pragma: no cover
            raise AssertionError(f"nnc fmt: unknown value {v!r}")

    def items(self, items: list, close: str) -> None:
        for k, item in enumerate(items):
            if k:
                self.take(",", 0)
            if isinstance(item, A.KwArg):
                self.take(item.name, 1 if k else 0)
                self.take("=", 0)
                self.value(item.value, 0)
            else:
                self.value(item, 1 if k else 0)
        if items and self.peek() == ",":
            self.drop(",")
        self.take(close, 0)

    def call(self, c: A.Call, space: int = 1) -> None:
        self.take(c.name, space)
        if c.args is not None:
            self.take("(", 0)
            self.items(c.args, ")")

    # statements -------------------------------------------------------------------------------
    def pipeline(self, p: A.Pipeline, space: int = 0) -> None:
        for k, stage in enumerate(p.stages):
            if k:
                self.take("->", 1, arrow=True)
            self.call(stage, space if k == 0 else 1)

    def simple(self, st) -> list[Piece]:
        """Pieces of a one-line statement (everything but blocks)."""
        if isinstance(st, A.LetStmt):
            self.take("let", 0)
            self.take(st.name)
            self.take("=")
            self.value(st.value)
        elif isinstance(st, A.InputDecl):
            self.take("input", 0)
            self.take(st.name)
            self.take(":", 0)
            if st.dtype is not None:
                self.take(st.dtype.name)
            self.take("[")
            self.items(st.dims, "]")
        elif isinstance(st, A.OutputDecl):
            self.take("output", 0)
            for k, n in enumerate(st.names):
                if k:
                    self.take(",", 0)
                self.take(n.name)
        elif isinstance(st, A.AssertStmt):
            self.take("assert", 0)
            q = st.quantity
            if q.kind == "output":
                self.take("output")
            elif q.kind == "call":
                self.take(q.name)
                self.take("(", 0)
                self.take(q.arg.name, 0)
                self.take(")", 0)
            else:
                self.take(q.name)
            self.take(st.op)
            self.value(st.value)
        elif isinstance(st, A.Binding):
            self.take(st.name, 0)
            self.take("=")
            self.pipeline(st.pipeline, 1)
        elif isinstance(st, A.Pipeline):
            self.pipeline(st, 0)
        else:  # pragma: no cover
            raise AssertionError(f"nnc fmt: unknown statement {st!r}")
        return self.statement()


# ----------------------------------------------------------------------------------------------
# output

class _Out:
    def __init__(self):
        self.lines: list[str] = []

    def emit(self, text: str) -> None:
        self.lines.append(text.rstrip())

    def blank(self) -> None:
        if self.lines and self.lines[-1] != "":
            self.lines.append("")

    def comment_lines(self, comments: list[Comment], indent: int, sep: bool | None,
                      blanks: bool = True) -> None:
        """Own-line comments; ``sep`` forces (True) or forbids (False) a blank line before the
        first one, ``None`` keeps the user's; ``blanks=False`` (inside a statement) drops all."""
        for k, c in enumerate(comments):
            if blanks and (c.blank_before if k or sep is None else sep):
                self.blank()
            self.emit(" " * indent + c.text)


def _with_comment(code: str, comment: Comment) -> str:
    pad = max(COMMENT_COLUMN - 1 - len(code), 2)
    return code + " " * pad + comment.text


def _flat_width(pieces: list[Piece], indent: int) -> int:
    return indent + sum(len(p.text) + (p.space if k else 0) for k, p in enumerate(pieces))


def _segment_width(pieces: list[Piece], start: int) -> int:
    """Width of one pipeline stage from ``pieces[start]`` up to and including the next ``->``."""
    width = 0
    for k in range(start, len(pieces)):
        width += len(pieces[k].text) + (pieces[k].space if k > start else 0)
        if pieces[k].arrow:
            break
    return width


def _layout(pieces: list[Piece], indent: int, out: _Out, sep: bool | None) -> None:
    """Print one statement (or block header, or ``}``) starting on a new line at ``indent``.

    The first piece's own-line comments come first, at ``indent``; ``sep`` decides the blank line
    before the statement (see :meth:`_Out.comment_lines`)."""
    head = pieces[0]
    out.comment_lines(head.before, indent, sep)
    if head.before:
        sep = None
    if (head.blank_before if sep is None else sep):
        out.blank()
    cont = indent + CONTINUATION
    # NOTE: a pipeline too long for one line is broken after a `->` whenever the next stage (with
    # its own `->`) would pass MAX_WIDTH; segment widths come from the tokens alone.
    long = any(p.arrow for p in pieces) and _flat_width(pieces, indent) > MAX_WIDTH
    buf: str | None = None
    started = False
    for k, p in enumerate(pieces):
        if k and p.before:
            if buf is not None:
                out.emit(buf)
                buf = None
            out.comment_lines(p.before, cont, False, blanks=False)
        if (long and buf is not None and pieces[k - 1].arrow
                and len(buf) + p.space + _segment_width(pieces, k) > MAX_WIDTH):
            out.emit(buf)
            buf = None
        if buf is None:
            buf = " " * (cont if started else indent) + p.text
            started = True
        else:
            buf += " " * p.space + p.text
        if p.after:
            out.emit(_with_comment(buf, p.after[0]))
            buf = None
            out.comment_lines(p.after[1:], cont, False, blanks=False)
    if buf is not None:
        out.emit(buf)


# ----------------------------------------------------------------------------------------------
# blocks

class _Printer:
    def __init__(self, toks: list[Tok]):
        self.r = _Reader(toks)
        self.out = _Out()

    def header(self, words: list[str], indent: int, sep: bool | None) -> None:
        for k, w in enumerate(words):
            self.r.take(w, 0 if k == 0 else 1)
        self.r.take("{")
        _layout(self.r.statement(), indent, self.out, sep)

    def block_header(self, b: A.BlockDef, sep: bool | None) -> None:
        """``block NAME(c, stride = 1) {``: a default is written with spaces around ``=`` (it is a
        definition, as ``let`` is), unlike a keyword argument of a call."""
        self.r.take("block", 0)
        self.r.take(b.name)
        self.r.take("(", 0)
        for k, p in enumerate(b.params):
            if k:
                self.r.take(",", 0)
            self.r.take(p.name, 1 if k else 0)
            if p.default is not None:
                self.r.take("=")
                self.r.value(p.default)
        if b.params and self.r.peek() == ",":
            self.r.drop(",")
        self.r.take(")", 0)
        self.r.take("{")
        _layout(self.r.statement(), 0, self.out, sep)

    def close(self, indent: int, empty: bool) -> None:
        """``}``: the comments before it at the block's inner indentation, then the brace."""
        self.r.take("}", 0)
        (brace,) = self.r.statement()
        self.out.comment_lines(brace.before, indent + INDENT, False if empty else None)
        brace.before = []
        _layout([brace], indent, self.out, False)

    def body(self, stmts: list, indent: int) -> None:
        for k, st in enumerate(stmts):
            sep = False if k == 0 else None
            if isinstance(st, A.Repeat):
                self.r.take("repeat", 0)
                self.r.value(st.count)
                self.r.take("{")
                _layout(self.r.statement(), indent, self.out, sep)
                self.body(st.body, indent + INDENT)
                self.close(indent, not st.body)
            else:
                _layout(self.r.simple(st), indent, self.out, sep)

    def train(self, t: A.Train, sep: bool | None) -> None:
        self.header(["train"], 0, sep)
        width = max((len(e.key) for e in t.entries), default=0)
        for k, e in enumerate(t.entries):
            self.r.take(e.key, 0)
            self.r.take("=", width - len(e.key) + 1)
            self.r.value(e.value)
            _layout(self.r.statement(), INDENT, self.out, False if k == 0 else None)
        self.close(0, not t.entries)

    def file(self, f: A.File) -> None:
        prev = None
        for item in f.items:
            block = isinstance(item, (A.Model, A.BlockDef, A.Train))
            if prev is None:
                sep = False
            elif block or isinstance(prev, (A.Model, A.BlockDef, A.Train)):
                sep = True
            else:
                sep = None
            if isinstance(item, A.BlockDef):
                self.block_header(item, sep)
                self.body(item.body, INDENT)
                self.close(0, not item.body)
            elif isinstance(item, A.Model):
                self.header(["model", item.name], 0, sep)
                self.body(item.body, INDENT)
                self.close(0, not item.body)
            elif isinstance(item, A.Train):
                self.train(item, sep)
            else:
                _layout(self.r.simple(item), 0, self.out, sep)
            prev = item
        end = self.r.toks[self.r.i]
        assert end.text == "" and self.r.i == len(self.r.toks) - 1, "nnc fmt: tokens left over"
        self.out.comment_lines(self.r.carry + end.before, 0, False if prev is None else None)


def format_source(source: str, path: str | None = None) -> str:
    """Canonical text of an nnspec file. Raises NncError (from parse) on syntax errors."""
    text = source.replace("\r\n", "\n")
    if text.startswith("\ufeff"):
        text = text[1:]
    tree = parse(text, path)
    printer = _Printer(_lex(text))
    printer.file(tree)
    lines = printer.out.lines
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n" if lines else ""
