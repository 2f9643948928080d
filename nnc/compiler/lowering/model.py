"""The model-statements pass: a ``model`` block's statements in source order -- inputs, ``let``,
``repeat`` expansion, pipelines and merges, layer naming, argument validation and shape inference.

It builds the model's dataflow (its inputs, its layers, the value of its last statement) and
collects its ``output`` and ``assert`` statements for :mod:`.outputs`.
"""
from __future__ import annotations

from ...errors import Note, SourceSpan, did_you_mean
from ...lang import ast as A
from ...lang.types import ArgErrors, Int, show
from ..builtin_names import describe, is_builtin_value
from ..irtypes import BlockUse, Input, Node
from ..ops import LAYOUT_KEEPING, OPS, ShapeError
from .blocks import bind_use, describe_use
from .context import Context, Scope, Value, ir_span, numel, span_key

MAX_NODES = 100_000


class ModelPass:
    """The statements of the model block. Every piece of state is declared here."""

    stage_cache = True  # False: infer every stage afresh (the general path, for the tests)

    def __init__(self, ctx: Context):
        self.ctx = ctx
        # the model's dataflow, in source order
        self.model_scope: Scope | None = None  # the model block's scope (inputs and `output` live there)
        self.inputs: list[Input] = []  # the declared inputs that checked
        self.declared: list[str] = []  # every input's name, including inputs whose declaration failed
        self.nodes: list[Node] = []  # the layers, in source order (repeat bodies expanded)
        self.by_id: dict[str, Node] = {}  # the layers by id, for the origin of a value (OpDef.warn)
        self.node_ids: dict[str, SourceSpan] = {}  # layer name -> where it was given, for E308
        self.counters: dict[str, int] = {}  # op -> unnamed layers so far (the k of <op>_<k>)
        self.repeat_locals: set[str] = set()  # names bound in a `repeat` body, for better hints
        self.prev: Value | None = None  # the value of the last statement: the next stage's implicit source
        # block uses being expanded (outermost first): (block name, use id); layers get the ids as prefix
        self.uses: list[tuple[str, str]] = []
        self.block_uses: list[BlockUse] = []  # every use, in expansion order, for the IR
        self.reported_in_bodies: set[tuple] = set()  # (code, span) of errors in block bodies, reported once
        self.too_big = False  # E402 (expansion limit) reported
        self.last_binding: str | None = None  # the name the last statement bound (the default output's name)
        # collected for the outputs-and-assertions pass
        self.outputs_decl: A.OutputDecl | None = None  # the model's `output` statement, if any
        self.asserts: list[tuple[A.AssertStmt, Scope]] = []  # each `assert` with the scope it was written in
        # (op, literal arguments) -> the arguments it bound to: a stage written 10,000 times binds once
        self.bound: dict[tuple, dict] = {}
        # (that key, the input shapes, the input dtypes) -> (output shape, dtype, params, flops,
        # attributes, the names of those that are lists) of a stage that checked: the same stage on
        # the same inputs is inferred once
        self.stages: dict[tuple, tuple] = {}
        # for editors: (the span of a stage, or of a binding's name; the value it produced), in
        # expansion order (a stage in `repeat` or a block body appears once per expansion; a
        # poisoned value has shape None)
        self.produced: list[tuple[SourceSpan, Value]] = []

    def lower_model(self, m: A.Model, top: Scope) -> Scope:
        """Lower the model's statements; the model's scope (its inputs and bound values)."""
        scope = Scope(parent=top)
        self.model_scope = scope
        self.statements(m.body, scope)
        if not self.nodes and self.prev is None and not self.ctx.sink:
            self.ctx.err("E114", f"model `{m.name}` has no layers", m.name_span,
                         "add stages after the input, e.g. `dense(10) -> softmax`")
        return scope

    def statements(self, body: list, scope: Scope) -> None:
        for st in body:
            if len(self.nodes) > MAX_NODES:
                if not self.too_big:
                    self.ctx.err("E402", f"the model expands to more than {MAX_NODES:,} layers", st.span,
                                 "use a smaller `repeat` count, or fewer block uses")
                self.too_big = True
                return
            if type(st) is A.Pipeline:  # (the most common statement first)
                self.prev = self.pipeline(st, scope)
                self.last_binding = None
            elif isinstance(st, A.LetStmt):
                self.ctx.define_const(st, scope)
            elif isinstance(st, A.InputDecl):
                self.input_decl(st, scope)
            elif isinstance(st, A.OutputDecl):
                if self.uses:
                    self.ctx.err("E115", "`output` cannot be declared inside a block", st.span,
                                 "a block's result is the value of its last statement; declare outputs in the model")
                elif self.outputs_decl is not None:
                    self.ctx.err("E115", "`output` is declared twice", st.span,
                                 "list every output in one `output` statement")
                elif scope is not self.model_scope:
                    self.ctx.err("E115", "`output` cannot be declared inside `repeat`", st.span,
                                 "declare it after the `repeat` block")
                else:
                    self.outputs_decl = st
            elif isinstance(st, A.AssertStmt):
                self.asserts.append((st, scope))
            elif isinstance(st, A.Repeat):
                self.repeat(st, scope)
            elif isinstance(st, A.Binding):
                value = self.pipeline(st.pipeline, scope)
                self.produced.append((st.name_span, value))
                if self.bindable(st.name, st.name_span, scope):
                    scope.values[st.name] = value
                self.last_binding = st.name
                self.prev = value

    def bindable(self, name: str, span: SourceSpan, scope: Scope) -> bool:
        if name in OPS:
            self.ctx.err("E305", f"`{name}` is the name of an op and cannot name a value", span,
                         f"choose another name, e.g. `{name}_out`")
            self.ctx.refused.add(name)
            return False
        if name in self.ctx.blocks:
            self.ctx.err("E305", f"`{name}` is the name of a block and cannot name a value", span,
                         f"choose another name, e.g. `{name}_out`")
            self.ctx.refused.add(name)
            return False
        if scope.value(name) is not None or scope.const(name) is not None:
            self.ctx.err("E304", f"`{name}` is already bound", span, "each name is bound once; choose another name")
            return False
        return True

    def input_decl(self, st: A.InputDecl, scope: Scope) -> None:
        dtype, dtype_ok = "float32", True
        if st.dtype is not None:
            if st.dtype.name in ("float32", "int64"):
                dtype = st.dtype.name
            else:
                dtype_ok = False
                self.ctx.err("E405", f"unknown input dtype `{st.dtype.name}`", st.dtype.span,
                             did_you_mean(st.dtype.name, ["float32", "int64"]) or "use `float32` or `int64`")
        dims = [self.ctx.coerce(Int(min=1), d, scope, "input dimension") for d in st.dims]
        if scope is not self.model_scope:
            where = "a block" if self.uses else "`repeat`"
            self.ctx.err("E116", f"inputs cannot be declared inside {where}", st.span,
                         "a block takes the incoming value (or values passed as arguments)" if self.uses
                         else "declare inputs at the top of the model")
            return
        ok = self.bindable(st.name, st.name_span, scope)
        if ok:
            self.declared.append(st.name)
        shape = tuple(dims) if all(d is not None for d in dims) and dtype_ok else None
        if ok:
            scope.values[st.name] = Value(st.name, shape, dtype, st.span)
        if shape is not None:
            self.inputs.append(Input(name=st.name, shape=list(shape), dtype=dtype, span=ir_span(st.span)))

    def repeat(self, st: A.Repeat, scope: Scope) -> None:
        n = self.ctx.coerce(Int(min=1), st.count, scope, "repeat count")
        if n is None:
            return
        if n * max(1, _count_stages(st.body)) > MAX_NODES:
            self.ctx.err("E402", f"`repeat {show(st.count)}` expands to more than {MAX_NODES:,} layers", st.count.span,
                         "use a smaller count")
            return
        for _ in range(n):
            before = len(self.ctx.sink.errors)
            body = Scope(parent=scope)
            self.statements(st.body, body)
            self.repeat_locals.update(body.values)
            if len(self.ctx.sink.errors) > before:
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
            self.ctx.err("E113", "the model has no input before its first layer", stage.span,
                         "declare one first, e.g. `input x: [4]`")
            return None
        self.ctx.err("E306", f"`{stage.name}` could take any of the inputs "
                     + ", ".join(f"`{d}`" for d in declared), stage.span,
                     f"name its source: `{declared[0]} -> {show(stage)}`")
        return None

    def pipeline(self, pipe: A.Pipeline, scope: Scope) -> Value:
        """The value a pipeline computes; a poisoned value (shape None) after an error."""
        stages = list(pipe.stages)
        first = stages[0]
        current: Value | None
        if first.args is None and scope.value(first.name) is not None and first.name not in OPS \
                and first.name not in self.ctx.blocks:
            current = scope.value(first.name)
            stages = stages[1:]
        elif first.name in OPS and _is_merge(first, scope):
            current = self.merge(first, scope)
            self.produced.append((first.span, current))
            stages = stages[1:]
        else:
            current = self.implicit_source(first, scope) if self._is_op_stage(first, scope) else None
        poisoned = current is None or current.shape is None
        nodes, produced, blocks = self.nodes, self.produced, self.ctx.blocks
        for st in stages:
            if len(nodes) > MAX_NODES:
                self.ctx.err("E402", f"the model expands to more than {MAX_NODES:,} layers", st.span,
                             "split the model, or use fewer stages")
                return _poison(pipe.span)
            op = OPS.get(st.name)
            if op is None or op.merge or st.name in blocks:
                # (an op that is not a merge, the most common stage, is one as written: none of
                # these checks changes or refuses it)
                st = self.resolve_stage_const(st, scope)
                if st.name in blocks:
                    current = self.block_use(st, None if poisoned else current, scope)
                    produced.append((st.span, current))
                    poisoned = poisoned or current.shape is None
                    continue
                if st.name not in OPS:
                    if scope.value(st.name) is not None:
                        self.ctx.err("E312", f"`{st.name}` is a value, not an op; only the first stage may name "
                                     "a value", st.span, f"start a new statement: `{st.name} -> ...`")
                    else:
                        self.unknown_op(st, scope)
                    poisoned = True
                    continue
                if _is_merge(st, scope):
                    self.ctx.err("E313", f"`{st.name}` names all its inputs and must start its pipeline", st.span,
                                 f"write `{st.name}(a, b) -> ...` as a statement of its own")
                    poisoned = True
                    continue
            current = self.apply(st, None if poisoned else [current], scope)
            produced.append((st.span, current))
            poisoned = poisoned or current.shape is None
        return _poison(pipe.span) if poisoned or current is None else current

    def _is_op_stage(self, st: A.Call, scope: Scope) -> bool:
        name = self.resolve_stage_const(st, scope).name
        return name in OPS or name in self.ctx.blocks

    def resolve_stage_const(self, st: A.Call, scope: Scope) -> A.Call:
        """``let act = relu`` then ``dense(3) -> act``: a constant naming an op (or a block) stands
        for it."""
        known = st.name in OPS or st.name in self.ctx.blocks
        c = scope.const(st.name) if not known else None
        if not known and scope.const_failed(st.name):
            self.ctx.hush(st.name_span)
        if isinstance(c, A.Name):
            return A.Call(c.name, st.name_span, st.args, st.span)
        if isinstance(c, A.Call) and st.args is None:
            return A.Call(c.name, st.name_span, c.args, st.span)
        return st

    def unknown_op(self, st: A.Call, scope: Scope) -> None:
        if st.name in self.ctx.refused:
            return  # a block whose definition was reported, or a refused name
        values = [n for n in scope.all_names() if scope.value(n) is not None]
        hint = (did_you_mean(st.name, list(OPS) + list(self.ctx.blocks) + values)
                or "see `docs/language.md` for the list of ops")
        if st.name in self.repeat_locals:
            hint = f"`{st.name}` is bound inside a `repeat` body and is local to it; bind the result after the block"
        if st.args is None and scope.const(st.name) is not None:
            hint = f"`{st.name}` is a constant, not an op or a value"
        elif is_builtin_value(st.name) and scope.const(st.name) is None:
            hint = f"`{st.name}` is {describe(st.name)}, not an op"
        self.ctx.err("E301", f"unknown op or value `{st.name}`", st.name_span, hint)

    def merge(self, st: A.Call, scope: Scope) -> Value:
        sources: list[Value] = []
        ok = True
        positional = [a for a in (st.args or []) if not isinstance(a, A.KwArg)]
        for a in positional:
            if not isinstance(a, A.Name):
                example = f"{st.name}(a, b)" if OPS[st.name].merge is True else \
                    f"{st.name}(a, b, {OPS[st.name].sig.params[0].name}=...)"  # the op's own arguments by keyword
                self.ctx.err("E401", f"`{st.name}` takes the names of its inputs, got `{show(a)}`", a.span,
                             f"e.g. `{example}`")
                ok = False
                continue
            v = scope.value(a.name)
            if v is None:
                values = [n for n in scope.all_names() if scope.value(n) is not None]
                if a.name not in self.ctx.refused:  # `relu = ...` was reported where it was bound
                    self.ctx.err("E303", f"unknown value `{a.name}`", a.span,
                                 did_you_mean(a.name, values) or "bind it first: `NAME = ...`")
                ok = False
                continue
            sources.append(v)
        if len(positional) < 2:
            self.ctx.err("E403", f"`{st.name}` needs at least two inputs", st.span, f"e.g. `{st.name}(a, b)`")
            ok = False
        call = A.Call(st.name, st.name_span, [a for a in (st.args or []) if isinstance(a, A.KwArg)], st.span)
        return self.apply(call, sources if ok else None, scope)

    def next_id(self, op: str, explicit: tuple[str, SourceSpan] | None, stage_span: SourceSpan) -> str:
        """The layer name of a stage (or a block use): ``name=`` or ``<op>_<k>``, prefixed by the
        ids of the block uses it is inside (``stage2.conv2d_1``)."""
        uses = self.uses
        prefix = uses[-1][1] + "." if uses else ""
        if explicit is not None:
            name, span = prefix + explicit[0], explicit[1]
        else:
            counters = self.counters
            k = counters[op] = counters.get(op, 0) + 1
            name, span = f"{prefix}{op}_{k}", stage_span
        if any(i.name == name for i in self.inputs):
            self.ctx.err("E308", f"layer name `{name}` is also the name of an input", span,
                         "give the layer another `name=`")
        elif name in self.node_ids:
            self.ctx.err("E308", f"layer name `{name}` is used twice", span,
                         "give each layer a unique `name=`; unnamed layers are called <op>_<k> in source order")
        self.node_ids[name] = span or SourceSpan()
        return name

    def apply(self, st: A.Call, sources: list[Value] | None, scope: Scope) -> Value:
        """Validate one op stage and infer its output; ``sources=None`` when an input is poisoned."""
        op = OPS[st.name]
        explicit, args = self.split_name(st, scope)
        # NOTE: arguments that are all literals need no substitution (subst would return them as
        # they are): their binding is looked up by them, and the call is built only to bind them
        # (or to substitute them); a bare stage (`relu`) binds as `(op.name,)`
        key = _bind_key(op.name, args)
        call = None
        if key is None or key not in self.bound:
            call = A.Call(st.name, st.name_span, args if args is not None else [], st.span)
            if key is None:
                call = self.ctx.subst(call, scope)
                key = _bind_key(op.name, call.args)
        stage_key = None
        if key is not None and sources is not None and self.stage_cache:
            # the same stage on inputs of the same shapes and dtypes as one that checked before
            if len(sources) == 1:
                stage_key = (key, sources[0].shape, sources[0].dtype)
            else:
                stage_key = (key, tuple(s.shape for s in sources), tuple(s.dtype for s in sources))
            done = self.stages.get(stage_key)
            if done is not None:
                node_id = self.next_id(op.name, explicit, st.span)
                out_shape, dtype, params, flops, done_attrs, lists = done
                # NOTE: infer() completes the attributes (conv2d's `pads`): its result is taken
                # whole, each list fresh (as infer() makes them for every stage)
                attrs = dict(done_attrs)
                for k in lists:
                    attrs[k] = list(attrs[k])
                shapes = [s.shape for s in sources]
                return self._node(op, st, node_id, sources, shapes, attrs, out_shape, dtype, params, flops)
        attrs = self.bound.get(key) if key is not None else None
        if attrs is not None:
            attrs = dict(attrs)
        else:
            try:
                attrs = op.sig.bind(call)
            except ArgErrors as es:
                self.ctx.arg_errors(es.errors, scope)
            else:
                if key is not None:
                    self.bound[key] = dict(attrs)
        node_id = self.next_id(op.name, explicit, st.span)
        if attrs is None or sources is None:
            return _poison(st.span)
        shapes = [s.shape for s in sources]
        if None in shapes:
            return _poison(st.span)
        for src in sources:
            if op.input_dtype != "any" and src.dtype != op.input_dtype:
                if src.dtype == "int64":
                    self.ctx.err("E208", f"{op.name} expects float input, got int64 token ids from `{src.id}`",
                                 st.span, "turn token ids into vectors first with `embedding(vocab, dim)`")
                else:
                    self.ctx.err("E207", f"{op.name} expects int64 token ids, got float32 values from `{src.id}`",
                                 st.span, "declare the input with its dtype: `input tokens: int64 [T]`")
                return _poison(st.span)
        try:
            out_shape = tuple(op.infer([tuple(s) for s in shapes], attrs))
        except ShapeError as e:
            self.ctx.err(e.code, e.message, st.span, e.hint)
            return _poison(st.span)
        dtype = sources[0].dtype if op.input_dtype == "any" else op.output_dtype
        shapes = [tuple(s) for s in shapes]  # (the catalogue's functions read them, never change them)
        weights = op.weights(shapes, attrs)
        params = 0
        for w in weights:
            if w.trainable:
                params += numel(w.shape)
        flops = op.flops(shapes, out_shape, attrs)
        if stage_key is not None:
            lists = tuple(k for k, v in attrs.items() if type(v) is list)
            self.stages[stage_key] = (out_shape, dtype, params, flops,
                                      {k: list(v) if k in lists else v for k, v in attrs.items()}, lists)
        return self._node(op, st, node_id, sources, shapes, attrs, out_shape, dtype, params, flops, weights)

    def _node(self, op, st: A.Call, node_id: str, sources: list[Value], shapes: list, attrs: dict,
              out_shape: tuple, dtype: str, params: int, flops: int, weights: list | None = None) -> Value:
        """The layer of a stage that checked (its weights made here unless given), and its value."""
        if weights is None:
            weights = op.weights(shapes, attrs)
        uses = self.uses
        node = Node(id=node_id, op=op.name, inputs=[s.id for s in sources], attrs=attrs,
                    shape=list(out_shape), dtype=dtype, weights=weights, params=params, flops=flops,
                    span=ir_span(st.span), block=uses[-1][1] if uses else None)
        self.nodes.append(node)
        self.by_id[node_id] = node
        if op.warn is not None:
            warning = op.warn([self.origin(s.id) for s in sources], shapes, attrs)
            if warning is not None:
                self.ctx.warn(warning[0], warning[1], st.span, warning[2])
        return Value(node_id, out_shape, dtype, st.span)

    def origin(self, value_id: str) -> str | None:
        """The op that made a value, looking through ops that keep its layout (relu, dropout,
        layernorm, ...); None for a model input."""
        node = self.by_id.get(value_id)
        while node is not None and OPS[node.op].kind in LAYOUT_KEEPING and len(node.inputs) == 1:
            node = self.by_id.get(node.inputs[0])
        return node.op if node is not None else None

    def split_name(self, st: A.Call, scope: Scope) -> tuple[tuple[str, SourceSpan] | None, list | None]:
        """A stage's ``name="..."`` (and where it was given) and its other arguments."""
        explicit = None
        args = st.args
        if args:
            if not any(type(a) is A.KwArg and a.name == "name" for a in args):
                return None, args  # (no `name=`: the arguments as they are)
            kept = []
            for a in args:
                if isinstance(a, A.KwArg) and a.name == "name":
                    name = self.ctx.subst(a.value, scope)
                    if isinstance(name, A.Str) and name.value.isidentifier():
                        explicit = (name.value, name.span)
                    else:
                        self.ctx.err("E401", f"`name` must be a string that is a valid name, got `{show(name)}`",
                                     a.value.span, 'e.g. name="encoder"')
                else:
                    kept.append(a)
            args = kept
        return explicit, args

    # ------------------------------------------------------------------------------------------
    # blocks

    def block_use(self, st: A.Call, source: Value | None, scope: Scope) -> Value:
        """Expand one use of a block: its body, in a scope of its own, takes ``source`` (None when
        poisoned) as its first statement's previous value; the result is its last statement's value.
        Errors in the body are reported once (at the body's line) with a note naming the use."""
        block = self.ctx.blocks[st.name]
        block.used = True
        explicit, args = self.split_name(st, scope)
        use_id = self.next_id(block.node.name, explicit, st.span)
        active = [b for b, _ in self.uses]
        if block.node.name in active:
            chain = " -> ".join(active[active.index(block.node.name):] + [block.node.name])
            self.ctx.err("E316", f"block `{block.node.name}` uses itself ({chain})", st.span,
                         "a block cannot contain itself, directly or through another block; "
                         "use `repeat` for a repeated structure")
            return _poison(st.span)
        call = A.Call(st.name, st.name_span, args if args is not None else [], st.span)
        bound = bind_use(self.ctx, block, call, scope, self.model_scope.parent)
        if bound is None:
            return _poison(st.span)
        self.block_uses.append(BlockUse(id=use_id, block=block.node.name, args=bound.args,
                                        parent=self.uses[-1][1] if self.uses else None, span=ir_span(st.span)))
        saved = (self.prev, self.last_binding, self.counters)
        self.prev = source if source is not None else _poison(st.span)
        self.counters = {}
        self.uses.append((block.node.name, use_id))
        before = len(self.ctx.sink.diagnostics)
        try:
            self.statements(block.node.body, bound.scope)
            result = self.prev
        finally:
            self.uses.pop()
            self.prev, self.last_binding, self.counters = saved
        self.note_use(before, st, bound.args)
        return result if result is not None else _poison(st.span)

    def note_use(self, before: int, st: A.Call, args: dict) -> None:
        """The diagnostics of one use's expansion: those in a block body (at any depth) name the use
        in a note (innermost first), and one already reported at the same place by another use of the
        same body is dropped."""
        sink = self.ctx.sink
        given = ", ".join(f"{k} = {v['value'] if isinstance(v, dict) else v}" for k, v in args.items())
        where = f"expanded from `{describe_use(st)}` at line {st.span.line}" + (f" ({given})" if given else "")
        kept = sink.diagnostics[:before]
        for d in sink.diagnostics[before:]:
            if d.path == self.ctx.path and d.span is not None and not d.notes:
                key = (d.code, span_key(d.span))
                if key in self.reported_in_bodies:
                    continue  # the same error from another use of this body
                self.reported_in_bodies.add(key)
            if d.path == self.ctx.path and d.span is not None:
                d.notes.append(Note(where, st.span))
            kept.append(d)
        sink.diagnostics[:] = kept


