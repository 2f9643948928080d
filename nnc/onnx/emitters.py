"""IR + weights -> ONNX ``ModelProto``: one emitter per op of the catalogue.

Every op of ``nnc.compiler.ops.OPS`` has an emitter in :data:`EMITTERS`, registered under the same
name (``tests/test_catalogue.py`` walks the catalogue). An emitter receives an :class:`Emit` for one
IR node: its input value names, its weights (the contract's PyTorch layouts, section 4.1 of the
language reference) and the target opset; it adds ONNX nodes and initializers and returns the name
of the value that holds the node's result.

Conventions of the exported graph (section 7 of the language reference):

- graph inputs are the spec's inputs (``int64`` for token inputs), graph outputs the IR's outputs
  by name; every tensor's first axis is the symbolic batch dimension ``N``;
- a node's result is the value named after its IR node (``dense_1``), or after the output it
  feeds; a one-node emitter names its node after the IR node, a multi-node one ``<id>/<OpType>``;
- initializers are ``<layer>.<param>`` in the contract's layout (embedded, or in an external data
  file for models over protobuf's 2 GiB limit: ``build_model(external=...)``); arrays that ONNX
  needs in another layout get a derived name and say so in their ``doc_string`` (``dense_1.weight_t``,
  ``lstm_1.W`` / ``.R`` / ``.B`` with the gate blocks reordered); small constants are
  ``<node>.<what>`` (``reshape_1.shape``);
- inference semantics: dropout, identity and linear are elided (an Identity node is added only
  where such a value is a graph output), batchnorm uses the running statistics and is folded into
  the conv2d / conv1d / dense on (N, F) whose result only it reads (``<layer>.weight_bn`` /
  ``.bias_bn``, :func:`batchnorm_folds`); normalize is Sub + Mul by ``<layer>.inv_std``;
- forms chosen for onnxruntime's CPU kernels: a sum that only layernorms read is a ``Sum`` (an
  ``Add`` there becomes onnxruntime's slower SkipLayerNormalization);
- the graph's ``value_info`` holds the shape of a result only where the emitter sets
  ``Emit.declare_shape`` (ONNX shape inference would lose the symbolic batch dimension there:
  Resize).

Opsets: :data:`MIN_OPSET` (11) up to whatever the onnx package knows; the exporter picks the best
form per opset (``LayerNormalization`` from 17 and a decomposition before it; ``Gelu`` from 20 and
``Erf`` arithmetic before; ``ReduceMean`` / ``ReduceMax`` axes as an attribute before 18, an input
from 18, ``ReduceSum``'s and ``Squeeze``'s from 13). An op whose semantics an opset cannot express (softmax over a
non-last axis before 13: the old ``Softmax`` flattens to 2-D) is an E801 error naming it.

This module imports onnx only when a model is built, and is never imported by ``nnc check``. It
reads the IR only: the runtime (which supplies default weights and verifies) is ``nnc.onnx.export``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import numpy as np

from ..errors import Diagnostic, NncError, SourceSpan
from ..compiler.ir import ModelIR, Node, Program
from ..compiler.ops import readers_of

MIN_OPSET = 11          # the oldest opset nnc exports (every op but softmax over a non-last axis)
BATCH = "N"             # the symbolic batch dimension of every input and output
EXTERNAL_MIN_BYTES = 1024   # with external data, smaller initializers (shapes, axes, scalars) stay inline
EXTERNAL_ALIGN = 4096       # external tensors start at page boundaries (onnxruntime can map them)
SKELETON_DATA = "<left out for shape inference>"    # the location in a skeleton (no such file)

EMITTERS: dict[str, Callable[["Emit"], str]] = {}


def emitter(*names: str, min_opset: Callable[[Node], int] | None = None):
    """Register ``fn(e: Emit) -> result value name`` under each op name.

    ``min_opset(node)`` is the oldest opset that can express that node (default :data:`MIN_OPSET`).
    """
    def deco(fn):
        fn.min_opset = min_opset or (lambda node: MIN_OPSET)
        for name in names:
            EMITTERS[name] = fn
        return fn
    return deco


def required_opset(node: Node) -> int:
    return EMITTERS[node.op].min_opset(node)


def max_known_opset() -> int:
    """The newest opset of the installed onnx package."""
    import onnx.defs
    return onnx.defs.onnx_opset_version()


def check_opset(model: ModelIR, opset: int, max_opset: int | None = None, why_max: str = "") -> None:
    """Raise E802 if ``opset`` is outside [MIN_OPSET, max_opset], E801 if some node needs more."""
    top = max_opset if max_opset is not None else max_known_opset()
    if not MIN_OPSET <= opset <= top:
        raise NncError.single(
            "E802", f"opset {opset} is not supported: nnc exports opsets {MIN_OPSET} to {top}{why_max}",
            hint=f"use --opset between {MIN_OPSET} and {top}, or leave it out for {top}")
    needs = [(n, required_opset(n)) for n in model.nodes]
    bad = [(n, v) for n, v in needs if v > opset]
    if bad:
        least = max(v for _, v in bad)
        hint = f"use --opset {least} or newer (the default is the newest that onnxruntime supports)"
        raise NncError([Diagnostic("E801", f"opset {opset} cannot express {n.id} ({_describe(n)}): it needs "
                                   f"opset {v}", SourceSpan(n.span.line, n.span.column, n.span.end_line,
                                                             n.span.end_column), hint)
                        for n, v in bad])


def _describe(node: Node) -> str:
    if node.op in ("softmax", "log_softmax"):
        return f"{node.op} over axis {node.attrs['axis']} of {list(node.shape)}"
    return node.op


# ----------------------------------------------------------------------------------------------
# the builder: collects nodes and initializers with unique names

class _Builder:
    def __init__(self, opset: int):
        import onnx
        from onnx import helper, numpy_helper
        self.onnx, self.helper, self.numpy_helper = onnx, helper, numpy_helper
        self.opset = opset
        self.nodes: list = []
        self.initializers: list[tuple[str, np.ndarray, str | None]] = []   # (name, array, doc)
        self.names: set[str] = set()          # every value and initializer name in use
        self.node_names: set[str] = set()

    def reserve(self, name: str) -> str:
        self.names.add(name)
        return name

    def fresh(self, base: str) -> str:
        """A value name not used yet: ``base``, else ``base_2``, ``base_3``, ..."""
        name, k = base, 1
        while name in self.names:
            k += 1
            name = f"{base}_{k}"
        return self.reserve(name)

    def node_name(self, base: str) -> str:
        name, k = base, 1
        while name in self.node_names:
            k += 1
            name = f"{base}_{k}"
        self.node_names.add(name)
        return name

    def initializer(self, name: str, array: np.ndarray, doc: str | None = None) -> str:
        """Reserve an initializer; its TensorProto is made by :meth:`tensors` once every array is
        known (so that large ones can go to external data instead of into the proto)."""
        name = self.fresh(name)
        arr = np.asarray(array)
        # NOTE: np.ascontiguousarray makes a 0-d array 1-d; a scalar stays a scalar (Gather's index)
        self.initializers.append((name, np.ascontiguousarray(arr) if arr.ndim else arr.copy(), doc))
        return name

    def add_initializers(self, into, external: str | None) -> list[tuple[int, np.ndarray]]:
        """Add the initializers to ``into`` (a graph's ``initializer`` field, filled in place: a
        copy of a multi-GB message is slow) and return the arrays that go to external data.

        ``external`` None: every array is embedded (``raw_data``). Otherwise it is the data file's
        name relative to the model, and every array of at least :data:`EXTERNAL_MIN_BYTES` is stored
        there instead: the proto keeps its name, type and dims plus ``location`` / ``offset`` /
        ``length``, and the result lists ``(offset, little-endian array)`` in file order, each
        offset a multiple of :data:`EXTERNAL_ALIGN`. No proto ever holds those bytes, so no proto
        comes near protobuf's 2 GiB limit.
        """
        TensorProto = self.onnx.TensorProto
        blobs: list[tuple[int, np.ndarray]] = []
        end = 0
        for name, arr, doc in self.initializers:
            le = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
            t = into.add()
            t.name = name
            t.data_type = self.helper.np_dtype_to_tensor_dtype(arr.dtype)
            t.dims.extend(arr.shape)
            if external is None or le.nbytes < EXTERNAL_MIN_BYTES:
                t.raw_data = le.tobytes()
            else:
                offset = -(-end // EXTERNAL_ALIGN) * EXTERNAL_ALIGN
                t.data_location = TensorProto.EXTERNAL
                for key, value in (("location", external), ("offset", offset), ("length", le.nbytes)):
                    entry = t.external_data.add()
                    entry.key, entry.value = key, str(value)
                blobs.append((offset, le))
                end = offset + le.nbytes
            if doc:
                t.doc_string = doc
        return blobs


class Emit:
    """What an emitter sees of one IR node, and how it adds ONNX nodes.

    ``x`` / ``xs``: input value names; ``in_shapes``: their per-example shapes; ``w``: the node's
    weights by contract name (PyTorch layouts); ``attrs``: the catalogue's normalised attributes.
    """

    def __init__(self, b: _Builder, node: Node, xs: list[str], in_shapes: list[list[int]],
                 w: dict[str, np.ndarray]):
        self.b, self.node, self.xs, self.in_shapes, self.w = b, node, xs, in_shapes, w
        self.x = xs[0]
        self.attrs = node.attrs
        self.opset = b.opset
        self.created: list = []     # the ONNX nodes this emitter added
        # NOTE: the batchnorm node (and its weights) that reads only this node's result, folded
        # into this node's weights (:func:`batchnorm_folds`); None otherwise
        self.fold: tuple[Node, dict[str, np.ndarray]] | None = None
        self.readers: list[Node] = []   # the IR nodes that read this node's result (not outputs)
        # NOTE: set by an emitter whose ONNX op loses the symbolic batch dimension in shape
        # inference (Resize scales it by 1.0 into an unknown): the result's shape [N, *node.shape]
        # is then written into the graph's value_info, which inference merges with its own
        self.declare_shape = False

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, skip: tuple[int, ...] = (), **attrs):
        """Add one ONNX node; returns its output name (or names if ``n_out`` > 1). Outputs whose
        index is in ``skip`` are left unnamed (optional outputs not computed)."""
        outs = ["" if i in skip else self.b.fresh(f"{self.node.id}/{op_type}") for i in range(n_out)]
        node = self.b.helper.make_node(op_type, inputs, outs, **attrs)
        self.created.append(node)
        return outs[0] if n_out == 1 else outs

    def param(self, key: str, array: np.ndarray | None = None, doc: str | None = None) -> str:
        """An initializer ``<layer>.<key>``: the contract's weight ``key``, or a derived array."""
        arr = self.w[key] if array is None else array
        return self.b.initializer(f"{self.node.id}.{key}", np.asarray(arr, dtype=np.float32), doc)

    def const(self, what: str, value, dtype=np.int64) -> str:
        return self.b.initializer(f"{self.node.id}.{what}", np.asarray(value, dtype=dtype))

    def scalar(self, what: str, value: float) -> str:
        return self.const(what, np.float32(value), np.float32)

    # -- helpers whose form depends on the opset

    def squeeze(self, x: str, axes: list[int]) -> str:
        if self.opset >= 13:
            return self.op("Squeeze", [x, self.const("axes", axes)])
        return self.op("Squeeze", [x], axes=axes)

    def reduce(self, op_type: str, x: str, axes: list[int], keepdims: int) -> str:
        """``ReduceMean`` / ``ReduceMax`` / ``ReduceSum`` over ``axes`` (ONNX axes, batch = 0): the
        axes are an input from opset 13 for ReduceSum, from 18 for the others; an attribute before."""
        if self.opset >= (13 if op_type == "ReduceSum" else 18):
            return self.op(op_type, [x, self.const("axes", axes)], keepdims=keepdims)
        return self.op(op_type, [x], axes=axes, keepdims=keepdims)

    def reduce_mean(self, x: str, axes: list[int], keepdims: int) -> str:
        return self.reduce("ReduceMean", x, axes, keepdims)


