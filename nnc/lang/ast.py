"""The syntax tree of an nnspec file: what the user wrote, with a span on every node.

The formatter prints it back; the lowering pass (``lower.py``) turns it into the IR. Node class
names follow the grammar's rule names (``let_stmt`` -> :class:`LetStmt`, ``stage_call`` ->
:class:`Call`, ...).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Union

from ..errors import SourceSpan


class _Node:
    """What ``@dataclass`` would generate for ``__repr__`` and ``__eq__``, written once for every node
    class (generating them per class is most of the cost of importing this module, and every
    ``nnc check`` imports it)."""

    __slots__ = ()

    def __repr__(self) -> str:
        inner = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr)
        return f"{type(self).__qualname__}({inner})"

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        names = [f.name for f in fields(self) if f.compare]
        return tuple(getattr(self, n) for n in names) == tuple(getattr(other, n) for n in names)

    __hash__ = None  # as a dataclass with eq=True: mutable nodes are not hashable


# NOTE: each class has a docstring: without one, @dataclass computes a signature for it (inspect)
_node = dataclass(repr=False, eq=False)


@_node
class Num(_Node):
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
class Str(_Node):
    """A string literal: ``"relu"``."""

    value: str
    text: str  # with its quotes, as written
    span: SourceSpan


@_node
class Bool(_Node):
    """``true`` or ``false``."""

    value: bool
    span: SourceSpan


@_node
class Name(_Node):
    """A name: a constant, a binding or a bare word such as ``relu``."""

    name: str
    span: SourceSpan


@_node
class List(_Node):
    """``[a, b, ...]``."""

    items: list["Value"]
    span: SourceSpan


@_node
class KwArg(_Node):
    """``name=value`` in a call's arguments."""

    name: str
    name_span: SourceSpan
    value: "Value"
    span: SourceSpan


@_node
class Call(_Node):
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


@_node
class BinOp(_Node):
    """``left op right`` with ``op`` one of ``+ - * / // %``: a constant expression, evaluated by the
    lowering (a negative literal ``-2`` is a :class:`Num` of its own, not an expression)."""

    op: str
    left: "Value"
    right: "Value"
    span: SourceSpan


@_node
class Neg(_Node):
    """``-operand`` where the operand is not a plain number (``-width``, ``-(a + b)``)."""

    operand: "Value"
    span: SourceSpan


@_node
class Paren(_Node):
    """``(inner)`` as written: kept so that ``nnc fmt`` prints the user's parentheses."""

    inner: "Value"
    span: SourceSpan


Value = Union[Num, Str, Bool, Name, List, Call, BinOp, Neg, Paren]
EXPRESSIONS = (BinOp, Neg, Paren)


@_node
class LetStmt(_Node):
    """``let NAME = value``."""

    name: str
    name_span: SourceSpan
    value: Value
    span: SourceSpan


@_node
class InputDecl(_Node):
    """``input NAME: [DTYPE] [dims]``."""

    name: str
    name_span: SourceSpan
    dtype: Name | None
    dims: list[Value]
    span: SourceSpan


@_node
class OutputDecl(_Node):
    """``output a, b``."""

    names: list[Name]
    span: SourceSpan


@_node
class Pipeline(_Node):
    """``stage -> stage -> ...``."""

    stages: list[Call]
    span: SourceSpan


@_node
class Binding(_Node):
    """``NAME = pipeline``."""

    name: str
    name_span: SourceSpan
    pipeline: Pipeline
    span: SourceSpan


@_node
class Quantity(_Node):
    """What an ``assert`` measures: ``params``, ``output``, ``shape(h)``."""

    kind: str  # "name" (params, flops, ...), "output", or "call" (shape(h))
    name: str
    arg: Name | None
    span: SourceSpan


@_node
class AssertStmt(_Node):
    """``assert QUANTITY CMP value``."""

    quantity: Quantity
    op: str
    value: Value
    span: SourceSpan


@_node
class Repeat(_Node):
    """``repeat COUNT { statements }``."""

    count: Value
    body: list["Statement"]
    span: SourceSpan


Statement = Union[LetStmt, InputDecl, OutputDecl, AssertStmt, Repeat, Binding, Pipeline]


@_node
class Param(_Node):
    """A block parameter: ``c`` or ``stride = 1``."""

    name: str
    name_span: SourceSpan
    default: Value | None
    span: SourceSpan


@_node
class BlockDef(_Node):
    """``block NAME(params) { statements }``: a parametric sub-network, used as a stage."""

    name: str
    name_span: SourceSpan
    params: list[Param]
    body: list[Statement]
    span: SourceSpan


@_node
class Model(_Node):
    """``model NAME { statements }``."""

    name: str
    name_span: SourceSpan
    body: list[Statement]
    span: SourceSpan


@_node
class Entry(_Node):
    """``key = value`` in the train block."""

    key: str
    key_span: SourceSpan
    value: Value
    span: SourceSpan


@_node
class Train(_Node):
    """``train { entries }``."""

    entries: list[Entry]
    span: SourceSpan


@_node
class File(_Node):
    """A whole file: its top-level items and (for ``nnc fmt``) its comments."""

    items: list[LetStmt | BlockDef | Model | Train]
    comments: list[tuple[int, int, str]] = field(default_factory=list)  # (line, column, text)
