"""The IR as the lowering builds it: plain dataclasses that mirror :mod:`nnc.compiler.ir` field for
field, in the same order, with the same defaults (``tests/test_lowering.py`` fails if they drift).

``nnc check`` lowers into these and never imports pydantic; each class's ``to_dict`` gives the
plain nested dict that ``check_source`` returns, which ``ir.Program.model_validate`` validates into
the pydantic IR (``--emit ir``, ``nnc schema``, every later stage). Spans are
:class:`~nnc.errors.SourceSpan` here and ``ir.Span`` there.

NOTE: ``to_dict`` is written out per class rather than derived with ``dataclasses.asdict`` or a loop
over the fields: it runs for every node of a 100,000-layer spec, and a dict display is several
times faster. The test that the keys are the fields, in order, keeps them honest.

The op catalogue describes the arrays a layer owns with :class:`Weight` itself (``OpDef.weights``),
so a weight has one representation from the catalogue to the IR.
"""
from __future__ import annotations

from ..errors import SourceSpan
from ..record import field, record

TYPE_CHECKING = False  # typing's constant, without importing typing (`nnc check` never does)
if TYPE_CHECKING:
    from typing import Any, Optional, Union

IR_VERSION = 2  # 2: nodes know the block use they came from (Node.block, ModelIR.blocks)


def _span(span: SourceSpan | None) -> dict | None:
    return span.as_dict() if span is not None else None


# NOTE: keyword-only (ir.py puts some defaulted fields before required ones), slotted, and without a
# generated __eq__ (nothing compares IR objects; each generated method costs `nnc check` start-up)
_ir = record(kw_only=True, slots=True, eq=False)  # (see nnc.record)


@_ir
class Weight:
    """One array a layer owns, named and laid out as PyTorch does: ``<layer>.<name>`` in a weights file."""

    name: str
    shape: list[int]
    trainable: bool = True     # batchnorm's running statistics are state, not parameters
    init: dict[str, Any]       # a normalised initializer value, e.g. {"kind": "glorot_uniform"}
    blocks: int = 1            # recurrent weights: gates initialised block by block

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": self.shape, "trainable": self.trainable, "init": self.init,
                "blocks": self.blocks}


@_ir
class Input:
    name: str
    shape: list[int]
    dtype: str = "float32"
    span: SourceSpan

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": self.shape, "dtype": self.dtype, "span": self.span.as_dict()}


@_ir
class Node:
    """One stage of the dataflow graph (see ``ir.Node``)."""

    id: str
    op: str
    inputs: list[str]
    attrs: dict[str, Any]
    shape: list[int]
    dtype: str = "float32"
    weights: list[Weight] = field(default_factory=list)
    params: int = 0
    flops: int = 0
    span: SourceSpan
    block: Optional[str] = None  # the id of the block use it was expanded from (innermost), if any

    def to_dict(self) -> dict:
        return {"id": self.id, "op": self.op, "inputs": self.inputs, "attrs": self.attrs, "shape": self.shape,
                "dtype": self.dtype, "weights": [w.to_dict() for w in self.weights], "params": self.params,
                "flops": self.flops, "span": self.span.as_dict(), "block": self.block}


@_ir
class BlockUse:
    """One use of a ``block``: the prefix of its layers' names (see ``ir.BlockUse``)."""

    id: str
    block: str
    args: dict[str, Any]
    parent: Optional[str] = None
    span: SourceSpan

    def to_dict(self) -> dict:
        return {"id": self.id, "block": self.block, "args": self.args, "parent": self.parent,
                "span": self.span.as_dict()}


@_ir
class Output:
    name: str
    source: str
    shape: list[int]
    dtype: str = "float32"

    def to_dict(self) -> dict:
        return {"name": self.name, "source": self.source, "shape": self.shape, "dtype": self.dtype}


@_ir
class Assertion:
    quantity: str
    op: str
    expected: Any
    actual: Any
    span: SourceSpan

    def to_dict(self) -> dict:
        return {"quantity": self.quantity, "op": self.op, "expected": self.expected, "actual": self.actual,
                "span": self.span.as_dict()}


@_ir
class DataSource:
    kind: str
    args: dict[str, Any]
    span: Optional[SourceSpan] = None

    def to_dict(self) -> dict:
        return {"kind": self.kind, "args": self.args, "span": _span(self.span)}


@_ir
class TrainSpec:
    data: Optional[DataSource] = None
    validation: Union[float, DataSource] = 0.0
    loss: dict[str, Any]
    optimizer: dict[str, Any]
    schedule: dict[str, Any]
    epochs: int = 10
    batch_size: int = 32
    seed: int = 0
    shuffle: bool = True
    metrics: list[str]
    patience: Optional[int] = None
    clip_norm: Optional[float] = None
    dtype: str = "float32"
    class_weight: Union[str, list, None] = None
    restore_best: bool = False
    span: Optional[SourceSpan] = None

    def to_dict(self) -> dict:
        return {"data": self.data.to_dict() if self.data is not None else None,
                "validation": self.validation.to_dict() if isinstance(self.validation, DataSource)
                else self.validation,
                "loss": self.loss, "optimizer": self.optimizer, "schedule": self.schedule, "epochs": self.epochs,
                "batch_size": self.batch_size, "seed": self.seed, "shuffle": self.shuffle,
                "metrics": self.metrics, "patience": self.patience, "clip_norm": self.clip_norm,
                "dtype": self.dtype, "class_weight": self.class_weight, "restore_best": self.restore_best,
                "span": _span(self.span)}


@_ir
class ModelIR:
    name: str
    inputs: list[Input]
    nodes: list[Node]
    outputs: list[Output]
    params: int
    state: int
    flops: int
    assertions: list[Assertion] = field(default_factory=list)
    blocks: list[BlockUse] = field(default_factory=list)
    span: SourceSpan

    def to_dict(self) -> dict:
        return {"name": self.name, "inputs": [i.to_dict() for i in self.inputs],
                "nodes": [n.to_dict() for n in self.nodes], "outputs": [o.to_dict() for o in self.outputs],
                "params": self.params, "state": self.state, "flops": self.flops,
                "assertions": [a.to_dict() for a in self.assertions],
                "blocks": [b.to_dict() for b in self.blocks], "span": self.span.as_dict()}


@_ir
class Program:
    ir_version: int = IR_VERSION
    path: Optional[str] = None
    source: Optional[str] = None
    constants: dict[str, Any] = field(default_factory=dict)
    model: ModelIR
    train: Optional[TrainSpec] = None
    seed: int = 0

    def to_dict(self) -> dict:
        return {"ir_version": self.ir_version, "path": self.path, "source": self.source,
                "constants": self.constants, "model": self.model.to_dict(),
                "train": self.train.to_dict() if self.train is not None else None, "seed": self.seed}


IR_TYPES = (Weight, Input, Node, BlockUse, Output, Assertion, DataSource, TrainSpec, ModelIR, Program)