# ----------------------------------------------------------------------------------------------
# batchnorm folded into the layer before it (inference)

#: ops whose output channel is the first axis of their weight and of their result (per example):
#: a batchnorm reading only their result folds into their weight and bias. dense only on (N, F).
FOLDS_BATCHNORM = ("conv2d", "conv1d", "dense")


def batchnorm_folds(model: ModelIR, readers: dict[str, list[Node]]) -> dict[str, Node]:
    """Layer id -> the batchnorm node folded into it: a batchnorm whose input is a conv2d / conv1d
    (any groups) or a dense on (N, F), when nothing else reads that layer's result (not another
    node, not a graph output). At inference the batchnorm is an affine map per output channel,
    y = (z - mean) * gamma / sqrt(var + eps) + beta, so z = W x + b followed by it is one layer with
    W' = W * s (per output channel, s = gamma / sqrt(var + eps)) and b' = (b - mean) * s + beta.
    ``readers``: :func:`~nnc.compiler.ops.readers_of` of the model's nodes."""
    outputs = {o.source for o in model.outputs}
    folds: dict[str, Node] = {}
    for src in model.nodes:
        rs = readers.get(src.id, [])
        if (src.op in FOLDS_BATCHNORM and len(rs) == 1 and rs[0].op == "batchnorm" and src.id not in outputs
                and (src.op != "dense" or len(model.shape_of(src.inputs[0])) == 1)):
            folds[src.id] = rs[0]
    return folds