def _is_merge(st: A.Call, scope: Scope) -> bool:
    """Whether a stage of an op is written as a merge: always for ``OpDef.merge is True``; for
    ``merge="optional"`` (an op that is also a single-input stage) when its first positional
    argument is a bare name that is not a constant: ``multihead_attention(q, kv, heads=4)``."""
    merge = OPS[st.name].merge
    if merge != "optional":
        return bool(merge)
    first = next((a for a in st.args or [] if not isinstance(a, A.KwArg)), None)
    return isinstance(first, A.Name) and scope.const(first.name) is None


def _bind_key(op: str, args: list | None) -> tuple | None:
    """What a binding of a call of ``op`` with ``args`` depends on, if they are literals (None
    otherwise). Only a successful binding is remembered: errors are reported at every stage that
    makes them."""
    key: list = [op]
    for a in args or ():
        kw = None
        if type(a) is A.KwArg:
            kw, a = a.name, a.value
        t = type(a)
        if t is A.Num:
            key.append((kw, "n", type(a.value), a.value, a.text, a.source))
        elif t is A.Str:
            key.append((kw, "s", a.value, a.text))
        elif t is A.Bool:
            key.append((kw, "b", a.value))
        else:
            return None
    return tuple(key)


def _poison(span: SourceSpan) -> Value:
    """The value of a stage that failed: later stages skip their shape checks instead of cascading."""
    return Value("<error>", None, "float32", span)



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

