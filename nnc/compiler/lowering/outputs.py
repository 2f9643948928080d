"""The outputs-and-assertions pass: after the model's statements, what its outputs are (its
``output`` statement, or the value of its last statement), its totals, and its ``assert`` statements.
"""
from __future__ import annotations

from ...errors import did_you_mean, fmt_shape
from ...lang import ast as A
from ...lang.types import show
from ..irtypes import Assertion, ModelIR, Output
from .context import Context, Scope, ir_span, numel
from .model import ModelPass

TYPE_CHECKING = False  # typing's constant, without importing typing (`nnc check` never does)
if TYPE_CHECKING:
    from typing import Any


class OutputsPass:
    """The outputs, totals and assertions of the model that :class:`ModelPass` lowered. Every piece
    of state is declared here."""

    def __init__(self, ctx: Context, model: ModelPass):
        self.ctx = ctx
        self.model = model  # the statements pass: its layers, its last value, its `output` and `assert`s
        self.outputs_known = True  # False when an error already reported hides what the outputs are
        self.totals_valid = True  # False when a layer failed: params/flops budgets are not checked

    def model_ir(self, m: A.Model, scope: Scope) -> ModelIR | None:
        """The model, or None when it has errors (``scope`` is the model block's scope)."""
        outputs = self.resolve_outputs(m, scope)
        nodes = self.model.nodes
        params = sum(n.params for n in nodes)
        state = sum(numel(w.shape) for n in nodes for w in n.weights if not w.trainable)
        flops = sum(n.flops for n in nodes)
        # NOTE: an assertion is evaluated in the scope it was written in (a `repeat` body's own values);
        # budgets are skipped while a layer failed to check, since the totals would be wrong
        self.totals_valid = not self.ctx.sink
        assertions = [a for a in (self.check_assert(s, sc, params, flops, outputs) for s, sc in self.model.asserts)
                      if a]
        if self.ctx.sink:
            return None
        return ModelIR(name=m.name, inputs=self.model.inputs, nodes=nodes, outputs=outputs, params=params,
                       state=state, flops=flops, assertions=assertions, blocks=self.model.block_uses,
                       span=ir_span(m.span))

    def resolve_outputs(self, m: A.Model, scope: Scope) -> list[Output]:
        """The model's outputs. ``self.outputs_known`` is False when an error already reported
        (a failed stage, an unknown name in `output`) hides what they are: what depends on the
        outputs (``assert output``) is then not checked, rather than reported as a second error."""
        outs: list[Output] = []
        last = self.model.prev  # the value of the model's last statement
        if self.model.outputs_decl is not None:
            seen = set()
            for n in self.model.outputs_decl.names:
                v = scope.value(n.name)
                if v is None:
                    self.outputs_known = False
                    if n.name in self.ctx.refused:
                        continue  # `relu = ...` was reported where it was bound
                    values = [x for x in scope.all_names() if scope.value(x) is not None]
                    self.ctx.err("E303", f"unknown value `{n.name}` in `output`", n.span,
                                 did_you_mean(n.name, values) or "outputs name values bound with `NAME = ...`")
                elif n.name in seen:
                    self.ctx.err("E304", f"`{n.name}` is listed twice in `output`", n.span, None)
                elif v.shape is not None:
                    outs.append(Output(name=n.name, source=v.id, shape=list(v.shape), dtype=v.dtype))
                else:
                    self.outputs_known = False
                seen.add(n.name)
        elif last is not None and last.shape is not None:
            name = self.model.last_binding or "output"
            outs.append(Output(name=name, source=last.id, shape=list(last.shape), dtype=last.dtype))
        elif last is not None or self.ctx.sink:
            self.outputs_known = False  # the last statement failed (or nothing could be built)
        return outs

    def check_assert(self, st: A.AssertStmt, scope: Scope, params: int, flops: int,
                     outputs: list[Output]) -> Assertion | None:
        q = st.quantity
        value = self.ctx.subst(st.value, scope)
        if q.kind == "name":
            if q.name not in ("params", "flops"):
                self.ctx.err("E502", f"unknown quantity `{q.name}` in `assert`", q.span,
                             did_you_mean(q.name, ["params", "flops"]) or "use params, flops, output or shape(NAME)")
                return None
            if not isinstance(value, A.Num):
                self.ctx.err("E401", f"`assert {q.name}` compares with a number, got `{show(value)}`", value.span,
                             f"e.g. assert {q.name} <= 100_000")
                return None
            if not self.totals_valid:
                return None  # totals are meaningless while some layer failed to check
            actual = params if q.name == "params" else flops
            expected: Any = value.value
            label = f"{q.name}"
        else:
            if q.kind == "call":
                if q.name != "shape":
                    self.ctx.err("E502", f"unknown quantity `{q.name}(...)` in `assert`", q.span,
                                 did_you_mean(q.name, ["shape"]) or "use shape(NAME)")
                    return None
                v = scope.value(q.arg.name)
                if v is None and q.arg.name in self.ctx.refused:
                    return None  # `relu = ...` was reported where it was bound
                if v is None:
                    values = [x for x in scope.all_names() if scope.value(x) is not None]
                    self.ctx.err("E303", f"unknown value `{q.arg.name}` in `assert shape(...)`", q.arg.span,
                                 did_you_mean(q.arg.name, values) or "bind it first: `NAME = ...`")
                    return None
                actual = list(v.shape) if v.shape is not None else None
                label = f"shape({q.arg.name})"
            else:
                if not self.outputs_known:
                    return None  # the outputs are unknown after an error already reported
                if len(outputs) != 1:
                    self.ctx.err("E502", "`assert output` needs a model with exactly one output", q.span,
                                 "use `assert shape(NAME) == [...]` for each output")
                    return None
                actual = outputs[0].shape
                label = "output"
            if st.op != "==":
                self.ctx.err("E401", f"shapes can only be compared with `==`, not `{st.op}`", st.span, None)
                return None
            if not (isinstance(value, A.List) and all(isinstance(x, A.Num) and x.is_int for x in value.items)):
                self.ctx.err("E401", f"`assert {label}` compares with a shape such as [10], got `{show(value)}`",
                             value.span, None)
                return None
            expected = [x.value for x in value.items]
        if actual is None:
            return None
        ok = {"<=": actual <= expected, "<": actual < expected, "==": actual == expected,
              ">=": actual >= expected, ">": actual > expected}[st.op] if not isinstance(actual, list) \
            else actual == expected
        if not ok:
            if isinstance(actual, list):
                msg = f"assertion failed: {label} is {fmt_shape(actual)}, not {fmt_shape(expected)}"
                hint = None
            else:
                msg = (f"assertion failed: {label} {st.op} {show(value)} "
                       f"(the model has {actual:,} {'parameters' if q.name == 'params' else 'FLOPs'})")
                hint = "see `nnc summary` for the largest layers"
            self.ctx.err("E501", msg, st.span, hint)
        return Assertion(quantity=label, op=st.op, expected=expected, actual=actual, span=ir_span(st.span))