def _weight_and_bias(e: Emit) -> list[str]:
    """The initializers of a layer's weight [out, ...] and bias [out] (none without a bias): the
    contract's, or with the batchnorm of ``e.fold`` folded in (float64 arithmetic, stored as
    float32), named ``<layer>.weight_bn`` / ``<layer>.bias_bn``."""
    if e.fold is None:
        return [e.param("weight")] + ([e.param("bias")] if e.attrs["bias"] else [])
    bn, bw = e.fold
    scale = bw["weight"].astype(np.float64) / np.sqrt(bw["running_var"].astype(np.float64) + float(bn.attrs["eps"]))
    w = e.w["weight"].astype(np.float64)
    b = e.w["bias"].astype(np.float64) if e.attrs["bias"] else np.zeros(w.shape[0])
    lid = e.node.id
    return [e.param("weight_bn", w * scale.reshape(-1, *[1] * (w.ndim - 1)),
                    doc=f"{lid}.weight with {bn.id} folded in: times {bn.id}.weight / sqrt({bn.id}.running_var + eps) "
                        "per output channel"),
            e.param("bias_bn", (b - bw["running_mean"].astype(np.float64)) * scale + bw["bias"].astype(np.float64),
                    doc=f"({lid}.bias - {bn.id}.running_mean) * {bn.id}.weight / sqrt({bn.id}.running_var + eps) "
                        f"+ {bn.id}.bias" if e.attrs["bias"] else
                        f"-{bn.id}.running_mean * {bn.id}.weight / sqrt({bn.id}.running_var + eps) + {bn.id}.bias "
                        f"({lid} has no bias of its own)")]


# ----------------------------------------------------------------------------------------------
# emitters: layers

@emitter("dense")
def _dense(e: Emit) -> str:
    """x: (N, F) -> Gemm(x, weight [units, F], bias, transB=1);
    x: (N, T, F) -> MatMul(x, weight^T [F, units]) + bias, applied at every time step."""
    if len(e.in_shapes[0]) == 1:
        return e.op("Gemm", [e.x, *_weight_and_bias(e)], transB=1)
    bias = [e.param("bias")] if e.attrs["bias"] else []
    wt = e.param("weight_t", e.w["weight"].T,
                 doc=f"{e.node.id}.weight transposed to [F, units] for MatMul")
    y = e.op("MatMul", [e.x, wt])
    return e.op("Add", [y, bias[0]]) if bias else y


@emitter("conv2d", "conv1d")
def _conv(e: Emit) -> str:
    """x: (N, C, H, W) or (N, C, L); weight [filters, C/groups, k...]; pads in ONNX order (explicit,
    so `same` with an odd total pads the end, as SAME_UPPER); `group` as PyTorch's groups."""
    a = e.attrs
    ins = [e.x, *_weight_and_bias(e)]
    return e.op("Conv", ins, kernel_shape=list(a["kernel"]), strides=list(a["stride"]),
                dilations=list(a["dilation"]), pads=list(a["pads"]), group=int(a["groups"]))


@emitter("conv2d_transpose")
def _conv_transpose(e: Emit) -> str:
    """x: (N, C, H, W); weight [C, filters/groups, kh, kw] (ONNX's layout too); explicit pads and
    output_padding, so the output size is PyTorch's and no `output_shape` is needed.

    PyTorch allows an output_padding up to the dilation; onnxruntime only below the stride. Such
    an axis is written another way with the same values: the output_padding rows are the uncropped
    output's rows after the end padding, so the end padding shrinks by them (`pads` end
    = padding - output_padding); whatever is left past the uncropped output is zeros plus the bias,
    a Pad after a ConvTranspose without bias, then the bias added."""
    a = e.attrs
    stride, pads, out_pad = list(a["stride"]), list(a["pads"]), list(a["output_padding"])
    attrs = dict(kernel_shape=list(a["kernel"]), strides=stride, dilations=list(a["dilation"]),
                 group=int(a["groups"]))
    weight = e.param("weight")
    bias = [e.param("bias")] if a["bias"] else []
    if all(p < s for p, s in zip(out_pad, stride)):
        return e.op("ConvTranspose", [e.x, weight, *bias], pads=pads, output_padding=out_pad, **attrs)
    begin = pads[:2]
    end = [max(p - o, 0) for p, o in zip(begin, out_pad)]
    extra = [max(o - p, 0) for p, o in zip(begin, out_pad)]
    if all(x < s for x, s in zip(extra, stride)):
        return e.op("ConvTranspose", [e.x, weight, *bias], pads=begin + end, output_padding=extra, **attrs)
    y = e.op("ConvTranspose", [e.x, weight], pads=begin + end, **attrs)
    y = e.op("Pad", [y, e.const("pads", [0, 0, 0, 0, 0, 0, *extra])], mode="constant")
    if not a["bias"]:
        return y
    b = e.param("bias_3d", e.w["bias"].reshape(-1, 1, 1), doc=f"{e.node.id}.bias as [filters, 1, 1] for Add")
    return e.op("Add", [y, b])


