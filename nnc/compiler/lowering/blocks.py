"""Blocks: the file's ``block`` definitions, and the binding of a use's arguments.

A block is a parametric sub-network (language reference, "Blocks"). This module checks the
definitions (names, parameter lists) and binds the arguments of one use into the scope its body
is lowered in; :class:`~.model.ModelPass` expands the body there, as it expands ``repeat``.

- A parameter binds as a constant (the argument's value, evaluated in the caller's scope), or as
  a value of the caller's dataflow when the argument is the bare name of one (a skip connection).
- Defaults are constant expressions, evaluated at the use in the body's scope: the top-level
  constants and the parameters before them (``block b(c, mid = c // 4)``).
- The body sees the top-level constants, its parameters and what it binds; nothing of the caller's.
"""
from __future__ import annotations

from ...errors import did_you_mean
from ...lang import ast as A
from ...lang.types import REQUIRED, ArgErrors, Param, Signature, Type, show
from ...record import field, record
from ..builtin_names import describe, is_builtin_value
from ..ops import OPS
from .context import Context, Scope, Value, span_key

TYPE_CHECKING = False  # typing's constant, without importing typing (`nnc check` never does)
if TYPE_CHECKING:
    from typing import Any


class _Passed(Type):
    """A block argument: any value, taken as written (constants are evaluated by the binder)."""

    doc = "a value"

    def coerce(self, v: A.Value) -> A.Value:
        return v

    def render(self, value: Any) -> str:
        return show(value)


_PASSED = _Passed()


@record
class Block:
    """A checked block definition and the signature its uses are bound with."""

    node: A.BlockDef
    sig: Signature
    used: bool = False


@record
class Bound:
    """The arguments of one use: the body's scope and, for the IR, each parameter as passed."""

    scope: Scope
    args: dict[str, Any] = field(default_factory=dict)


def define_blocks(ctx: Context, items: list, top: Scope) -> None:
    """Check the file's block definitions into ``ctx.blocks`` (a bad one is reported here and left
    out, its name refused, so that its uses are not reported again)."""
    blocks = ctx.blocks
    for item in items:
        if not isinstance(item, A.BlockDef):
            continue
        name = item.name
        if name in OPS:
            ctx.err("E305", f"block `{name}` has the name of an op", item.name_span,
                    f"choose another name, e.g. `{name}_block`; block names share the namespace of ops")
            ctx.refused.add(name)
            continue
        if is_builtin_value(name):
            ctx.err("E314", f"block `{name}` has the name of a built-in value: {describe(name)}",
                    item.name_span, "choose another name")
            ctx.refused.add(name)
            continue
        if name in blocks:
            ctx.err("E304", f"block `{name}` is defined twice", item.name_span,
                    f"the first definition is at line {blocks[name].node.span.line}; rename one of them")
            continue
        if top.const(name) is not None or name in ctx.lets:
            ctx.err("E304", f"`{name}` is both a block and a constant", item.name_span,
                    "rename the block or the constant")
            ctx.refused.add(name)
            continue
        ok = True
        seen: dict[str, A.Param] = {}
        defaulted: A.Param | None = None
        for p in item.params:
            if p.name in seen:
                ctx.err("E315", f"block `{name}` has two parameters named `{p.name}`", p.name_span,
                        "give each parameter its own name")
                ok = False
            elif p.name == "name":
                ctx.err("E315", f"block `{name}` cannot have a parameter called `name`", p.name_span,
                        '`name="..."` on a use names the use (the prefix of its layers); choose another name')
                ok = False
            elif p.name in OPS:
                ctx.err("E305", f"parameter `{p.name}` of block `{name}` has the name of an op", p.name_span,
                        "choose another name; op names are reserved")
                ok = False
            elif p.default is None and defaulted is not None:
                ctx.err("E315", f"parameter `{p.name}` has no default but follows `{defaulted.name}`, which has one",
                        p.name_span, f"parameters with defaults come last: move `{p.name}` before "
                        f"`{defaulted.name}`, or give it a default")
                ok = False
            if p.default is not None and defaulted is None:
                defaulted = p
            seen[p.name] = p
        if not item.body:
            ctx.err("E317", f"block `{name}` has no statements", item.span,
                    "add the stages it stands for, e.g. `dense(units) -> relu`")
            ok = False
        if not ok:
            ctx.refused.add(name)
            continue
        params = [Param(p.name, _PASSED, p.default if p.default is not None else REQUIRED) for p in item.params]
        blocks[name] = Block(item, Signature(name, params, len(params)))


def bind_use(ctx: Context, block: Block, call: A.Call, caller: Scope, top: Scope) -> Bound | None:
    """The body's scope for one use (``call`` without its ``name=``), or None after reporting."""
    try:
        given = block.sig.bind(call, f"block `{block.node.name}`")
    except ArgErrors as es:
        ctx.arg_errors(es.errors, caller)
        return None
    scope = Scope(parent=top)
    bound = Bound(scope)
    ok = True
    for p in block.node.params:
        v = given[p.name]
        if isinstance(v, A.Name) and v is not p.default and caller.value(v.name) is not None \
                and caller.const(v.name) is None:
            value: Value = caller.value(v.name)
            scope.values[p.name] = value
            bound.args[p.name] = {"value": value.id}
            continue
        # NOTE: a default is evaluated where the body is: it sees the parameters before it
        value_ast = ctx.subst(v, scope if v is p.default else caller)
        if isinstance(value_ast, A.EXPRESSIONS):
            ok = False  # the expression reported its own error
        elif isinstance(value_ast, A.Name) and not _is_constant(ctx, value_ast):
            ok = False
            if (ctx.sink.path, span_key(v.span)) not in ctx.quiet:
                ctx.err("E303", f"unknown constant or value `{value_ast.name}`", v.span,
                        did_you_mean(value_ast.name, caller.all_names())
                        or "pass a number, a constant, or the name of a value bound before")
        scope.consts[p.name] = value_ast
        bound.args[p.name] = show(value_ast)
    return bound if ok else None


def _is_constant(ctx: Context, v: A.Name) -> bool:
    """A name left after substitution is a constant only as an op, a block or a built-in value
    (`relu`, `basic`, `same`)."""
    return v.name in OPS or v.name in ctx.blocks or is_builtin_value(v.name)


def describe_use(call: A.Call) -> str:
    """How a use is named in notes: ``basic(128, stride=2)``, as written."""
    return show(call) if call.args is not None else call.name
