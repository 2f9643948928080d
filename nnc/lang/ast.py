"""The syntax tree of an nnspec file: what the user wrote, with a span on every node.

The formatter prints it back; the lowering pass (``lower.py``) turns it into the IR. Node class
names follow the grammar's rule names (``let_stmt`` -> :class:`LetStmt`, ``stage_call`` ->
:class:`Call`, ...).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from ..errors import SourceSpan


@dataclass
class Num:
    value: int | float
    text: str
    span: SourceSpan
    # the expression this number was computed from (``width // 2``), None for a literal as written
    source: str | None = None

    @property
    def is_int(self) -> bool:
        return isinstance(self.value, int)


@dataclass
class Str:
    value: str
    text: str  # with its quotes, as written
    span: SourceSpan


@dataclass
class Bool:
    value: bool
    span: SourceSpan


@dataclass
class Name:
    name: str
    span: SourceSpan


@dataclass
class List:
    items: list["Value"]
    span: SourceSpan


@dataclass
class KwArg:
    name: str
    name_span: SourceSpan
    value: "Value"
    span: SourceSpan


@dataclass
class Call:
    """``name(args)`` as a value or a pipeline stage; ``args is None`` for a bare stage name."""

    name: str
    name_span: SourceSpan
    args: list[Union["Value", KwArg]] | None
    span: SourceSpan

    @property
    def positional(self) -> list["Value"]:
        return [a for a in self.args or [] if not isinstance(a, KwArg)]

    @property
    def keywords(self) -> list[KwArg]:
        return [a for a in self.args or [] if isinstance(a, KwArg)]


@dataclass
class BinOp:
    """``left op right`` with ``op`` one of ``+ - * / // %``: a constant expression, evaluated by the
    lowering (a negative literal ``-2`` is a :class:`Num` of its own, not an expression)."""

    op: str
    left: "Value"
    right: "Value"
    span: SourceSpan


@dataclass
class Neg:
    """``-operand`` where the operand is not a plain number (``-width``, ``-(a + b)``)."""

    operand: "Value"
    span: SourceSpan


@dataclass
class Paren:
    """``(inner)`` as written: kept so that ``nnc fmt`` prints the user's parentheses."""

    inner: "Value"
    span: SourceSpan


Value = Union[Num, Str, Bool, Name, List, Call, BinOp, Neg, Paren]
EXPRESSIONS = (BinOp, Neg, Paren)


@dataclass
class LetStmt:
    name: str
    name_span: SourceSpan
    value: Value
    span: SourceSpan


@dataclass
class InputDecl:
    name: str
    name_span: SourceSpan
    dtype: Name | None
    dims: list[Value]
    span: SourceSpan


@dataclass
class OutputDecl:
    names: list[Name]
    span: SourceSpan


@dataclass
class Pipeline:
    stages: list[Call]
    span: SourceSpan


@dataclass
class Binding:
    name: str
    name_span: SourceSpan
    pipeline: Pipeline
    span: SourceSpan


@dataclass
class Quantity:
    kind: str  # "name" (params, flops, ...), "output", or "call" (shape(h))
    name: str
    arg: Name | None
    span: SourceSpan


@dataclass
class AssertStmt:
    quantity: Quantity
    op: str
    value: Value
    span: SourceSpan


@dataclass
class Repeat:
    count: Value
    body: list["Statement"]
    span: SourceSpan


Statement = Union[LetStmt, InputDecl, OutputDecl, AssertStmt, Repeat, Binding, Pipeline]


@dataclass
class Param:
    """A block parameter: ``c`` or ``stride = 1``."""

    name: str
    name_span: SourceSpan
    default: Value | None
    span: SourceSpan


@dataclass
class BlockDef:
    """``block NAME(params) { statements }``: a parametric sub-network, used as a stage."""

    name: str
    name_span: SourceSpan
    params: list[Param]
    body: list[Statement]
    span: SourceSpan


@dataclass
class Model:
    name: str
    name_span: SourceSpan
    body: list[Statement]
    span: SourceSpan


@dataclass
class Entry:
    key: str
    key_span: SourceSpan
    value: Value
    span: SourceSpan


@dataclass
class Train:
    entries: list[Entry]
    span: SourceSpan


@dataclass
class File:
    items: list[LetStmt | BlockDef | Model | Train]
    comments: list[tuple[int, int, str]] = field(default_factory=list)  # (line, column, text)