@emitter("upsample2d")
def _upsample(e: Emit) -> str:
    """x: (N, C, H, W) -> Resize by scales [1, 1, sh, sw]. nearest: `asymmetric` coordinates with
    `floor` (source index = floor(dst / s), PyTorch's nearest); bilinear: `linear` with
    `half_pixel` (PyTorch's align_corners=False; ONNX clamps the source coordinate to the input as
    PyTorch does). Before opset 13 `roi` is a required input: an empty one. ONNX shape inference
    turns the batch dimension times scale 1 into an unknown: the result's shape is declared."""
    a = e.attrs
    e.declare_shape = True
    scales = e.const("scales", [1.0, 1.0, *map(float, a["scale"])], np.float32)
    roi = e.const("roi", np.zeros(0, np.float32), np.float32) if e.opset < 13 else ""
    if a["mode"] == "nearest":
        return e.op("Resize", [e.x, roi, scales], mode="nearest", coordinate_transformation_mode="asymmetric",
                    nearest_mode="floor")
    return e.op("Resize", [e.x, roi, scales], mode="linear", coordinate_transformation_mode="half_pixel")


@emitter("maxpool2d", "maxpool1d")
def _maxpool(e: Emit) -> str:
    """x: (N, C, H, W) or (N, C, L); padding never wins (ONNX pads MaxPool with -inf).

    ceil_mode only matters where the last window reaches past the padded end (``overhang``; a
    window PyTorch drops because it would start in the end padding never does, so ONNX's rule of
    every opset gives PyTorch's size): ``ceil_mode=1``. A window larger than the whole padded
    input is the exception (ONNX truncates where PyTorch floors): there the end pads grow by the
    overhang instead, the same windows in floor mode."""
    a, nd = e.attrs, len(e.attrs["size"])
    window = {"kernel_shape": list(a["size"]), "strides": list(a["stride"])}
    pads = list(a["pads"])
    if any(a["overhang"]):
        fits = all(e.in_shapes[0][1 + i] + pads[i] + pads[nd + i] >= a["size"][i] for i in range(nd))
        if fits:
            return e.op("MaxPool", [e.x], pads=pads, ceil_mode=1, **window)
        pads = pads[:nd] + [p + o for p, o in zip(pads[nd:], a["overhang"])]
    return e.op("MaxPool", [e.x], pads=pads, **window)


@emitter("avgpool2d", "avgpool1d")
def _avgpool(e: Emit) -> str:
    """x: (N, C, H, W) or (N, C, L); padded zeros count in the average (count_include_pad=1, as
    PyTorch). With ceil_mode windows that reach past the padded end, PyTorch divides those by their
    cells inside the padded input, but older onnxruntime releases divided them by the kernel size
    (onnxruntime issue 16203, onnx issue 5276): so the export spells it out, the padding as an
    explicit zero Pad, then an AveragePool whose only (end) pads are the overhang, with
    count_include_pad=0 (floor mode, the same windows)."""
    a, nd = e.attrs, len(e.attrs["size"])
    window = {"kernel_shape": list(a["size"]), "strides": list(a["stride"])}
    if not any(a["overhang"]):
        return e.op("AveragePool", [e.x], pads=list(a["pads"]), count_include_pad=1, **window)
    x = e.x
    if any(a["pads"]):
        pads = [0, 0, *a["pads"][:nd], 0, 0, *a["pads"][nd:]]
        x = e.op("Pad", [x, e.const("pads", pads)], mode="constant")
    return e.op("AveragePool", [x], pads=[0] * nd + list(a["overhang"]), count_include_pad=0, **window)


@emitter("globalavgpool2d", "globalavgpool1d")
def _gap(e: Emit) -> str:
    """x: (N, C, H, W) or (N, C, L) -> (N, C): one ReduceMean over the spatial axes."""
    return e.reduce_mean(e.x, list(range(2, len(e.in_shapes[0]) + 1)), keepdims=0)


@emitter("globalmaxpool2d", "globalmaxpool1d")
def _gmp(e: Emit) -> str:
    """x: (N, C, H, W) or (N, C, L) -> (N, C): one ReduceMax over the spatial axes."""
    return e.reduce("ReduceMax", e.x, list(range(2, len(e.in_shapes[0]) + 1)), keepdims=0)


@emitter("batchnorm")
def _batchnorm(e: Emit) -> str:
    """x: (N, C, ...); inference form with the running statistics."""
    ins = [e.x] + [e.param(k) for k in ("weight", "bias", "running_mean", "running_var")]
    return e.op("BatchNormalization", ins, epsilon=float(e.attrs["eps"]),
                momentum=float(e.attrs["momentum"]))


@emitter("layernorm")
def _layernorm(e: Emit) -> str:
    """x: (N, ..., D), normalised over the last axis. Opset >= 17: LayerNormalization; before it
    the same arithmetic: (x - mean) / sqrt(var + eps) * weight + bias with the biased variance."""
    eps = float(e.attrs["eps"])
    w, b = e.param("weight"), e.param("bias")
    if e.opset >= 17:
        return e.op("LayerNormalization", [e.x, w, b], axis=-1, epsilon=eps)
    d = e.op("Sub", [e.x, e.reduce_mean(e.x, [-1], keepdims=1)])
    var = e.reduce_mean(e.op("Mul", [d, d]), [-1], keepdims=1)
    std = e.op("Sqrt", [e.op("Add", [var, e.scalar("eps", eps)])])
    y = e.op("Div", [d, std])
    return e.op("Add", [e.op("Mul", [y, w]), b])


@emitter("embedding")
def _embedding(e: Emit) -> str:
    """x: int64 (N, T) -> (N, T, dim): rows of weight [vocab, dim]."""
    return e.op("Gather", [e.param("weight"), e.x], axis=0)


# PyTorch gate blocks -> ONNX gate blocks: lstm (i, f, g, o) -> (i, o, f, c); gru (r, z, n) -> (z, r, h)
_GATE_ORDER = {"rnn": [0], "lstm": [0, 3, 1, 2], "gru": [1, 0, 2]}
_TORCH_GATES = {"rnn": "", "lstm": "(i, f, g, o)", "gru": "(r, z, n)"}
_ONNX_GATES = {"rnn": "", "lstm": "(i, o, f, c)", "gru": "(z, r, h)"}


