"""The IR: pydantic models of a validated, shape-inferred nnspec program.

A :class:`Program` is what every later stage reads: the NumPy runtime builds and trains it, the
ONNX exporter emits it, ``nnc summary`` tabulates it and ``nnc compile --emit ir`` prints it as
JSON. Every node carries the span of the source it came from. Shapes exclude the batch axis.

Ops are one tagged node type (:class:`Node`, ``op`` is the tag) whose ``attrs`` are the op
catalogue's bound and normalised parameters (``nnc.compiler.ops``); ``nnc schema`` publishes
the per-op attribute schemas as a discriminated union generated from that same catalogue.

The lowering builds the plain dataclasses of :mod:`nnc.compiler.irtypes` (no pydantic on the path
of ``nnc check``), one per model here with the same fields, order and defaults; these models
validate their dict. ``tests/test_lowering.py`` fails if the two drift apart.
"""
from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, PrivateAttr

from .irtypes import IR_VERSION

__all__ = ["IR_VERSION", "DType", "Span", "Weight", "Input", "Node", "Output", "Assertion", "DataSource",
           "TrainSpec", "ModelIR", "Program"]
DType = Literal["float32", "int64"]


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class Span(_Base):
    line: int
    column: int
    end_line: int
    end_column: int


class Weight(_Base):
    """One array a layer owns: ``<layer>.<name>`` in a weights file."""

    name: str
    shape: list[int]
    trainable: bool = True
    init: dict[str, Any]
    blocks: int = 1


class Input(_Base):
    name: str
    shape: list[int]
    dtype: DType = "float32"
    span: Span


class Node(_Base):
    """One stage of the dataflow graph."""

    id: str                       # unique; the layer name for ops with weights (dense_1, ...)
    op: str                       # the op catalogue's name: the discriminating tag
    inputs: list[str]             # ids of nodes or names of inputs, in order
    attrs: dict[str, Any]         # bound, normalised parameters (+ derived: pads, overhang, axis)
    shape: list[int]              # output shape per example
    dtype: DType = "float32"
    weights: list[Weight] = []    # in the weights contract's order
    params: int = 0               # trainable parameters
    flops: int = 0                # per example: 2 x multiply-adds of dense, conv, recurrent
    span: Span
    block: Optional[str] = None   # the block use it was expanded from (innermost; see ModelIR.blocks)


class BlockUse(_Base):
    """One use of a ``block``: its layers are named ``<id>.<inner>``; nested uses name a parent."""

    id: str                       # the use's full name: `basic_1`, `stage2`, `stage2.unit_1`
    block: str                    # the block's name
    args: dict[str, Any]          # every parameter: its constant value, or the value it was passed
    parent: Optional[str] = None  # the enclosing use's id
    span: Span


class Output(_Base):
    name: str                     # the output value's name (ONNX output name)
    source: str                   # node id (or input name) that produces it
    shape: list[int]
    dtype: DType = "float32"


class Assertion(_Base):
    quantity: str                 # params | flops | output | shape(NAME)
    op: str
    expected: Any
    actual: Any
    span: Span


class DataSource(_Base):
    kind: Literal["dataset", "csv", "npz", "images"]
    args: dict[str, Any]
    span: Optional[Span] = None


class TrainSpec(_Base):
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
    dtype: Literal["float32", "float64"] = "float32"
    class_weight: Union[Literal["balanced"], list[float], None] = None
    restore_best: bool = False
    span: Optional[Span] = None


class ModelIR(_Base):
    name: str
    inputs: list[Input]
    nodes: list[Node]
    outputs: list[Output]
    params: int                   # trainable parameters
    state: int                    # non-trainable values (batchnorm running statistics)
    flops: int
    assertions: list[Assertion] = []
    blocks: list[BlockUse] = []   # block uses in expansion order
    span: Span
    _index: Optional[dict] = PrivateAttr(default=None)

    def node(self, node_id: str) -> Node:
        if self._index is None:
            self._index = {n.id: n for n in self.nodes}
        return self._index[node_id]

    def embeddings_reading(self, value: str) -> list["Node"]:
        """The embeddings that read the value ``value`` (an input name or node id), directly or through
        ops that pass its values on unchanged (``OpDef.passes_values``): where token ids end up."""
        from .ops import embeddings_reading
        return embeddings_reading(self.nodes, value)

    def shape_of(self, name: str) -> list[int]:
        for inp in self.inputs:
            if inp.name == name:
                return inp.shape
        return self.node(name).shape


class Program(_Base):
    ir_version: int = IR_VERSION
    path: Optional[str] = None
    source: Optional[str] = None
    constants: dict[str, Any] = {}
    model: ModelIR
    train: Optional[TrainSpec] = None
    seed: int = 0                  # the train block's seed (or 0): initialisation uses it
    # warnings of the compiler (errors.Diagnostic, severity "warning"); not part of the IR's JSON
    _warnings: list = PrivateAttr(default_factory=list)

    @property
    def warnings(self) -> list:
        return self._warnings

    @warnings.setter
    def warnings(self, value: list) -> None:
        self._warnings = list(value)

    def ir_json(self, indent: int | None = 2) -> str:
        """The IR as JSON (``nnc compile --emit ir``); the source text is left out."""
        return self.model_dump_json(indent=indent, exclude={"source"})
