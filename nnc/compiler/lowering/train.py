"""The train pass: the ``train`` block and the ``--set`` train keys, checked against the model."""
from __future__ import annotations

import copy

from ...errors import SourceSpan, did_you_mean, fmt_shape
from ...lang import ast as A
from ...lang.types import REQUIRED
from ...vocab import (BUILTIN_DATASETS, CLASSIFICATION_LOSSES, FUSED_ACTIVATION, IMAGE_CHANNELS,
                      default_metrics)
from ..irtypes import DataSource, ModelIR, TrainSpec
from ..ops import embeddings_reading
from ..trainspec import TRAIN_KEYS, misplaced_key_hint
from .context import Context, Scope, numel

TYPE_CHECKING = False  # typing's constant, without importing typing (`nnc check` never does)
if TYPE_CHECKING:
    from typing import Any


def _typed(inp) -> str:
    return f"{inp.dtype} {fmt_shape(inp.shape)}" if inp.dtype != "float32" else fmt_shape(inp.shape)


# classification loss -> (the output activation it is fused with, the one it does not go with,
# the activation the other does, what the other loss is for); see the runtime's Graph.loss_value_id
# a classification loss -> the other one, and what that one is for (W601's hint)
_OTHER_LOSS = {"cross_entropy": ("binary_cross_entropy", "independent yes/no outputs"),
               "binary_cross_entropy": ("cross_entropy", "one class out of several")}