@emitter("rnn", "lstm", "gru")
def _recurrent(e: Emit) -> str:
    """x: (N, T, F) -> Transpose -> (T, N, F) -> one RNN/LSTM/GRU node per layer (h_0 = c_0 = 0),
    ``direction="bidirectional"`` when bidirectional (D = 2); dropout between layers is the
    identity at inference.

    Layer k: W [D, G*u, F_k] = weight_ih{s} of its directions stacked, R [D, G*u, u] = weight_hh{s},
    B [D, 2*G*u] = [bias_ih{s}, bias_hh{s}], each with its gate blocks reordered from PyTorch's order
    to ONNX's; s the layer's suffixes (``a["suffixes"]``), F_0 = F, F_k = D*u. Y: (T, D, N, u) feeds
    the next layer as (T, N, D*u) (Squeeze, or Transpose + Reshape); the last layer's Y gives
    (N, T, D*u) with return_sequences, else its Y_h: (D, N, u) gives (N, D*u) = [forward, backward]."""
    kind, a = e.node.op, e.attrs
    u = int(a["units"])
    order = _GATE_ORDER[kind]

    def gates(arr: np.ndarray) -> np.ndarray:    # (G*u, ...) PyTorch order -> ONNX order
        return arr.reshape(len(order), u, *arr.shape[1:])[order].reshape(arr.shape)

    note = (f", gate blocks reordered from PyTorch {_TORCH_GATES[kind]} to ONNX {_ONNX_GATES[kind]}"
            if kind != "rnn" else "")
    lid = e.node.id
    op_type = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[kind]
    n_out = 3 if kind == "lstm" else 2
    seq = a["return_sequences"]
    layers = a["suffixes"]
    # NOTE: layout=1 (batch-first, opset 14) would spare the Transposes, but onnxruntime's CPU
    # kernels refuse it; time-major is what every runtime implements.
    h = e.op("Transpose", [e.x], perm=[1, 0, 2])                  # (T, N, F_k)
    for k, sfx in enumerate(layers):
        d = len(sfx)
        tag = sfx[0]                                              # "" or "_l{k}": the layer's initializers

        def stacked(name: str) -> np.ndarray:
            return np.stack([gates(e.w[name + s]) for s in sfx])

        def names(name: str) -> str:
            listed = ", ".join(f"{lid}.{name}{s}" for s in sfx)
            return listed if d == 1 else f"[{listed}]"

        W = e.param("W" + tag, stacked("weight_ih"), doc=f"{names('weight_ih')} as [{d}, G*u, F]{note}")
        R = e.param("R" + tag, stacked("weight_hh"), doc=f"{names('weight_hh')} as [{d}, G*u, u]{note}")
        B = e.param("B" + tag, np.concatenate([stacked("bias_ih"), stacked("bias_hh")], axis=1),
                    doc=f"[{names('bias_ih')}, {names('bias_hh')}] as [{d}, 2*G*u]{note}")
        attrs: dict = {"hidden_size": u}
        if d == 2:
            attrs["direction"] = "bidirectional"
        if kind == "rnn":
            attrs["activations"] = ["Relu" if a["activation"] == "relu" else "Tanh"] * d
        if kind == "gru":
            attrs["linear_before_reset"] = 1    # PyTorch: the reset gate multiplies (W_hn h + b_hn)
        last = k == len(layers) - 1
        if last and not seq:
            y_h = e.op(op_type, [h, W, R, B], n_out=n_out, skip=(0,) + tuple(range(2, n_out)), **attrs)[1]
            if d == 1:
                return e.squeeze(y_h, [0])
            y_h = e.op("Transpose", [y_h], perm=[1, 0, 2])        # (N, 2, u)
            return e.op("Reshape", [y_h, e.const("shape", [0, -1])])
        y = e.op(op_type, [h, W, R, B], n_out=n_out, skip=tuple(range(1, n_out)), **attrs)[0]
        if last:                                                  # (T, D, N, u) -> (N, T, D*u)
            if d == 1:
                return e.op("Transpose", [e.squeeze(y, [1])], perm=[1, 0, 2])
            y = e.op("Transpose", [y], perm=[2, 0, 1, 3])
            return e.op("Reshape", [y, e.const("shape", [0, 0, -1])])
        if d == 1:                                                # (T, D, N, u) -> (T, N, D*u)
            h = e.squeeze(y, [1])
        else:
            y = e.op("Transpose", [y], perm=[0, 2, 1, 3])
            h = e.op("Reshape", [y, e.const("shape", [0, 0, -1])])
    raise AssertionError("a recurrent layer has at least one layer")


# ----------------------------------------------------------------------------------------------
# emitters: shapes, merges, elided ops

@emitter("flatten")
def _flatten(e: Emit) -> str:
    """x: (N, ...) -> (N, prod(...)); already (N, F): nothing to do."""
    if len(e.in_shapes[0]) == 1:
        return e.x
    return e.op("Flatten", [e.x], axis=1)


@emitter("reshape")
def _reshape(e: Emit) -> str:
    """x: (N, ...) -> (N, *shape). The shape starts with 0 (copy the input's batch dimension, as
    allowzero=0 defines it) so the batch stays symbolic."""
    target = list(e.attrs["shape"])
    if target == list(e.in_shapes[0]):
        return e.x
    return e.op("Reshape", [e.x, e.const("shape", [0] + target)])


@emitter("transpose")
def _transpose(e: Emit) -> str:
    """x: (N, ...) -> Transpose with perm [0, perm + 1] (the batch axis stays first)."""
    perm = [0, *(p + 1 for p in e.attrs["perm"])]
    if perm == sorted(perm):
        return e.x
    return e.op("Transpose", [e.x], perm=perm)


@emitter("select")
def _select(e: Emit) -> str:
    """x: (N, ...) -> Gather with a scalar index on axis + 1, which drops the axis."""
    return e.op("Gather", [e.x, e.const("index", e.attrs["index"])], axis=int(e.attrs["axis"]) + 1)


@emitter("slice")
def _slice(e: Emit) -> str:
    """x: (N, ...) -> Slice [start, end) of axis + 1 (bounds resolved by the compiler); the whole
    axis: nothing to do."""
    a = e.attrs
    if a["start"] == 0 and a["end"] == e.in_shapes[0][a["axis"]]:
        return e.x
    return e.op("Slice", [e.x, e.const("starts", [a["start"]]), e.const("ends", [a["end"]]),
                          e.const("axes", [int(a["axis"]) + 1])])


