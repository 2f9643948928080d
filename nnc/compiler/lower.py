"""Syntax tree -> IR: ``let`` constants, ``repeat`` expansion, dataflow resolution, layer naming,
argument validation, shape inference, assertions and the train block.

The passes collect every diagnostic in the file and raise once (:class:`DiagnosticSink`). A stage
that fails poisons its value (shape ``None``) so that what depends on it is not reported again.
"""
from __future__ import annotations

import copy
import dataclasses
import gc
from dataclasses import dataclass, field
from typing import Any

from ..errors import NO_SPAN, DiagnosticSink, NncError, SourceSpan, did_you_mean, fmt_shape
from ..vocab import BUILTIN_DATASETS, CLASSIFICATION_LOSSES, default_metrics
from ..spec import ast as A
from .builtin_names import builtin_values, describe, example, is_builtin_value
from .irtypes import Assertion, DataSource, Input, ModelIR, Node, Output, Program, TrainSpec
from .ops import OPS, ShapeError
from .parse import parse, parse_value
from .trainspec import TRAIN_KEYS, misplaced_key_hint
from ..spec.types import REQUIRED, ArgError, ArgErrors, Int, show

MAX_NODES = 100_000


def _span(s: SourceSpan | None) -> SourceSpan:
    return s or NO_SPAN


@dataclass
class Value:
    """A named or implicit value in the dataflow: a node's output or a model input."""

    id: str
    shape: tuple[int, ...] | None   # None: poisoned by an earlier error
    dtype: str
    span: SourceSpan


@dataclass
class Scope:
    """Names visible in a block: constants and values. ``repeat`` bodies get a child per pass."""

    parent: "Scope | None" = None
    consts: dict[str, A.Value] = field(default_factory=dict)
    values: dict[str, Value] = field(default_factory=dict)
    # constants whose definition was reported (refused, or a value naming nothing): their uses are
    # consequences of that error and are not reported again
    failed: set[str] = field(default_factory=set)

    def _lookup(self, table: str, name: str):
        s: Scope | None = self
        while s is not None:
            found = getattr(s, table).get(name)
            if found is not None:
                return found
            s = s.parent
        return None

    def const(self, name: str) -> A.Value | None:
        return self._lookup("consts", name)

    def value(self, name: str) -> Value | None:
        return self._lookup("values", name)

    def const_failed(self, name: str) -> bool:
        """Whether the constant ``name`` seen from here is one whose definition was an error."""
        s: Scope | None = self
        while s is not None:
            if name in s.failed:
                return True
            if name in s.consts:
                return False
            s = s.parent
        return False

    def all_names(self) -> list[str]:
        out: list[str] = []
        s: Scope | None = self
        while s is not None:
            out += list(s.consts) + list(s.values)
            s = s.parent
        return out


def _respan(v: A.Value, span: SourceSpan) -> A.Value:
    """A constant's value as seen at its use site (errors point where it is used)."""
    v = copy.deepcopy(v)
    if hasattr(v, "span"):
        v.span = span
    if isinstance(v, A.Call):
        v.name_span = span
    return v