class TrainPass:
    """The train block. Its only state is the shared context."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def lower_train(self, t: A.Train | None, top: Scope, model: ModelIR | None) -> TrainSpec | None:
        if t is None and not self.ctx.overrides:
            return None
        given: dict[str, A.Entry] = {}
        for e in (t.entries if t else []):
            if e.key not in TRAIN_KEYS:
                block = {x.key: x.value for x in t.entries if x.key in TRAIN_KEYS}
                self.ctx.err("E307", f"unknown train key `{e.key}`", e.key_span,
                             misplaced_key_hint(e.key, e.value, {**block, **self.ctx.overrides}, top.const)
                             or did_you_mean(e.key, list(TRAIN_KEYS)) or "keys: " + ", ".join(TRAIN_KEYS))
                continue
            if e.key in given:
                self.ctx.err("E311", f"train key `{e.key}` is given twice", e.key_span, "keep one of them")
                continue
            given[e.key] = e
        span = t.span if t else None
        for key, value in self.ctx.overrides.items():
            given[key] = A.Entry(key, value.span, value, value.span)
        values: dict[str, Any] = {}
        bad = False
        for key, p in TRAIN_KEYS.items():
            if key in given:
                # NOTE: a `--set` value's positions are in the value's own text, not in the spec
                self.ctx.sink.path = f"<--set {key}>" if key in self.ctx.overrides else self.ctx.path
                v = self.ctx.coerce(p.type, given[key].value, top, f"train `{key}`")
                self.ctx.sink.path = self.ctx.path
                if v is None:
                    bad = True
                values[key] = v
            elif p.default is REQUIRED:
                if t is None:
                    self.ctx.err("E601", f"the spec has no train block, so it has no `{key}`", None,
                                 f"add a train block, or `--set {key}=...`")
                else:
                    self.ctx.err("E601", f"the train block needs `{key}`", span,
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
            self.ctx.err("E604", f"training needs exactly one output, the model has {len(model.outputs)}",
                         at("loss"), "train a single-output model, or export this one with `nnc compile`")
            return
        out = model.outputs[0].shape
        loss = train.loss["kind"]
        if loss == "cross_entropy" and out[-1] < 2:
            self.ctx.err("E602", "cross_entropy needs at least 2 classes on the last axis, the output is "
                         f"{fmt_shape(out)}", at("loss"),
                         "for one output unit use `binary_cross_entropy` (with `sigmoid`)")
        else:
            self.check_loss_activation(loss, model, at("loss"))
        if train.patience is not None and train.validation == 0.0:
            self.ctx.err("E603", "`patience` (early stopping) needs validation data", at("patience"),
                         "add `validation = 0.2` or a validation data source")
        if train.restore_best and train.validation == 0.0:
            self.ctx.err("E603", "`restore_best` keeps the epoch with the lowest validation loss: it needs "
                         "validation data", at("restore_best"), "add `validation = 0.2` or a validation data source")
        self.check_class_weight(train.class_weight, loss, out, at("class_weight"))
        for key in ("data", "validation"):
            src = getattr(train, key)
            if isinstance(src, DataSource) and src.kind in ("csv", "images"):
                self.check_source_fits(src, model, at(key))
        data = train.data
        if data is not None and data.kind == "dataset":
            name = data.args["name"]
            shape, dtype, classes = BUILTIN_DATASETS[name]
            inputs = model.inputs
            inp = inputs[0] if len(inputs) == 1 else None
            where = at("data")
            if inp is not None and numel(shape) != numel(inp.shape):
                self.ctx.err("E605", f'dataset("{name}") has examples of shape {fmt_shape(shape)}, '
                             f"the input `{inp.name}` takes {fmt_shape(inp.shape)}", where,
                             f"declare `input {inp.name}: {fmt_shape(shape)}`")
            elif len(inputs) > 1:
                self.ctx.err("E605", f'dataset("{name}") has one input, the model has {len(inputs)}',
                             where, "train a multi-input model from an npz file")
            if classes is not None and loss == "cross_entropy" and out[-1] != classes:
                self.ctx.err("E606", f'dataset("{name}") has {classes} classes, the output has '
                             f"{out[-1]} units", where, f"end the model with `dense({classes}) -> softmax`")
            if classes is None and loss in CLASSIFICATION_LOSSES:
                self.ctx.err("E606", f'dataset("{name}") is a regression task; {loss} needs classes',
                             at("loss"), "use `loss = mse`")

    def check_class_weight(self, weights, loss: str, out, span: SourceSpan | None) -> None:
        """E610: `class_weight` with a loss that has no classes, or a list of another length."""
        if weights is None:
            return
        if loss not in CLASSIFICATION_LOSSES:
            self.ctx.err("E610", f"`class_weight` weights the classes of a classification loss; `{loss}` has no "
                         "classes", span, "use cross_entropy or binary_cross_entropy, or remove `class_weight`")
            return
        classes = out[-1] if loss == "cross_entropy" else 2
        if isinstance(weights, list) and len(weights) != classes:
            what = (f"the output has {classes} classes" if loss == "cross_entropy"
                    else "binary_cross_entropy has 2 classes (targets 0 and 1)")
            self.ctx.err("E610", f"`class_weight` has {len(weights)} weight{'s' if len(weights) != 1 else ''}, but "
                         f"{what}", span, f"give one weight per class ({classes}), in class-id order, or "
                         "`class_weight = balanced`")

    def check_source_fits(self, src: DataSource, model: ModelIR, span: SourceSpan | None) -> None:
        """A text column or an image folder fixes the input's shape and dtype (E605) and, for text,
        the token ids an embedding must take (E609), without reading any data."""
        args = src.args
        inputs = model.inputs
        shown = f'csv(text="{args.get("text")}")' if src.kind == "csv" else f'images("{args.get("folder")}")'
        if len(inputs) != 1:
            self.ctx.err("E605", f"{shown} feeds one input, the model has {len(inputs)}", span,
                         "train a multi-input model from Python")
            return
        inp = inputs[0]
        if src.kind == "images":
            channels, (h, w) = IMAGE_CHANNELS[args["color"]], args["size"]
            shape = (channels, h, w)
            if inp.dtype != "float32" or numel(shape) != numel(inp.shape):
                self.ctx.err("E605", f'{shown} gives {args["color"]} images of shape {fmt_shape(shape)}, the input '
                             f"`{inp.name}` takes {_typed(inp)}", span,
                             f"declare `input {inp.name}: {fmt_shape(shape)}`, or change `size`/`color`")
            return
        if args.get("text") is None:
            return
        length, vocab = args["length"], args["vocab"]
        if inp.dtype != "int64" or list(inp.shape) != [length]:
            self.ctx.err("E605", f"{shown} gives int64 token ids of shape [{length}] (`length`), the input "
                         f"`{inp.name}` takes {inp.dtype} {fmt_shape(inp.shape)}", span,
                         f"declare `input {inp.name}: int64 [{length}]`")
            return
        for node in embeddings_reading(model.nodes, inp.name):
            if node.attrs["vocab"] < vocab:
                line = f" (line {node.span.line})" if node.span is not None else ""
                self.ctx.err("E609", f"{shown} has a vocabulary of {vocab} ids (`vocab`), but `{node.id}`{line} "
                             f"takes ids below {node.attrs['vocab']}", span,
                             f"use `embedding({vocab}, ...)`, or `vocab={node.attrs['vocab']}` in the source")

    def check_loss_activation(self, loss: str, model: ModelIR, span: SourceSpan | None) -> None:
        """W601: a classification loss after the other one's output activation trains, but on the
        wrong quantity: the output is taken as logits, so `cross_entropy` applies softmax to a
        sigmoid's outputs (and `binary_cross_entropy` sigmoid to a softmax's)."""
        if loss not in _OTHER_LOSS:
            return
        other, other_for = _OTHER_LOSS[loss]
        fits, wrong = FUSED_ACTIVATION[loss], FUSED_ACTIVATION[other]
        last = next((n for n in model.nodes if n.id == model.outputs[0].source), None)
        if last is None or last.op != wrong:
            return
        self.ctx.warn("W601", f"{loss} after `{wrong}`: the loss takes the {wrong}'s outputs as logits and "
                      f"applies {fits} to them", span,
                      f"end the model with `{fits}` for {loss}, or use `loss = {other}` ({other_for})")