@emitter("mean", "max", "sum")
def _reduce(e: Emit) -> str:
    """x: (N, ...) -> ReduceMean / ReduceMax / ReduceSum over axis + 1, keepdims=0."""
    op_type = {"mean": "ReduceMean", "max": "ReduceMax", "sum": "ReduceSum"}[e.node.op]
    return e.reduce(op_type, e.x, [int(e.attrs["axis"]) + 1], keepdims=0)


@emitter("dropout", "identity", "linear")
def _elided(e: Emit) -> str:
    """Identity at inference: no node (an Identity is added only if the value is a graph output)."""
    return e.x


def _aligned(e: Emit) -> list[str]:
    """A broadcasting merge's inputs at one rank. ONNX broadcasts from the right over *all* axes, so
    a lower-rank input (N, *s) is reshaped to (N, 1, ..., *s) first: the batch axis stays aligned
    with the batch axis and the per-example axes align from the right, as NumPy (and nnc) do."""
    rank = max(len(s) for s in e.in_shapes)
    return [x if len(s) == rank else e.op("Reshape", [x, e.const("shape", [0] + [1] * (rank - len(s)) + list(s))])
            for x, s in zip(e.xs, e.in_shapes)]


@emitter("add")
def _add(e: Emit) -> str:
    """Add (two inputs) or Sum, both broadcasting natively once the ranks agree. A sum that only a
    layernorm reads (a Transformer's residual) is a Sum even of two inputs: onnxruntime fuses Add +
    LayerNormalization into its SkipLayerNormalization, which is slower on the CPU than the two
    (bert_tiny: 16% more time per batch), and leaves Sum + LayerNormalization as they are."""
    xs = _aligned(e)
    if len(xs) == 2 and not (e.readers and all(r.op == "layernorm" for r in e.readers)):
        return e.op("Add", xs)
    return e.op("Sum", xs)


@emitter("multiply")
def _multiply(e: Emit) -> str:
    xs = _aligned(e)
    y = xs[0]
    for other in xs[1:]:
        y = e.op("Mul", [y, other])
    return y


@emitter("concat")
def _concat(e: Emit) -> str:
    return e.op("Concat", e.xs, axis=int(e.attrs["axis"]) + 1)


# ----------------------------------------------------------------------------------------------
# emitters: activations

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _unary(name: str, op_type: str):
    emitter(name)(lambda e: e.op(op_type, [e.x]))


for _name, _op in (("relu", "Relu"), ("sigmoid", "Sigmoid"), ("tanh", "Tanh"), ("softplus", "Softplus")):
    _unary(_name, _op)


def _axis_min_opset(node: Node) -> int:
    # NOTE: before opset 13 Softmax/LogSoftmax flatten the input to 2-D at `axis`: the same as a
    # softmax over one axis only when that axis is the last.
    return MIN_OPSET if node.attrs["axis"] == len(node.shape) - 1 else 13


@emitter("softmax", min_opset=_axis_min_opset)
def _softmax(e: Emit) -> str:
    return e.op("Softmax", [e.x], axis=int(e.attrs["axis"]) + 1)


@emitter("log_softmax", min_opset=_axis_min_opset)
def _log_softmax(e: Emit) -> str:
    return e.op("LogSoftmax", [e.x], axis=int(e.attrs["axis"]) + 1)


@emitter("leaky_relu")
def _leaky_relu(e: Emit) -> str:
    return e.op("LeakyRelu", [e.x], alpha=float(e.attrs["alpha"]))


@emitter("elu")
def _elu(e: Emit) -> str:
    return e.op("Elu", [e.x], alpha=float(e.attrs["alpha"]))


@emitter("selu")
def _selu(e: Emit) -> str:
    return e.op("Selu", [e.x], alpha=_SELU_ALPHA, gamma=_SELU_SCALE)


@emitter("gelu")
def _gelu(e: Emit) -> str:
    """Exact GELU: opset >= 20 Gelu; before it x * 0.5 * (1 + erf(x / sqrt 2))."""
    if e.opset >= 20:
        return e.op("Gelu", [e.x], approximate="none")
    erf = e.op("Erf", [e.op("Div", [e.x, e.scalar("sqrt2", math.sqrt(2))])])
    y = e.op("Mul", [e.x, e.op("Add", [erf, e.scalar("one", 1.0)])])
    return e.op("Mul", [y, e.scalar("half", 0.5)])


@emitter("silu")
def _silu(e: Emit) -> str:
    return e.op("Mul", [e.x, e.op("Sigmoid", [e.x])])


@emitter("step")
def _step(e: Emit) -> str:
    """1.0 where x > 0 else 0.0."""
    return e.op("Cast", [e.op("Greater", [e.x, e.scalar("zero", 0.0)])], to=e.b.onnx.TensorProto.FLOAT)


@emitter("relu6")
def _relu6(e: Emit) -> str:
    """Clip with min and max as inputs (opset 11)."""
    return e.op("Clip", [e.x, e.scalar("min", 0.0), e.scalar("max", 6.0)])


@emitter("clip")
def _clip(e: Emit) -> str:
    return e.op("Clip", [e.x, e.scalar("min", float(e.attrs["min"])), e.scalar("max", float(e.attrs["max"]))])


@emitter("hardsigmoid")
def _hardsigmoid(e: Emit) -> str:
    """max(0, min(1, x / 6 + 1 / 2)): PyTorch's constants (ONNX's default alpha is 0.2)."""
    return e.op("HardSigmoid", [e.x], alpha=1 / 6, beta=0.5)


@emitter("hardswish")
def _hardswish(e: Emit) -> str:
    """HardSwish from opset 14; before it x * HardSigmoid(x) with PyTorch's constants."""
    if e.opset >= 14:
        return e.op("HardSwish", [e.x])
    return e.op("Mul", [e.x, e.op("HardSigmoid", [e.x], alpha=1 / 6, beta=0.5)])


# ----------------------------------------------------------------------------------------------
# emitters: attention, positional encodings, normalize

