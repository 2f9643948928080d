"""The syntax tree of an nnspec file: what the user wrote, with a span on every node.

The formatter prints it back; the lowering pass (``lower.py``) turns it into the IR. Node class
names follow the grammar's rule names (``let_stmt`` -> :class:`LetStmt`, ``stage_call`` ->
:class:`Call`, ...).
"""
from __future__ import annotations

from ..errors import SourceSpan
from ..record import field, record


_node = record


@_node
class Num:
    """A number: ``3``, ``0.1``, ``1e-3`` (or one computed from a constant expression)."""

    value: int | float
    text: str
    span: SourceSpan
    # the expression this number was computed from (``width // 2``), None for a literal as written
    source: str | None = None

    @property
    def is_int(self) -> bool:
        return isinstance(self.value, int)


@_node
class Str:
    """A string literal: ``"relu"``."""

    value: str
    text: str  # with its quotes, as written
    span: SourceSpan


@_node
class Bool:
    """``true`` or ``false``."""

    value: bool
    span: SourceSpan


@_node
class Name:
    """A name: a constant, a binding or a bare word such as ``relu``."""

    name: str
    span: SourceSpan


@_node
class List:
    """``[a, b, ...]``."""

    items: list["Value"]
    span: SourceSpan


@_node
class KwArg:
    """``name=value`` in a call's arguments."""

    name: str
    name_span: SourceSpan
    value: "Value"
    span: SourceSpan


@_node
class Call:
    """``name(args)`` as a value or a pipeline stage; ``args is None`` for a bare stage name."""

    name: str
    name_span: SourceSpan
    args: list[Value | KwArg] | None
    span: SourceSpan

    @property
    def positional(self) -> list["Value"]:
        return [a for a in self.args or [] if not isinstance(a, KwArg)]

    @property
    def keywords(self) -> list[KwArg]:
        return [a for a in self.args or [] if isinstance(a, KwArg)]


@_node
class BinOp:
    """``left op right`` with ``op`` one of ``+ - * / // %``: a constant expression, evaluated by the
    lowering (a negative literal ``-2`` is a :class:`Num` of its own, not an expression)."""

    op: str
    left: "Value"
    right: "Value"
    span: SourceSpan


@_node
class Neg:
    """``-operand`` where the operand is not a plain number (``-width``, ``-(a + b)``)."""

    operand: "Value"
    span: SourceSpan


@_node
class Paren:
    """``(inner)`` as written: kept so that ``nnc fmt`` prints the user's parentheses."""

    inner: "Value"
    span: SourceSpan


Value = Num | Str | Bool | Name | List | Call | BinOp | Neg | Paren
EXPRESSIONS = (BinOp, Neg, Paren)


@_node
class LetStmt:
    """``let NAME = value``."""

    name: str
    name_span: SourceSpan
    value: Value
    span: SourceSpan


@_node
class InputDecl:
    """``input NAME: [DTYPE] [dims]``."""

    name: str
    name_span: SourceSpan
    dtype: Name | None
    dims: list[Value]
    span: SourceSpan


@_node
class OutputDecl:
    """``output a, b``."""

    names: list[Name]
    span: SourceSpan


@_node
class Pipeline:
    """``stage -> stage -> ...``."""

    stages: list[Call]
    span: SourceSpan


@_node
class Binding:
    """``NAME = pipeline``."""

    name: str
    name_span: SourceSpan
    pipeline: Pipeline
    span: SourceSpan


@_node
class Quantity:
    """What an ``assert`` measures: ``params``, ``output``, ``shape(h)``."""

    kind: str  # "name" (params, flops, ...), "output", or "call" (shape(h))
    name: str
    arg: Name | None
    span: SourceSpan


@_node
class AssertStmt:
    """``assert QUANTITY CMP value``."""

    quantity: Quantity
    op: str
    value: Value
    span: SourceSpan


@_node
class Repeat:
    """``repeat COUNT { statements }``."""

    count: Value
    body: list["Statement"]
    span: SourceSpan


Statement = LetStmt | InputDecl | OutputDecl | AssertStmt | Repeat | Binding | Pipeline


@_node
class Param:
    """A block parameter: ``c`` or ``stride = 1``."""

    name: str
    name_span: SourceSpan
    default: Value | None
    span: SourceSpan


@_node
class BlockDef:
    """``block NAME(params) { statements }``: a parametric sub-network, used as a stage."""

    name: str
    name_span: SourceSpan
    params: list[Param]
    body: list[Statement]
    span: SourceSpan


@_node
class Model:
    """``model NAME { statements }``."""

    name: str
    name_span: SourceSpan
    body: list[Statement]
    span: SourceSpan


@_node
class Entry:
    """``key = value`` in the train block."""

    key: str
    key_span: SourceSpan
    value: Value
    span: SourceSpan


@_node
class Train:
    """``train { entries }``."""

    entries: list[Entry]
    span: SourceSpan


@_node
class File:
    """A whole file: its top-level items and (for ``nnc fmt``) its comments."""

    items: list[LetStmt | BlockDef | Model | Train]
    comments: list[tuple[int, int, str]] = field(default_factory=list)  # (line, column, text)
