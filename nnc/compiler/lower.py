"""Syntax tree -> IR: ``let`` constants, ``repeat`` expansion, dataflow resolution, layer naming,
argument validation, shape inference, assertions and the train block.

The lowering runs as passes over a shared context (:mod:`nnc.compiler.lowering`), in the order in
which their diagnostics are emitted: the file's constants, the model's statements, its outputs and
assertions, the train block. They collect every diagnostic in the file and raise once
(:class:`~nnc.errors.DiagnosticSink`). A stage that fails poisons its value (shape ``None``) so that
what depends on it is not reported again.
"""
from __future__ import annotations

import gc

from ..errors import NncError, SourceSpan, did_you_mean
from ..lang import ast as A
from ..lang.types import show
from .irtypes import Program
from .lowering.blocks import define_blocks
from .lowering.context import Context, Scope, lets_in
from .lowering.model import MAX_NODES, ModelPass
from .lowering.outputs import OutputsPass
from .lowering.train import TrainPass
from .parse import parse
from .trainspec import TRAIN_KEYS, misplaced_key_hint

__all__ = ["MAX_NODES", "Lowerer", "check_source", "compile_source", "parse_overrides"]


class Lowerer:
    """One use: ``Lowerer(path, overrides).lower(file, source)``. Every piece of state is declared
    here or in the context and passes it creates."""

    def __init__(self, path: str | None, overrides: dict[str, A.Value] | None = None):
        self.ctx = Context(path, overrides)  # diagnostics and constants, shared by every pass
        self.model = ModelPass(self.ctx)  # the model's statements: inputs, repeat, pipelines, layers
        self.outputs = OutputsPass(self.ctx, self.model)  # the model's outputs, totals and assertions
        self.train = TrainPass(self.ctx)  # the train block
        self.warnings: list = []  # the sink's warnings, set when the file lowers without errors
        self.top = Scope()  # the file's top-level scope: its constants (kept for editors, nnc lsp)

    def lower(self, file: A.File, source: str | None) -> Program:
        """The program (``Program.to_dict()`` is the plain dict that :class:`ir.Program` validates)."""
        ctx = self.ctx
        top = self.top
        for let in lets_in(file.items):
            ctx.lets.setdefault(let.name, []).append(let)
        models = [i for i in file.items if isinstance(i, A.Model)]
        trains = [i for i in file.items if isinstance(i, A.Train)]
        for item in file.items:
            if isinstance(item, A.LetStmt):
                ctx.define_const(item, top)
        define_blocks(ctx, file.items, top)
        for name, value in list(ctx.overrides.items()):
            if name not in TRAIN_KEYS:
                given = {e.key: e.value for e in (trains[0].entries if trains else [])}
                given.update({k: v for k, v in ctx.overrides.items() if k in TRAIN_KEYS})
                ctx.err("E307", f"cannot override `{name}`: there is no train key or top-level `let` constant `{name}`",
                        None, misplaced_key_hint(name, value, given, top.const, via_set=True)
                        or did_you_mean(name, list(TRAIN_KEYS) + list(top.consts)))
                ctx.overrides.pop(name)
        if not models:
            ctx.err("E110", "the file has no `model` block", SourceSpan(1, 1, 1, 2),
                    "add one: `model NAME { input x: [F] ... }`")
        for extra in models[1:]:
            ctx.err("E111", "a file holds exactly one `model` block", extra.name_span,
                    f"move `{extra.name}` into a file of its own")
        for extra in trains[1:]:
            ctx.err("E112", "a file holds at most one `train` block", extra.span,
                    "merge the two `train` blocks")
        model = None
        if models:
            scope = self.model.lower_model(models[0], top)
            model = self.outputs.model_ir(models[0], scope)
        train = self.train.lower_train(trains[0] if trains else None, top, model)
        for block in ctx.blocks.values():
            if not block.used and models:
                ctx.warn("W301", f"block `{block.node.name}` is never used", block.node.name_span,
                         "its body is checked only where it is used; use it in the model, or remove it")
        ctx.sink.raise_if_any()
        self.warnings = ctx.sink.warnings
        assert model is not None
        consts = {name: show(v) for name, v in top.consts.items()}
        return Program(path=ctx.path, source=source, constants=consts, model=model, train=train,
                       seed=train.seed if train else 0)


# ----------------------------------------------------------------------------------------------
# entry points

def parse_overrides(settings: list[str] | dict[str, str] | None) -> dict[str, A.Value]:
    """``["epochs=3", "optimizer=sgd(lr=0.1)"]`` -> ``{key: value AST}``; bad syntax is an NncError."""
    if not settings:
        return {}
    from .parse_lark import parse_value
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