@emitter("multihead_attention")
def _multihead_attention(e: Emit) -> str:
    """torch.nn.MultiheadAttention's inference graph in standard ops (MatMul, Reshape, Transpose,
    Softmax). q: (N, Tq, E), kv: (N, Tk, E) (the same value for self-attention):

        Q, K, V = q Wq^T + bq, kv Wk^T + bk, kv Wv^T + bv   (derived [E, E] initializers; the query's
                                                             scaled by 1/sqrt(d) in advance)
        heads: Reshape (N, T, H, d) -> Transpose (N, H, T, d), keys (N, H, d, Tk)
        P = Softmax(Q K^T [+ causal: -inf above the diagonal]) over the last axis
        y = Reshape(Transpose(P V)) Wo^T + bo                 (N, Tq, E)

    Softmax over the last axis means the same before opset 13 (the old one flattens to 2-D there)."""
    a = e.attrs
    (tq, E), (tk, _) = e.in_shapes[0], e.in_shapes[-1]
    h, d = int(a["heads"]), int(a["head_dim"])
    W = e.w["in_proj_weight"]
    b = e.w.get("in_proj_bias")
    scale = 1 / math.sqrt(d)
    lid = e.node.id

    def project(x: str, block: int, what: str, factor: float = 1.0) -> str:
        rows = slice(block * E, (block + 1) * E)
        note = f" times 1/sqrt({d})" if factor != 1.0 else ""
        y = e.op("MatMul", [x, e.param(f"{what}_weight_t", W[rows].T * factor,
                                       doc=f"rows {rows.start}:{rows.stop} of {lid}.in_proj_weight transposed "
                                           f"to [E, E]{note}")])
        if b is None:
            return y
        return e.op("Add", [y, e.param(f"{what}_bias", b[rows] * factor,
                                       doc=f"entries {rows.start}:{rows.stop} of {lid}.in_proj_bias{note}")])

    def heads(x: str, t: int, perm: list[int]) -> str:
        return e.op("Transpose", [e.op("Reshape", [x, e.const("heads_shape", [0, t, h, d])])], perm=perm)

    q = heads(project(e.xs[0], 0, "q", scale), tq, [0, 2, 1, 3])        # (N, H, Tq, d)
    kt = heads(project(e.xs[-1], 1, "k"), tk, [0, 2, 3, 1])             # (N, H, d, Tk)
    v = heads(project(e.xs[-1], 2, "v"), tk, [0, 2, 1, 3])              # (N, H, Tk, d)
    scores = e.op("MatMul", [q, kt])                                    # (N, H, Tq, Tk)
    if a["causal"]:
        future = np.triu(np.ones((tq, tk), dtype=bool), 1)
        scores = e.op("Add", [scores, e.const("causal_mask", np.where(future, -np.inf, 0.0), np.float32)])
    p = e.op("Softmax", [scores], axis=3)
    o = e.op("Transpose", [e.op("MatMul", [p, v])], perm=[0, 2, 1, 3])  # (N, Tq, H, d)
    o = e.op("Reshape", [o, e.const("merged_shape", [0, tq, E])])
    y = e.op("MatMul", [o, e.param("out_proj.weight_t", e.w["out_proj.weight"].T,
                                   doc=f"{lid}.out_proj.weight transposed to [E, E] for MatMul")])
    return e.op("Add", [y, e.param("out_proj.bias")]) if a["bias"] else y


@emitter("positional_embedding")
def _positional_embedding(e: Emit) -> str:
    """x (N, T, E) + weight [T, E] (broadcast over the batch)."""
    return e.op("Add", [e.x, e.param("weight")])


@emitter("positional_encoding")
def _positional_encoding(e: Emit) -> str:
    """x (N, T, E) + the sinusoids as an initializer [T, E]: PE[t, 2i] = sin(t / 10000^(2i/E)),
    PE[t, 2i+1] = cos(t / 10000^(2i/E)) (an odd E ends with a sine column)."""
    t, dim = e.in_shapes[0]
    j = np.arange(dim)
    angle = np.arange(t)[:, None] / np.power(10000.0, (j - j % 2) / dim)
    pe = np.where(j % 2 == 0, np.sin(angle), np.cos(angle))
    return e.op("Add", [e.x, e.param("pe", pe, doc="the fixed sinusoidal positional encoding [T, E]")])


@emitter("normalize")
def _normalize(e: Emit) -> str:
    """(x - mean) * inv_std with inv_std = 1 / sqrt(var + eps) computed at export in float32, as
    the NumPy kernel computes it (so the arithmetic is the runtime's); both statistics [K] are
    initializers shaped to broadcast along `axis` ([K, 1, ..., 1], aligned from the right against
    (N, ..., K, ...)): two nodes, Sub and Mul."""
    shape = e.in_shapes[0]
    axis = int(e.attrs["axis"])
    stat = [shape[axis]] + [1] * (len(shape) - 1 - axis)
    var = e.w["var"].astype(np.float32)
    inv_std = 1 / np.sqrt(var + float(e.attrs["eps"]))   # float32 throughout
    if len(stat) > 1:
        note = f" as {stat}"
        mean = e.param("mean_bcast", e.w["mean"].reshape(stat), doc=f"{e.node.id}.mean{note}")
    else:
        note = ""
        mean = e.param("mean")
    inv = e.param("inv_std", inv_std.reshape(stat),
                  doc=f"1 / sqrt({e.node.id}.var + eps), eps = {float(e.attrs['eps']):g}{note}")
    return e.op("Mul", [e.op("Sub", [e.x, mean]), inv])


# ----------------------------------------------------------------------------------------------
# the model

def elem_type(dtype: str) -> int:
    from onnx import TensorProto
    return TensorProto.INT64 if dtype == "int64" else TensorProto.FLOAT


class Built(NamedTuple):
    """What :func:`build_model` returns."""

    proto: Any                              # onnx.ModelProto (large arrays external if asked)
    values: dict[str, str]                  # IR value (input name or node id) -> ONNX value name
    blobs: list[tuple[int, np.ndarray]]     # the external arrays: (offset in the data file, array)
    skeleton: Any                           # the model without its large arrays (shape inference)