class Lowerer:
    """One use: ``Lowerer(path, overrides).lower(file, source)``. Every piece of state is declared here."""

    def __init__(self, path: str | None, overrides: dict[str, A.Value] | None = None):
        # diagnostics and the file
        self.sink = DiagnosticSink(path)  # every error and warning of the file, raised once at the end
        self.path = path  # the spec's path; ``sink.path`` is switched to `<--set KEY>` while a --set value is read
        self.overrides: dict[str, A.Value] = dict(overrides or {})  # --set values not yet used, by key
        self.warnings: list = []  # the sink's warnings, set when the file lowers without errors
        self.lets: dict[str, list[A.LetStmt]] = {}  # every `let` of the file by name, for "defined later"
        # what is not reported twice
        self.unresolved: dict[tuple, str] = {}  # spans of names that were not constants -> the name
        # (path, span) of places whose errors would only repeat one already reported: uses of a
        # constant whose definition failed, and the bad names inside that definition
        self.quiet: set[tuple] = set()
        self.refused: set[str] = set()  # value names refused (E305): their uses are not reported again
        # the model's dataflow, in source order
        self.model_scope: Scope | None = None  # the model block's scope (inputs and `output` live there)
        self.inputs: list[Input] = []  # the declared inputs that checked
        self.declared: list[str] = []  # every input's name, including inputs whose declaration failed
        self.nodes: list[Node] = []  # the layers, in source order (repeat bodies expanded)
        self.node_ids: dict[str, SourceSpan] = {}  # layer name -> where it was given, for E308
        self.counters: dict[str, int] = {}  # op -> unnamed layers so far (the k of <op>_<k>)
        self.repeat_locals: set[str] = set()  # names bound in a `repeat` body, for better hints
        self.prev: Value | None = None  # the value of the last statement: the next stage's implicit source
        self.last_binding: str | None = None  # the name the last statement bound (the default output's name)
        # outputs and assertions
        self.outputs_decl: A.OutputDecl | None = None  # the model's `output` statement, if any
        self.asserts: list[tuple[A.AssertStmt, Scope]] = []  # each `assert` with the scope it was written in
        self.outputs_known = True  # False when an error already reported hides what the outputs are
        self.totals_valid = True  # False when a layer failed: params/flops budgets are not checked

    # ------------------------------------------------------------------------------------------
    # diagnostics helpers

    def err(self, code: str, message: str, span: SourceSpan | None, hint: str | None = None) -> None:
        if (self.sink.path, _key(span)) in self.quiet:
            return  # a consequence of an error already reported at the definition of a constant
        self.sink.error(code, message, span, hint)

    def warn(self, code: str, message: str, span: SourceSpan | None, hint: str | None = None) -> None:
        self.sink.warning(code, message, span, hint)

    def hush(self, span: SourceSpan | None) -> None:
        self.quiet.add((self.sink.path, _key(span)))

    def arg_errors(self, errors: list[ArgError], scope: Scope) -> None:
        for e in errors:
            name = self.unresolved.get(_key(e.span))
            if name is not None and name not in scope.all_names() and (is_builtin_value(name) or name in OPS):
                # a built-in word given where it means nothing (`maxpool2d(2, padding=same)`): say what
                # the word is; hinting `let same = ...` would change what every `padding=same` means
                where = f"of {e.param}" if e.param else "here"
                if name in OPS:
                    hint = f"`{name}` is an op; it goes in a pipeline (`... -> {name}`), not a value {where}"
                else:
                    hint = f"`{name}` is {describe(name)}, not a value {where}"
                if e.hint and e.code != "E401":
                    hint += f"; {e.hint}"
                self.err(e.code, e.message.replace(f"got a name `{name}`", f"got `{name}`"), e.span, hint)
            elif e.code == "E401" and name is not None and "got a name" in e.message and e.hint is None:
                consts = [n for n in scope.all_names() if scope.const(n) is not None]
                self.err("E303", f"unknown constant `{name}`", e.span,
                         did_you_mean(name, consts) or "define it first with `let " + name + " = ...`")
            else:
                self.err(e.code, e.message, e.span, e.hint)

    # ------------------------------------------------------------------------------------------
    # constants

    def subst(self, v: A.Value, scope: Scope) -> A.Value:
        """Replace names of constants by their values, recursively."""
        if isinstance(v, A.Name):
            if scope.const_failed(v.name):
                self.hush(v.span)
            c = scope.const(v.name)
            if c is not None:
                return _respan(c, v.span)
            self.unresolved[_key(v.span)] = v.name
            return v
        if isinstance(v, A.List):
            return A.List([self.subst(x, scope) for x in v.items], v.span)
        if isinstance(v, A.Call) and v.args is not None:
            args = [dataclasses.replace(a, value=self.subst(a.value, scope)) if isinstance(a, A.KwArg)
                    else self.subst(a, scope) for a in v.args]
            return A.Call(v.name, v.name_span, args, v.span)
        return v

    def define_const(self, stmt: A.LetStmt, scope: Scope) -> None:
        if stmt.name in OPS:
            self.err("E305", f"constant `{stmt.name}` has the name of an op", stmt.name_span,
                     "choose another name; op names are reserved")
            scope.failed.add(stmt.name)
            return
        if is_builtin_value(stmt.name):
            self.err("E314", f"constant `{stmt.name}` has the name of a built-in value: {describe(stmt.name)}",
                     stmt.name_span, f"choose another name; a constant `{stmt.name}` would change what "
                     f"`{example(stmt.name)}` means")
            scope.failed.add(stmt.name)
            return
        if stmt.name in scope.consts or scope.value(stmt.name) is not None:
            self.err("E304", f"`{stmt.name}` is already defined", stmt.name_span, "choose another name")
            return
        override = self.overrides.pop(stmt.name, None) if scope.parent is None else None
        if override is not None:
            self.sink.path = f"<--set {stmt.name}>"  # the value's positions are in the --set text
        value = self.subst(override if override is not None else stmt.value, scope)
        ok = self.check_const_names(stmt, value, scope)
        self.sink.path = self.path
        scope.consts[stmt.name] = value
        if not ok:
            scope.failed.add(stmt.name)

    def check_const_names(self, stmt: A.LetStmt, value: A.Value, scope: Scope) -> bool:
        """Every name left in a constant's value (after substituting the constants defined before it)
        must be an op or a built-in value; anything else is reported here, at the definition, not
        where (or whether) the constant is used."""
        ok = True
        for n in _names(value):
            if n.name in OPS or is_builtin_value(n.name):
                continue
            ok = False
            if (self.sink.path, _key(n.span)) in self.quiet:
                continue  # a constant whose own definition was reported
            later = [s for s in self.lets.get(n.name, []) if (s.span.line, s.span.column) > (stmt.span.line,
                                                                                            stmt.span.column)]
            if n.name == stmt.name:
                self.err("E303", f"constant `{stmt.name}` is defined in terms of itself", n.span,
                         "give it a value: a number, a string, a list, or a constant defined before it")
            elif later and stmt.name in {m.name for m in _names(later[0].value)}:
                self.err("E303", f"constants `{stmt.name}` and `{n.name}` are defined in terms of each other",
                         n.span, f"give one of them a value of its own (`let {n.name}` is at line "
                         f"{later[0].span.line})")
            elif later:
                self.err("E303", f"constant `{n.name}` is used before it is defined (at line {later[0].span.line})",
                         n.span, f"move `let {n.name} = ...` above this line")
            elif scope.value(n.name) is not None:
                self.err("E303", f"`{n.name}` is a value of the model, not a constant", n.span,
                         "a `let` holds a number, a string, a list, or the name of an op or a built-in value; "
                         f"use the value itself in a pipeline: `{n.name} -> ...`")
            else:
                consts = [c for c in scope.all_names() if scope.const(c) is not None]
                others = [c for c in self.lets if c not in consts and c != stmt.name]  # a typo of one defined later
                self.err("E303", f"unknown constant `{n.name}` in `let {stmt.name}`", n.span,
                         did_you_mean(n.name, consts) or did_you_mean(n.name, others)
                         or did_you_mean(n.name, list(OPS) + list(builtin_values()))
                         or "a constant can use numbers, strings, lists, ops, built-in values and the "
                         "constants defined before it")
            self.hush(n.span)
        return ok

    def coerce(self, type_, v: A.Value, scope: Scope, what: str = ""):
        param = {"input dimension": "an input dimension", "repeat count": "a repeat count"}.get(what, what)
        try:
            return type_.coerce(self.subst(v, scope))
        except ArgError as e:
            if what:
                e.message = f"{what}: {e.message}"
            e.param = e.param or param or None
            self.arg_errors([e], scope)
        except ArgErrors as es:
            for e in es.errors:
                e.param = e.param or param or None
            self.arg_errors(es.errors, scope)
        return None

    # ------------------------------------------------------------------------------------------
    # file

    def lower(self, file: A.File, source: str | None) -> Program:
        """The program (``Program.to_dict()`` is the plain dict that :class:`ir.Program` validates)."""
        top = Scope()
        for let in _lets(file.items):
            self.lets.setdefault(let.name, []).append(let)
        models = [i for i in file.items if isinstance(i, A.Model)]
        trains = [i for i in file.items if isinstance(i, A.Train)]
        for item in file.items:
            if isinstance(item, A.LetStmt):
                self.define_const(item, top)
        for name, value in list(self.overrides.items()):
            if name not in TRAIN_KEYS:
                given = {e.key: e.value for e in (trains[0].entries if trains else [])}
                given.update({k: v for k, v in self.overrides.items() if k in TRAIN_KEYS})
                self.err("E307", f"cannot override `{name}`: there is no train key or top-level `let` constant `{name}`",
                         None, misplaced_key_hint(name, value, given, top.const, via_set=True)
                         or did_you_mean(name, list(TRAIN_KEYS) + list(top.consts)))
                self.overrides.pop(name)
        if not models:
            self.err("E110", "the file has no `model` block", SourceSpan(1, 1, 1, 2),
                     "add one: `model NAME { input x: [F] ... }`")
        for extra in models[1:]:
            self.err("E111", "a file holds exactly one `model` block", extra.name_span,
                     f"move `{extra.name}` into a file of its own")
        for extra in trains[1:]:
            self.err("E112", "a file holds at most one `train` block", extra.span,
                     "merge the two `train` blocks")
        model = self.lower_model(models[0], top) if models else None
        train = self.lower_train(trains[0] if trains else None, top, model)
        self.sink.raise_if_any()
        self.warnings = self.sink.warnings
        assert model is not None
        consts = {name: show(v) for name, v in top.consts.items()}
        return Program(path=self.path, source=source, constants=consts, model=model, train=train,
                       seed=train.seed if train else 0)

    # ------------------------------------------------------------------------------------------
    # model

    def lower_model(self, m: A.Model, top: Scope) -> ModelIR | None:
        scope = Scope(parent=top)
        self.model_scope = scope
        self.statements(m.body, scope)
        if not self.nodes and self.prev is None and not self.sink:
            self.err("E114", f"model `{m.name}` has no layers", m.name_span,
                     "add stages after the input, e.g. `dense(10) -> softmax`")
        outputs = self.resolve_outputs(m, scope)
        params = sum(n.params for n in self.nodes)
        state = sum(_numel(w.shape) for n in self.nodes for w in n.weights if not w.trainable)
        flops = sum(n.flops for n in self.nodes)
        # NOTE: an assertion is evaluated in the scope it was written in (a `repeat` body's own values);
        # budgets are skipped while a layer failed to check, since the totals would be wrong
        self.totals_valid = not self.sink
        assertions = [a for a in (self.check_assert(s, sc, params, flops, outputs) for s, sc in self.asserts) if a]
        if self.sink:
            return None
        return ModelIR(name=m.name, inputs=self.inputs, nodes=self.nodes, outputs=outputs, params=params,
                       state=state, flops=flops, assertions=assertions, span=_span(m.span))

    def statements(self, body: list, scope: Scope) -> None:
        for st in body:
            if len(self.nodes) > MAX_NODES:
                self.err("E402", f"the model expands to more than {MAX_NODES:,} layers", st.span,
                         "use a smaller `repeat` count")
                return
            if isinstance(st, A.LetStmt):
                self.define_const(st, scope)
            elif isinstance(st, A.InputDecl):
                self.input_decl(st, scope)
            elif isinstance(st, A.OutputDecl):
                if self.outputs_decl is not None:
                    self.err("E115", "`output` is declared twice", st.span, "list every output in one `output` statement")
                elif scope is not self.model_scope:
                    self.err("E115", "`output` cannot be declared inside `repeat`", st.span,
                             "declare it after the `repeat` block")
                else:
                    self.outputs_decl = st
            elif isinstance(st, A.AssertStmt):
                self.asserts.append((st, scope))
            elif isinstance(st, A.Repeat):
                self.repeat(st, scope)
            elif isinstance(st, A.Binding):
                value = self.pipeline(st.pipeline, scope)
                if self.bindable(st.name, st.name_span, scope):
                    scope.values[st.name] = value
                self.last_binding = st.name
                self.prev = value
            elif isinstance(st, A.Pipeline):
                self.prev = self.pipeline(st, scope)
                self.last_binding = None

    def bindable(self, name: str, span: SourceSpan, scope: Scope) -> bool:
        if name in OPS:
            self.err("E305", f"`{name}` is the name of an op and cannot name a value", span,
                     f"choose another name, e.g. `{name}_out`")
            self.refused.add(name)
            return False
        if scope.value(name) is not None or scope.const(name) is not None:
            self.err("E304", f"`{name}` is already bound", span, "each name is bound once; choose another name")
            return False
        return True

    def input_decl(self, st: A.InputDecl, scope: Scope) -> None:
        dtype, dtype_ok = "float32", True
        if st.dtype is not None:
            if st.dtype.name in ("float32", "int64"):
                dtype = st.dtype.name
            else:
                dtype_ok = False
                self.err("E405", f"unknown input dtype `{st.dtype.name}`", st.dtype.span,
                         did_you_mean(st.dtype.name, ["float32", "int64"]) or "use `float32` or `int64`")
        dims = [self.coerce(Int(min=1), d, scope, "input dimension") for d in st.dims]
        if scope is not self.model_scope:
            self.err("E116", "inputs cannot be declared inside `repeat`", st.span, "declare inputs at the top of the model")
            return
        ok = self.bindable(st.name, st.name_span, scope)
        if ok:
            self.declared.append(st.name)
        shape = tuple(dims) if all(d is not None for d in dims) and dtype_ok else None
        if ok:
            scope.values[st.name] = Value(st.name, shape, dtype, st.span)
        if shape is not None:
            self.inputs.append(Input(name=st.name, shape=list(shape), dtype=dtype, span=_span(st.span)))

    def repeat(self, st: A.Repeat, scope: Scope) -> None:
        n = self.coerce(Int(min=1), st.count, scope, "repeat count")
        if n is None:
            return
        if n * max(1, _count_stages(st.body)) > MAX_NODES:
            self.err("E402", f"`repeat {show(st.count)}` expands to more than {MAX_NODES:,} layers", st.count.span,
                     "use a smaller count")
            return
        for _ in range(n):
            before = len(self.sink.errors)
            body = Scope(parent=scope)
            self.statements(st.body, body)
            self.repeat_locals.update(body.values)
            if len(self.sink.errors) > before:
                break  # report a body's errors once, not once per repetition
        if self.last_binding is not None and scope.value(self.last_binding) is None:
            self.last_binding = None  # a name local to the body does not name the model's output

    # ------------------------------------------------------------------------------------------
    # pipelines

    def implicit_source(self, stage: A.Call, scope: Scope) -> Value | None:
        if self.prev is not None:
            return self.prev
        declared = self.declared
        if len(declared) == 1:
            return self.model_scope.values.get(declared[0])  # None (poisoned) if its declaration failed
        if not declared:
            self.err("E113", "the model has no input before its first layer", stage.span,
                     "declare one first, e.g. `input x: [4]`")
            return None
        self.err("E306", f"`{stage.name}` could take any of the inputs "
                 + ", ".join(f"`{d}`" for d in declared), stage.span,
                 f"name its source: `{declared[0]} -> {show(stage)}`")
        return None

    def pipeline(self, pipe: A.Pipeline, scope: Scope) -> Value:
        """The value a pipeline computes; a poisoned value (shape None) after an error."""
        stages = list(pipe.stages)
        first = stages[0]
        current: Value | None
        if first.args is None and scope.value(first.name) is not None and first.name not in OPS:
            current = scope.value(first.name)
            stages = stages[1:]
        elif first.name in OPS and OPS[first.name].merge:
            current = self.merge(first, scope)
            stages = stages[1:]
        else:
            current = self.implicit_source(first, scope) if self._is_op_stage(first, scope) else None
        poisoned = current is None or current.shape is None
        for st in stages:
            if len(self.nodes) > MAX_NODES:
                self.err("E402", f"the model expands to more than {MAX_NODES:,} layers", st.span,
                         "split the model, or use fewer stages")
                return _poison(pipe.span)
            st = self.resolve_stage_const(st, scope)
            if st.name not in OPS:
                if scope.value(st.name) is not None:
                    self.err("E312", f"`{st.name}` is a value, not an op; only the first stage may name a value",
                             st.span, f"start a new statement: `{st.name} -> ...`")
                else:
                    self.unknown_op(st, scope)
                poisoned = True
                continue
            if OPS[st.name].merge:
                self.err("E313", f"`{st.name}` names all its inputs and must start its pipeline", st.span,
                         f"write `{st.name}(a, b) -> ...` as a statement of its own")
                poisoned = True
                continue
            current = self.apply(st, None if poisoned else [current], scope)
            poisoned = poisoned or current.shape is None
        return _poison(pipe.span) if poisoned or current is None else current

    def _is_op_stage(self, st: A.Call, scope: Scope) -> bool:
        return self.resolve_stage_const(st, scope).name in OPS

    def resolve_stage_const(self, st: A.Call, scope: Scope) -> A.Call:
        """``let act = relu`` then ``dense(3) -> act``: a constant naming an op stands for it."""
        c = scope.const(st.name) if st.name not in OPS else None
        if st.name not in OPS and scope.const_failed(st.name):
            self.hush(st.name_span)
        if isinstance(c, A.Name):
            return A.Call(c.name, st.name_span, st.args, st.span)
        if isinstance(c, A.Call) and st.args is None:
            return A.Call(c.name, st.name_span, c.args, st.span)
        return st

    def unknown_op(self, st: A.Call, scope: Scope) -> None:
        values = [n for n in scope.all_names() if scope.value(n) is not None]
        hint = did_you_mean(st.name, list(OPS) + values) or "see `docs/language.md` for the list of ops"
        if st.name in self.repeat_locals:
            hint = f"`{st.name}` is bound inside a `repeat` body and is local to it; bind the result after the block"
        if st.args is None and scope.const(st.name) is not None:
            hint = f"`{st.name}` is a constant, not an op or a value"
        elif is_builtin_value(st.name) and scope.const(st.name) is None:
            hint = f"`{st.name}` is {describe(st.name)}, not an op"
        self.err("E301", f"unknown op or value `{st.name}`", st.name_span, hint)

    def merge(self, st: A.Call, scope: Scope) -> Value:
        sources: list[Value] = []
        ok = True
        positional = [a for a in (st.args or []) if not isinstance(a, A.KwArg)]
        for a in positional:
            if not isinstance(a, A.Name):
                self.err("E401", f"`{st.name}` takes the names of its inputs, got `{show(a)}`", a.span,
                         f"e.g. `{st.name}(a, b)`")
                ok = False
                continue
            v = scope.value(a.name)
            if v is None:
                values = [n for n in scope.all_names() if scope.value(n) is not None]
                if a.name not in self.refused:  # `relu = ...` was reported where it was bound
                    self.err("E303", f"unknown value `{a.name}`", a.span,
                             did_you_mean(a.name, values) or "bind it first: `NAME = ...`")
                ok = False
                continue
            sources.append(v)
        if len(positional) < 2:
            self.err("E403", f"`{st.name}` needs at least two inputs", st.span, f"e.g. `{st.name}(a, b)`")
            ok = False
        call = A.Call(st.name, st.name_span, [a for a in (st.args or []) if isinstance(a, A.KwArg)], st.span)
        return self.apply(call, sources if ok else None, scope)

    def next_id(self, op: str, explicit: tuple[str, SourceSpan] | None, stage_span: SourceSpan) -> str:
        if explicit is not None:
            name, span = explicit
        else:
            self.counters[op] = self.counters.get(op, 0) + 1
            name, span = f"{op}_{self.counters[op]}", stage_span
        if name in {i.name for i in self.inputs}:
            self.err("E308", f"layer name `{name}` is also the name of an input", span,
                     "give the layer another `name=`")
        elif name in self.node_ids:
            self.err("E308", f"layer name `{name}` is used twice", span,
                     "give each layer a unique `name=`; unnamed layers are called <op>_<k> in source order")
        self.node_ids[name] = span or SourceSpan()
        return name

    def apply(self, st: A.Call, sources: list[Value] | None, scope: Scope) -> Value:
        """Validate one op stage and infer its output; ``sources=None`` when an input is poisoned."""
        op = OPS[st.name]
        explicit = None
        args = st.args
        if args is not None:
            kept = []
            for a in args:
                if isinstance(a, A.KwArg) and a.name == "name":
                    name = self.subst(a.value, scope)
                    if isinstance(name, A.Str) and name.value.isidentifier():
                        explicit = (name.value, name.span)
                    else:
                        self.err("E401", f"`name` must be a string that is a valid name, got `{show(name)}`",
                                 a.value.span, 'e.g. name="encoder"')
                else:
                    kept.append(a)
            args = kept
        call = self.subst(A.Call(st.name, st.name_span, args if args is not None else [], st.span), scope)
        attrs = None
        try:
            attrs = op.sig.bind(call)
        except ArgErrors as es:
            self.arg_errors(es.errors, scope)
        node_id = self.next_id(op.name, explicit, st.span)
        if attrs is None or sources is None:
            return _poison(st.span)
        shapes = [s.shape for s in sources]
        if any(s is None for s in shapes):
            return _poison(st.span)
        for src in sources:
            if op.input_dtype != "any" and src.dtype != op.input_dtype:
                if src.dtype == "int64":
                    self.err("E208", f"{op.name} expects float input, got int64 token ids from `{src.id}`",
                             st.span, "turn token ids into vectors first with `embedding(vocab, dim)`")
                else:
                    self.err("E207", f"{op.name} expects int64 token ids, got float32 values from `{src.id}`",
                             st.span, "declare the input with its dtype: `input tokens: int64 [T]`")
                return _poison(st.span)
        try:
            out_shape = tuple(op.infer([tuple(s) for s in shapes], attrs))
        except ShapeError as e:
            self.err(e.code, e.message, st.span, e.hint)
            return _poison(st.span)
        dtype = sources[0].dtype if op.input_dtype == "any" else op.output_dtype
        weights = op.weights([tuple(s) for s in shapes], attrs)
        params = sum(_numel(w.shape) for w in weights if w.trainable)
        flops = op.flops([tuple(s) for s in shapes], out_shape, attrs)
        self.nodes.append(Node(id=node_id, op=op.name, inputs=[s.id for s in sources], attrs=attrs,
                               shape=list(out_shape), dtype=dtype, weights=weights, params=params, flops=flops,
                               span=_span(st.span)))
        return Value(node_id, out_shape, dtype, st.span)

    # ------------------------------------------------------------------------------------------
    # outputs and assertions

    def resolve_outputs(self, m: A.Model, scope: Scope) -> list[Output]:
        """The model's outputs. ``self.outputs_known`` is False when an error already reported
        (a failed stage, an unknown name in `output`) hides what they are: what depends on the
        outputs (``assert output``) is then not checked, rather than reported as a second error."""
        outs: list[Output] = []
        if self.outputs_decl is not None:
            seen = set()
            for n in self.outputs_decl.names:
                v = scope.value(n.name)
                if v is None:
                    self.outputs_known = False
                    if n.name in self.refused:
                        continue  # `relu = ...` was reported where it was bound
                    values = [x for x in scope.all_names() if scope.value(x) is not None]
                    self.err("E303", f"unknown value `{n.name}` in `output`", n.span,
                             did_you_mean(n.name, values) or "outputs name values bound with `NAME = ...`")
                elif n.name in seen:
                    self.err("E304", f"`{n.name}` is listed twice in `output`", n.span, None)
                elif v.shape is not None:
                    outs.append(Output(name=n.name, source=v.id, shape=list(v.shape), dtype=v.dtype))
                else:
                    self.outputs_known = False
                seen.add(n.name)
        elif self.prev is not None and self.prev.shape is not None:
            name = self.last_binding or "output"
            outs.append(Output(name=name, source=self.prev.id, shape=list(self.prev.shape), dtype=self.prev.dtype))
        elif self.prev is not None or self.sink:
            self.outputs_known = False  # the last statement failed (or nothing could be built)
        return outs

    def check_assert(self, st: A.AssertStmt, scope: Scope, params: int, flops: int,
                     outputs: list[Output]) -> Assertion | None:
        q = st.quantity
        value = self.subst(st.value, scope)
        if q.kind == "name":
            if q.name not in ("params", "flops"):
                self.err("E502", f"unknown quantity `{q.name}` in `assert`", q.span,
                         did_you_mean(q.name, ["params", "flops"]) or "use params, flops, output or shape(NAME)")
                return None
            if not isinstance(value, A.Num):
                self.err("E401", f"`assert {q.name}` compares with a number, got `{show(value)}`", value.span,
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
                    self.err("E502", f"unknown quantity `{q.name}(...)` in `assert`", q.span,
                             did_you_mean(q.name, ["shape"]) or "use shape(NAME)")
                    return None
                v = scope.value(q.arg.name)
                if v is None and q.arg.name in self.refused:
                    return None  # `relu = ...` was reported where it was bound
                if v is None:
                    values = [x for x in scope.all_names() if scope.value(x) is not None]
                    self.err("E303", f"unknown value `{q.arg.name}` in `assert shape(...)`", q.arg.span,
                             did_you_mean(q.arg.name, values) or "bind it first: `NAME = ...`")
                    return None
                actual = list(v.shape) if v.shape is not None else None
                label = f"shape({q.arg.name})"
            else:
                if not self.outputs_known:
                    return None  # the outputs are unknown after an error already reported
                if len(outputs) != 1:
                    self.err("E502", "`assert output` needs a model with exactly one output", q.span,
                             "use `assert shape(NAME) == [...]` for each output")
                    return None
                actual = outputs[0].shape
                label = "output"
            if st.op != "==":
                self.err("E401", f"shapes can only be compared with `==`, not `{st.op}`", st.span, None)
                return None
            if not (isinstance(value, A.List) and all(isinstance(x, A.Num) and x.is_int for x in value.items)):
                self.err("E401", f"`assert {label}` compares with a shape such as [10], got `{show(value)}`",
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
            self.err("E501", msg, st.span, hint)
        return Assertion(quantity=label, op=st.op, expected=expected, actual=actual, span=_span(st.span))

    # ------------------------------------------------------------------------------------------
    # train block

    def lower_train(self, t: A.Train | None, top: Scope, model: ModelIR | None) -> TrainSpec | None:
        if t is None and not self.overrides:
            return None
        given: dict[str, A.Entry] = {}
        for e in (t.entries if t else []):
            if e.key not in TRAIN_KEYS:
                block = {x.key: x.value for x in t.entries if x.key in TRAIN_KEYS}
                self.err("E307", f"unknown train key `{e.key}`", e.key_span,
                         misplaced_key_hint(e.key, e.value, {**block, **self.overrides}, top.const)
                         or did_you_mean(e.key, list(TRAIN_KEYS)) or "keys: " + ", ".join(TRAIN_KEYS))
                continue
            if e.key in given:
                self.err("E311", f"train key `{e.key}` is given twice", e.key_span, "keep one of them")
                continue
            given[e.key] = e
        span = t.span if t else None
        for key, value in self.overrides.items():
            given[key] = A.Entry(key, value.span, value, value.span)
        values: dict[str, Any] = {}
        bad = False
        for key, p in TRAIN_KEYS.items():
            if key in given:
                # NOTE: a `--set` value's positions are in the value's own text, not in the spec
                self.sink.path = f"<--set {key}>" if key in self.overrides else self.path
                v = self.coerce(p.type, given[key].value, top, f"train `{key}`")
                self.sink.path = self.path
                if v is None:
                    bad = True
                values[key] = v
            elif p.default is REQUIRED:
                if t is None:
                    self.err("E601", f"the spec has no train block, so it has no `{key}`", None,
                             f"add a train block, or `--set {key}=...`")
                else:
                    self.err("E601", f"the train block needs `{key}`", span,
                             f"e.g. `{key} = cross_entropy`" if key == "loss" else None)
                bad = True
            else:
                values[key] = copy.deepcopy(p.default)
        if bad:
            return None
        if values["metrics"] is None:
            values["metrics"] = default_metrics(values["loss"]["kind"])
        for key in ("data", "validation"):
            v = values[key]
            if isinstance(v, dict):
                src_span = given[key].value.span if key in given else None
                values[key] = DataSource(kind=v["kind"], args={k: x for k, x in v.items() if k != "kind"},
                                         span=src_span or None)
        train = TrainSpec(span=span or None, **values)
        if model is not None:
            self.check_train_fits(train, model, given, span)
        return train

    def check_train_fits(self, train: TrainSpec, model: ModelIR, given: dict, span: SourceSpan) -> None:
        """Static checks between the model and its train block (no data is loaded)."""
        def at(key):
            return given[key].value.span if key in given else span

        if len(model.outputs) != 1:
            self.err("E604", f"training needs exactly one output, the model has {len(model.outputs)}",
                     at("loss"), "train a single-output model, or export this one with `nnc compile`")
            return
        out = model.outputs[0].shape
        loss = train.loss["kind"]
        if loss == "cross_entropy" and out[-1] < 2:
            self.err("E602", f"cross_entropy needs at least 2 classes on the last axis, the output is {fmt_shape(out)}",
                     at("loss"), "for one output unit use `binary_cross_entropy` (with `sigmoid`)")
        else:
            self.check_loss_activation(loss, model, at("loss"))
        if train.patience is not None and train.validation == 0.0:
            self.err("E603", "`patience` (early stopping) needs validation data", at("patience"),
                     "add `validation = 0.2` or a validation data source")
        data = train.data
        if data is not None and data.kind == "dataset":
            name = data.args["name"]
            shape, dtype, classes = BUILTIN_DATASETS[name]
            inputs = model.inputs
            inp = inputs[0] if len(inputs) == 1 else None
            where = at("data")
            if inp is not None and _numel(shape) != _numel(inp.shape):
                self.err("E605", f'dataset("{name}") has examples of shape {fmt_shape(shape)}, '
                         f"the input `{inp.name}` takes {fmt_shape(inp.shape)}", where,
                         f"declare `input {inp.name}: {fmt_shape(shape)}`")
            elif len(inputs) > 1:
                self.err("E605", f'dataset("{name}") has one input, the model has {len(inputs)}',
                         where, "train a multi-input model from an npz file")
            if classes is not None and loss == "cross_entropy" and out[-1] != classes:
                self.err("E606", f'dataset("{name}") has {classes} classes, the output has '
                         f"{out[-1]} units", where, f"end the model with `dense({classes}) -> softmax`")
            if classes is None and loss in CLASSIFICATION_LOSSES:
                self.err("E606", f'dataset("{name}") is a regression task; {loss} needs classes',
                         at("loss"), "use `loss = mse`")


    # classification loss -> (the output activation it is fused with, the one it does not go with,
    # the activation the other does, what the other loss is for); see the runtime's Graph.loss_value_id
    LOSS_ACTIVATIONS = {
        "cross_entropy": ("softmax", "sigmoid", "binary_cross_entropy", "independent yes/no outputs"),
        "binary_cross_entropy": ("sigmoid", "softmax", "cross_entropy", "one class out of several"),
    }

    def check_loss_activation(self, loss: str, model: ModelIR, span: SourceSpan | None) -> None:
        """W601: a classification loss after the other one's output activation trains, but on the
        wrong quantity: the output is taken as logits, so `cross_entropy` applies softmax to a
        sigmoid's outputs (and `binary_cross_entropy` sigmoid to a softmax's)."""
        if loss not in self.LOSS_ACTIVATIONS:
            return
        fits, wrong, other, other_for = self.LOSS_ACTIVATIONS[loss]
        last = next((n for n in self.nodes if n.id == model.outputs[0].source), None)
        if last is None or last.op != wrong:
            return
        self.warn("W601", f"{loss} after `{wrong}`: the loss takes the {wrong}'s outputs as logits and "
                  f"applies {fits} to them", span,
                  f"end the model with `{fits}` for {loss}, or use `loss = {other}` ({other_for})")


def _poison(span: SourceSpan) -> Value:
    """The value of a stage that failed: later stages skip their shape checks instead of cascading."""
    return Value("<error>", None, "float32", span)


def _names(v: A.Value):
    """The names in a value (not the names of calls): ``[a, b]`` and ``adam(lr=base)`` hold names."""
    if isinstance(v, A.Name):
        yield v
    elif isinstance(v, A.List):
        for x in v.items:
            yield from _names(x)
    elif isinstance(v, A.Call):
        for a in v.args or []:
            yield from _names(a.value if isinstance(a, A.KwArg) else a)


def _lets(items: list):
    """Every `let` statement of a file, at any depth (top level, model, `repeat` bodies)."""
    for it in items:
        if isinstance(it, A.LetStmt):
            yield it
        elif isinstance(it, (A.Model, A.Repeat)):
            yield from _lets(it.body)


def _key(span: SourceSpan | None) -> tuple:
    return (span.line, span.column, span.end_line, span.end_column) if span else ()


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _count_stages(body: list) -> int:
    n = 0
    for st in body:
        if isinstance(st, A.Binding):
            n += len(st.pipeline.stages)
        elif isinstance(st, A.Pipeline):
            n += len(st.stages)
        elif isinstance(st, A.Repeat):
            inner = _count_stages(st.body)
            count = st.count.value if isinstance(st.count, A.Num) and isinstance(st.count.value, int) else 1
            n += inner * max(1, count)
    return n


# ----------------------------------------------------------------------------------------------
# entry points

def parse_overrides(settings: list[str] | dict[str, str] | None) -> dict[str, A.Value]:
    """``["epochs=3", "optimizer=sgd(lr=0.1)"]`` -> ``{key: value AST}``; bad syntax is an NncError."""
    if not settings:
        return {}
    items = settings.items() if isinstance(settings, dict) else []
    out: dict[str, A.Value] = {}
    if isinstance(settings, list):
        pairs = []
        for s in settings:
            key, eq, text = s.partition("=")
            if not eq or not key.strip().isidentifier():
                raise NncError.single("E102", f"--set expects KEY=VALUE, got `{s}`", hint="e.g. --set epochs=3",
                                      path="<--set>")
            pairs.append((key.strip(), text.strip()))
        items = pairs
    for key, text in items:
        out[key] = parse_value(text, f"--set {key}")
    return out


def check_source(source: str | bytes, path: str | None = None, *,
                 overrides: dict[str, A.Value] | None = None, warnings: list | None = None) -> dict:
    """Parse, validate and lower a spec without building the pydantic IR (what ``nnc check`` needs).

    Returns the program as a plain dict; raises :class:`NncError` with every diagnostic found (its
    warnings included). The warnings of a spec without errors are appended to ``warnings``.
    """
    # NOTE: parsing and lowering a large spec allocate hundreds of thousands of small objects that all
    # stay alive, and the cyclic collector would scan them over and over (most of the time of a
    # 100,000-layer spec); none of them is cyclic garbage, so the collector waits until the end.
    collecting = gc.isenabled()
    gc.disable()
    try:
        file = parse(source, path)
        text = source if isinstance(source, str) else source.decode("utf-8", "replace").lstrip("\ufeff")
        lowerer = Lowerer(path, overrides)
        program = lowerer.lower(file, text).to_dict()
    finally:
        if collecting:
            gc.enable()
    if warnings is not None:
        warnings.extend(lowerer.warnings)
    return program


def compile_source(source: str | bytes, path: str | None = None, *,
                   overrides: dict[str, A.Value] | None = None):
    """Parse, validate and lower a spec into the IR (:class:`nnc.compiler.ir.Program`).

    Raises :class:`NncError` with every diagnostic found. The program's ``warnings`` hold the
    warnings (:class:`~nnc.errors.Diagnostic`, severity ``warning``) of a spec that compiles.
    """
    from .ir import Program  # NOTE: pydantic is imported only when a caller wants the IR
    warnings: list = []
    program = Program.model_validate(check_source(source, path, overrides=overrides, warnings=warnings))
    program.warnings = warnings
    return program