def build_model(program: Program, weights: dict[str, np.ndarray], opset: int, *,
                max_opset: int | None = None, external: str | None = None, labels: list[str] | None = None):
    """The ONNX model of ``program.model`` with ``weights`` (``"<layer>.<param>"`` -> array, the
    contract's layouts; validated by the caller) at ``opset``. ``labels``: a classifier's id ->
    label map, stored in the metadata as ``labels`` (a JSON list; contract 5.3).

    ``external``: None to embed every initializer, or the name of the external data file (relative
    to the model file, e.g. ``model.onnx.data``) that holds the large ones (see
    :meth:`_Builder.tensors`; the caller writes that file).

    Returns a :class:`Built`: the model, where each IR value is, the external arrays (none without
    ``external``) and a skeleton of the model for shape inference, whose arrays of at least
    :data:`EXTERNAL_MIN_BYTES` point to external data that does not exist (with ``external`` the
    model itself). Raises E801/E802 for an opset that cannot express the model.
    """
    from ..version import __version__
    model = program.model
    check_opset(model, opset, max_opset)
    b = _Builder(opset)
    helper = b.helper

    input_names = [i.name for i in model.inputs]
    for name in input_names:
        b.reserve(name)
    for o in model.outputs:
        b.reserve(o.name)
    # a node that feeds an output writes that output directly (the first output, if several)
    claimed: dict[str, str] = {}
    for o in model.outputs:
        if o.source not in input_names and o.source not in claimed:
            claimed[o.source] = o.name

    values: dict[str, str] = {name: name for name in input_names}
    shapes: dict[str, list[int]] = {i.name: list(i.shape) for i in model.inputs}
    value_info: list = []
    readers = readers_of(model.nodes)
    folds = batchnorm_folds(model, readers)
    folded = {bn.id for bn in folds.values()}

    def node_weights(node: Node) -> dict[str, np.ndarray]:
        return {wt.name: weights[f"{node.id}.{wt.name}"] for wt in node.weights}

    for node in model.nodes:
        if node.id in folded:       # its layer's result is already its own
            values[node.id] = values[node.inputs[0]]
            shapes[node.id] = list(node.shape)
            continue
        xs = [values[s] for s in node.inputs]
        e = Emit(b, node, xs, [shapes[s] for s in node.inputs], node_weights(node))
        e.readers = readers.get(node.id, [])
        bn = folds.get(node.id)
        if bn is not None:
            e.fold = (bn, node_weights(bn))
        result = EMITTERS[node.op](e)
        own = {out for n in e.created for out in n.output}
        if result in own:
            # NOTE: with a folded batchnorm the value holds the batchnorm's result: named after it
            holder = bn.id if bn is not None else node.id
            final = claimed.get(holder) or b.fresh(holder)
            _rename(e.created, result, final)
            result = final
        if len(e.created) == 1:
            e.created[0].name = b.node_name(node.id)
        else:
            for n in e.created:
                n.name = b.node_name(f"{node.id}/{n.op_type}")
        b.nodes.extend(e.created)
        if e.declare_shape and node.id not in claimed and result not in input_names:
            value_info.append(helper.make_tensor_value_info(result, elem_type(node.dtype), [BATCH, *node.shape]))
        values[node.id] = result
        shapes[node.id] = list(node.shape)

    outputs = []
    for o in model.outputs:
        src = values[o.source]
        if src != o.name:     # an elided node, an input, or a second output of the same value
            base = o.name if o.source in input_names else o.source
            if base in b.node_names:
                base = f"{base}/Identity"
            b.nodes.append(helper.make_node("Identity", [src], [o.name], name=b.node_name(base)))
        outputs.append(helper.make_tensor_value_info(o.name, elem_type(o.dtype), [BATCH, *o.shape]))
    inputs = [helper.make_tensor_value_info(i.name, elem_type(i.dtype), [BATCH, *i.shape])
              for i in model.inputs]

    graph = helper.make_graph(b.nodes, model.name, inputs, outputs, value_info=value_info,
                              doc_string=f"{model.name}: compiled by nnc {__version__}"
                              + (f" from {_basename(program.path)}" if program.path else ""))
    opsets = [helper.make_opsetid("", opset)]
    mp = helper.make_model(graph, opset_imports=opsets, producer_name="nnc", producer_version=__version__,
                           ir_version=helper.find_min_ir_version_for(opsets))
    mp.doc_string = f"nnc model `{model.name}`"
    props = {"nnc.model": model.name, "nnc.version": __version__}
    if program.source is not None:
        props["nnc.source"] = program.source
    if labels:
        props["labels"] = json.dumps(list(labels))
    helper.set_model_props(mp, props)
    skeleton = mp
    if external is None:    # the same model with its large arrays left out, for shape inference
        skeleton = b.onnx.ModelProto()
        skeleton.CopyFrom(mp)
        b.add_initializers(skeleton.graph.initializer, SKELETON_DATA)
    blobs = b.add_initializers(mp.graph.initializer, external)
    return Built(mp, values, blobs, skeleton)


def _basename(path: str) -> str:
    # NOTE: only the file name: a model file may travel, the user's directories should not
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def _rename(nodes: list, old: str, new: str) -> None:
    for n in nodes:
        for i, name in enumerate(n.output):
            if name == old:
                n.output[i] = new
        for i, name in enumerate(n.input):
            if name == old:
                n.input[i] = new


# ----------------------------------------------------------------------------------------------
# the model in memory

@dataclass
class Export:
    """An exported model in memory, before it is written."""

    proto: Any                          # onnx.ModelProto (without the external arrays, if any)
    opset: int
    weights: dict[str, np.ndarray]
    values: dict[str, str]              # IR value (input name / node id) -> ONNX value name
    checks: list[str] = field(default_factory=list)
    max_diff: float | None = None
    data_location: str | None = None    # the external data file's name relative to the model
    blobs: list[tuple[int, np.ndarray]] = field(default_factory=list)   # (offset, array) in that file
    skeleton: Any = None                # the model without its large arrays, for shape inference
    _bytes: bytes | None = field(default=None, repr=False)

    def serialized(self) -> bytes:
        """The ``.onnx`` file's bytes, serialised once for the checker, onnxruntime and the write."""
        if self._bytes is None:
            self._bytes = self.proto.SerializeToString()
        return self._bytes

    @property
    def node_count(self) -> int:
        return len(self.proto.graph.node)

    @property
    def data_bytes(self) -> int:
        """The size of the external data file (0 for a self-contained model)."""
        return self.blobs[-1][0] + self.blobs[-1][1].nbytes if self.blobs else 0
