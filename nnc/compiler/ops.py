"""The op catalogue: one entry per op, keyed by name, reused by every stage.

Each :class:`OpDef` holds the op's signature (positional and keyword parameters, defaults, type
and range checks), its shape rule, the weights it owns (the weights contract of
``docs/language.md``), and its FLOPs. The runtime's kernels (``nnc.runtime.kernels.KERNELS``) and
the ONNX emitters (``nnc.onnx.emitters.EMITTERS``) are registered under the same names;
``tests/test_catalogue.py`` fails if a stage lacks an entry.

Shapes exclude the batch axis. ``attrs`` are the bound, normalised parameters; a shape rule may add
derived attributes (e.g. ``pads`` for convolutions, a non-negative ``axis``) that the runtime and
the exporter read, so neither re-derives them. Every parameter is present in ``attrs`` (defaults
filled in here, once): kernels and emitters read ``a["key"]``, never ``a.get(key, default)``.

Adding an op means, and should mean nothing else than:

1. an :class:`OpDef` here: signature (with ranges), shape rule (raising :class:`ShapeError` with a
   code and a hint), weights (the IR's own :class:`~nnc.compiler.irtypes.Weight`, PyTorch's names
   and layouts), FLOPs, doc and example; flags such as ``passes_values`` instead of special cases by name elsewhere;
2. a NumPy kernel in the family module of ``nnc/runtime/kernels/`` (forward and backward side by
   side, the cache named, array shapes in the docstring);
3. an ONNX emitter in ``nnc/onnx/emitters.py`` (and a torch lowering once that engine exists);
4. rows in the test tables: the gradient case in ``tests/test_kernels.py`` (its op list is this
   catalogue, so a missing case fails), PyTorch parity, export parity, a golden error for each new
   message in ``tests/errors/``; and the op's row in ``docs/language.md`` section 6
   (``tests/test_docs_catalogue.py`` checks it names every parameter).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from ..errors import fmt_shape
from ..vocab import INITIALIZERS, init_value
from .irtypes import Weight
from ..lang.types import REQUIRED, Bool, Enum, Float, Int, Ints, Padding, Param, ShapeList, Signature, fmt_number

Shape = tuple[int, ...]


class ShapeError(Exception):
    """The op cannot take these input shapes/dtypes: becomes a diagnostic at the stage."""

    def __init__(self, code: str, message: str, hint: str | None = None):
        super().__init__(message)
        self.code, self.message, self.hint = code, message, hint


@dataclass
class OpDef:
    name: str
    sig: Signature
    kind: str                                   # layer | activation | shape | merge | regularization
    infer: Callable[[list[Shape], dict], Shape]
    weights: Callable[[list[Shape], dict], list[Weight]] = lambda shapes, a: []  # IR weights, in order
    flops: Callable[[list[Shape], Shape, dict], int] = lambda shapes, out, a: 0
    input_dtype: str = "float32"                # what the op accepts: float32 | int64
    output_dtype: str = "float32"
    merge: bool | str = False                   # takes several named inputs: add(a, b); "optional": also a
    #   single-input stage, a merge when its first positional argument names a value (multihead_attention)
    # NOTE: the output holds the input's values unchanged at inference, so token ids pass through it
    # on their way to an embedding (checked before training, drawn in range for export verification)
    passes_values: bool = False
    doc: str = ""
    example: str = ""


OPS: dict[str, OpDef] = {}


def register(op: OpDef) -> OpDef:
    OPS[op.name] = op
    return op


def _prod(shape) -> int:
    return math.prod(shape) if shape else 1


# ----------------------------------------------------------------------------------------------
# shared parameters

def _init(default: str = "glorot_uniform", **args) -> Param:
    return Param("init", INITIALIZERS, init_value(default, **args), "weight initializer")


_BIAS = Param("bias", Bool(), True, "add a learned bias")
_ZEROS = init_value("zeros")
_ONES = init_value("ones")


def _rank_error(code: str, op: str, expected: str, shape: Shape, hint: str | None) -> ShapeError:
    return ShapeError(code, f"{op} expects {expected} per example, got {fmt_shape(shape)}", hint)


def _reshape_hint(shape: Shape, rank: int) -> str | None:
    n = _prod(shape)
    if rank == 3 and len(shape) == 1:
        side = math.isqrt(n)
        if side * side == n:
            return f"reshape it first, e.g. `reshape([1, {side}, {side}])`"
        return "reshape it to [C, H, W] first with `reshape([...])`"
    if rank == 2 and len(shape) == 1:
        return f"reshape it to [C, L] first, e.g. `reshape([1, {n}])`"
    if rank == 2 and len(shape) == 3:
        return "use conv2d for images, or `reshape([C, L])` for sequences"
    return None


# ----------------------------------------------------------------------------------------------
# dense

def _dense_infer(shapes, a):
    (s,) = shapes
    if len(s) not in (1, 2):
        raise _rank_error("E201", "dense", "[F] or [T, F]", s, "add `flatten` before it")
    return (*s[:-1], a["units"])


register(OpDef(
    "dense", Signature("dense", [Param("units", Int(min=1), REQUIRED, "output features"), _BIAS, _init()], 1),
    "layer", _dense_infer,
    weights=lambda shapes, a: [Weight(name="weight", shape=[a["units"], shapes[0][-1]], init=a["init"])]
    + ([Weight(name="bias", shape=[a["units"]], init=_ZEROS)] if a["bias"] else []),
    flops=lambda shapes, out, a: 2 * _prod(shapes[0]) * a["units"],
    doc="Fully connected layer; on [T, F] it is applied at every time step.",
    example="dense(64) -> relu"))


# ----------------------------------------------------------------------------------------------
# convolution

def _conv_pads(op: str, size: int, k: int, s: int, d: int, padding, i: int) -> tuple[int, int]:
    if padding == "valid":
        return 0, 0
    if padding == "same":
        # NOTE: TensorFlow / ONNX SAME_UPPER: output = ceil(size / stride); any odd pad goes last.
        out = -(-size // s)
        total = max((out - 1) * s + d * (k - 1) + 1 - size, 0)
        return total // 2, total - total // 2
    return padding[i], padding[i]


def _conv_infer(nd: int):
    op = "conv2d" if nd == 2 else "conv1d"
    expected = "[C, H, W]" if nd == 2 else "[C, L]"

    def infer(shapes, a):
        (s,) = shapes
        if len(s) != nd + 1:
            raise _rank_error("E202", op, expected, s, _reshape_hint(s, nd + 1))
        spatial = s[1:]
        begins, ends, out = [], [], []
        names = ("height", "width") if nd == 2 else ("length",)
        for i in range(nd):
            k, st, d = a["kernel"][i], a["stride"][i], a["dilation"][i]
            b, e = _conv_pads(op, spatial[i], k, st, d, a["padding"], i)
            begins.append(b)
            ends.append(e)
            size = (spatial[i] + b + e - d * (k - 1) - 1) // st + 1
            if size < 1:
                eff = d * (k - 1) + 1
                raise ShapeError("E206", f"{op} kernel {k}{f' (dilated to {eff})' if d > 1 else ''} does not "
                                 f"fit the input {names[i]} {spatial[i]} (padding {b + e})",
                                 "use `padding=same`, a smaller kernel, or remove a pooling layer before it")
            out.append(size)
        a["pads"] = begins + ends  # ONNX order: [x1_begin, x2_begin, ..., x1_end, x2_end]
        return (a["filters"], *out)
    return infer


def _conv_weights(nd: int):
    def weights(shapes, a):
        w = [Weight(name="weight", shape=[a["filters"], shapes[0][0], *a["kernel"]], init=a["init"])]
        if a["bias"]:
            w.append(Weight(name="bias", shape=[a["filters"]], init=_ZEROS))
        return w
    return weights


def _conv_flops(shapes, out, a):
    return 2 * _prod(out) * shapes[0][0] * _prod(a["kernel"])


for _nd in (2, 1):
    _name = f"conv{_nd}d"
    register(OpDef(
        _name,
        Signature(_name, [Param("filters", Int(min=1), REQUIRED, "output channels"),
                          Param("kernel", Ints(_nd), REQUIRED, "kernel size"),
                          Param("stride", Ints(_nd), [1] * _nd),
                          Param("padding", Padding(_nd), "valid", "`valid`, `same`, or explicit"),
                          Param("dilation", Ints(_nd), [1] * _nd), _BIAS, _init()], 2),
        "layer", _conv_infer(_nd), weights=_conv_weights(_nd), flops=_conv_flops,
        doc=("2-D convolution over [C, H, W]" if _nd == 2 else "1-D convolution over [C, L]")
        + " (cross-correlation, as PyTorch).",
        example="conv2d(16, kernel=3, padding=same) -> relu" if _nd == 2 else "conv1d(8, 5, stride=2)"))


# ----------------------------------------------------------------------------------------------
# pooling

def _pool_check(a, call):
    from ..lang.types import ArgError
    if a["stride"] is None:
        a["stride"] = list(a["size"])
    for p, k in zip(a["padding"], a["size"]):
        if p > k // 2:
            raise ArgError("E402", f"pool padding {p} is more than half the pool size {k}",
                           "padding may be at most size // 2", call.span)


def _pool_infer(op):
    def infer(shapes, a):
        (s,) = shapes
        if len(s) != 3:
            raise ShapeError("E210", f"{op} expects [C, H, W] per example, got {fmt_shape(s)}",
                             _reshape_hint(s, 3))
        out = []
        for i, name in enumerate(("height", "width")):
            k, st, p = a["size"][i], a["stride"][i], a["padding"][i]
            size = (s[1 + i] + 2 * p - k) // st + 1
            if size < 1:
                raise ShapeError("E206", f"{op} size {k} does not fit the input {name} {s[1 + i]}",
                                 "use a smaller pool size, or pool earlier")
            out.append(size)
        a["pads"] = list(a["padding"]) * 2
        return (s[0], *out)
    return infer


class _StrideDefault(Ints):
    """``stride`` of a pool: defaults to the pool size."""

    def render(self, value):
        return "size" if value is None else super().render(value)

    def json_schema(self):
        return {"anyOf": [super().json_schema(), {"type": "null"}]}


for _name in ("maxpool2d", "avgpool2d"):
    register(OpDef(
        _name,
        Signature(_name, [Param("size", Ints(2), REQUIRED, "pool window"),
                          Param("stride", _StrideDefault(2), None, "defaults to `size`"),
                          Param("padding", Ints(2, min=0, labels="ph, pw"), [0, 0])], 1,
                         check=_pool_check),
        "pool", _pool_infer(_name),
        doc="Max pooling (padding never wins)." if _name == "maxpool2d" else
        "Average pooling; padded zeros count in the average (PyTorch's count_include_pad=True).",
        example=f"{_name}(2)"))


def _gap_infer(shapes, a):
    (s,) = shapes
    if len(s) != 3:
        raise ShapeError("E210", f"globalavgpool2d expects [C, H, W] per example, got {fmt_shape(s)}")
    return (s[0],)


register(OpDef("globalavgpool2d", Signature("globalavgpool2d", []), "pool", _gap_infer,
               doc="Mean over height and width: [C, H, W] -> [C].", example="globalavgpool2d"))


# ----------------------------------------------------------------------------------------------
# shape ops

register(OpDef("flatten", Signature("flatten", []), "shape", lambda shapes, a: (_prod(shapes[0]),),
               passes_values=True, doc="[...] -> [product of the dimensions].", example="flatten"))


def _reshape_infer(shapes, a):
    (s,) = shapes
    n = _prod(s)
    target = list(a["shape"])
    known = _prod([d for d in target if d != -1])
    if -1 in target:
        if n % known:
            raise ShapeError("E205", f"cannot reshape {fmt_shape(s)} ({n} values) to {fmt_shape(target)}",
                             f"{n} is not a multiple of {known}")
        target[target.index(-1)] = n // known
    elif known != n:
        raise ShapeError("E205", f"cannot reshape {fmt_shape(s)} ({n} values) to {fmt_shape(target)} "
                         f"({known} values)", "the product of the new shape must stay the same; "
                         "one entry may be -1")
    a["shape"] = target
    return tuple(target)


register(OpDef("reshape", Signature("reshape", [Param("shape", ShapeList(), REQUIRED)], 1), "shape",
               _reshape_infer, passes_values=True, doc="Reshape each example; one entry may be -1.",
               example="reshape([1, 28, 28])"))

register(OpDef("identity", Signature("identity", []), "shape", lambda shapes, a: shapes[0],
               input_dtype="any", passes_values=True, doc="Passes its input through.", example="identity"))


# ----------------------------------------------------------------------------------------------
# regularisation and normalisation

register(OpDef("dropout", Signature("dropout", [Param("rate", Float(0, 1, max_open=True), REQUIRED)], 1),
               "regularization", lambda shapes, a: shapes[0], passes_values=True,
               doc="Inverted dropout while training; identity at inference.", example="dropout(0.25)"))


def _bn_weights(shapes, a):
    c = shapes[0][0]
    return [Weight(name="weight", shape=[c], init=_ONES), Weight(name="bias", shape=[c], init=_ZEROS),
            Weight(name="running_mean", shape=[c], init=_ZEROS, trainable=False),
            Weight(name="running_var", shape=[c], init=_ONES, trainable=False)]


def _bn_infer(shapes, a):
    (s,) = shapes
    if len(s) > 3:
        raise ShapeError("E202", f"batchnorm expects [C], [C, L] or [C, H, W] per example, got {fmt_shape(s)}")
    return s


register(OpDef("batchnorm", Signature("batchnorm", [Param("momentum", Float(0, 1), 0.9),
                                                    Param("eps", Float(0, min_open=True), 1e-5)]),
               "norm", _bn_infer, weights=_bn_weights,
               doc="Batch normalisation over axis 0 (channels or features); running = momentum * running "
                   "+ (1 - momentum) * batch.", example="batchnorm"))

register(OpDef("layernorm", Signature("layernorm", [Param("eps", Float(0, min_open=True), 1e-5)]),
               "norm", lambda shapes, a: shapes[0],
               weights=lambda shapes, a: [Weight(name="weight", shape=[shapes[0][-1]], init=_ONES),
                                          Weight(name="bias", shape=[shapes[0][-1]], init=_ZEROS)],
               doc="Layer normalisation over the last axis.", example="layernorm"))


# ----------------------------------------------------------------------------------------------
# embedding and recurrent layers

def _embedding_infer(shapes, a):
    (s,) = shapes
    if len(s) != 1:
        raise ShapeError("E207", f"embedding expects int64 token ids [T] per example, got {fmt_shape(s)}")
    return (s[0], a["dim"])


register(OpDef("embedding", Signature("embedding", [Param("vocab", Int(min=1), REQUIRED, "number of token ids"),
                                                    Param("dim", Int(min=1), REQUIRED, "vector size"),
                                                    _init("uniform", low=-0.05, high=0.05)], 2),
               "layer", _embedding_infer,
               weights=lambda shapes, a: [Weight(name="weight", shape=[a["vocab"], a["dim"]], init=a["init"])],
               input_dtype="int64", doc="Token ids [T] -> vectors [T, dim].", example="embedding(1000, 32)"))

_GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def _rnn_infer(op):
    def infer(shapes, a):
        (s,) = shapes
        if len(s) != 2:
            hint = (f"make it a sequence of {s[0]} steps of 1 feature first: `reshape([{s[0]}, 1])`" if len(s) == 1 else
                    "flatten the image rows into a sequence with `reshape([T, F])`")
            raise ShapeError("E209", f"{op} expects a sequence [T, F] per example, got {fmt_shape(s)}", hint)
        return (s[0], a["units"]) if a["return_sequences"] else (a["units"],)
    return infer


def _rnn_weights(op):
    g = _GATES[op]

    def weights(shapes, a):
        u, f = a["units"], shapes[0][1]
        bias_ih = init_value("zeros") if op != "lstm" else {"kind": "lstm_forget_bias"}
        return [Weight(name="weight_ih", shape=[g * u, f], init=a["init"], blocks=g),
                Weight(name="weight_hh", shape=[g * u, u], init=a["recurrent_init"], blocks=g),
                Weight(name="bias_ih", shape=[g * u], init=bias_ih, blocks=g),
                Weight(name="bias_hh", shape=[g * u], init=_ZEROS, blocks=g)]
    return weights


def _rnn_flops(op):
    g = _GATES[op]
    return lambda shapes, out, a: 2 * shapes[0][0] * g * a["units"] * (shapes[0][1] + a["units"])


for _name in ("rnn", "lstm", "gru"):
    _params = [Param("units", Int(min=1), REQUIRED, "hidden size"),
               Param("return_sequences", Bool(), False, "output every step [T, units]")]
    if _name == "rnn":
        _params.append(Param("activation", Enum(("tanh", "relu"), "activation"), "tanh"))
    _params += [_init(), Param("recurrent_init", INITIALIZERS, init_value("orthogonal"),
                               "initializer of weight_hh")]
    register(OpDef(_name, Signature(_name, _params, 1), "layer", _rnn_infer(_name),
                   weights=_rnn_weights(_name), flops=_rnn_flops(_name),
                   doc={"rnn": "Elman RNN, h = act(W_ih x + b_ih + W_hh h + b_hh).",
                        "lstm": "LSTM with PyTorch's gate order (input, forget, cell, output).",
                        "gru": "GRU with PyTorch's formulas (reset gate after the recurrent product)."}[_name],
                   example=f"{_name}(32)"))


# ----------------------------------------------------------------------------------------------
# merges

def _broadcasts(a: Shape, b: Shape) -> bool:
    """Whether two shapes of one rank broadcast: equal sizes, or 1, on every axis."""
    return all(x == y or 1 in (x, y) for x, y in zip(a, b))


def _broadcast_hint(a: Shape, b: Shape) -> str:
    # NOTE: a lower-rank value aligns with the *last* axes; when it would fit the first ones (a [C]
    # gate against [C, H, W]), say how to line it up instead of suggesting a projection
    for low, high in ((a, b), (b, a)):
        if len(low) < len(high):
            padded = tuple(low) + (1,) * (len(high) - len(low))
            if _broadcasts(padded, high):
                return (f"a {fmt_shape(low)} value lines up with the last axes of {fmt_shape(high)}; to repeat it "
                        f"over the others, reshape it first: `reshape({list(padded)})`")
    return ("sizes must be equal or 1 on each axis, aligned from the right; project one with `dense(...)` "
            "or `conv2d(..., kernel=1)` to match")


def _broadcast_infer(op):
    """NumPy broadcasting over the per-example axes, aligned from the right: each axis is equal or 1
    (or missing in the lower-rank value). The batch axis is never broadcast."""
    def infer(shapes, a):
        out = shapes[0]
        for i, s in enumerate(shapes[1:], 1):
            rank = max(len(out), len(s))
            po, ps = (1,) * (rank - len(out)) + tuple(out), (1,) * (rank - len(s)) + tuple(s)
            if not _broadcasts(po, ps):
                left = f"{fmt_shape(out)} (input 1)" if i == 1 else f"{fmt_shape(out)} (inputs 1 to {i})"
                raise ShapeError("E203", f"{op} needs inputs whose shapes broadcast, got {left} and "
                                 f"{fmt_shape(s)} (input {i + 1})", _broadcast_hint(tuple(out), tuple(s)))
            out = tuple(max(x, y) for x, y in zip(po, ps))
        return out
    return infer


def _concat_infer(shapes, a):
    ranks = {len(s) for s in shapes}
    if len(ranks) > 1:
        raise ShapeError("E204", "concat needs inputs of the same rank, got "
                         + ", ".join(fmt_shape(s) for s in shapes), "flatten or reshape them first")
    rank = ranks.pop()
    axis = a["axis"]
    if axis is None:
        if rank != 1:
            raise ShapeError("E204", "concat of rank-" f"{rank} inputs needs `axis`: "
                             + ", ".join(fmt_shape(s) for s in shapes),
                             "e.g. `axis=0` to join channels, or flatten them first")
        axis = 0
    if not -rank <= axis < rank:
        raise ShapeError("E204", f"concat axis {axis} is out of range for rank-{rank} inputs",
                         f"use an axis in [{-rank}, {rank - 1}] (the batch axis is not counted)")
    axis %= rank
    for s in shapes[1:]:
        for d in range(rank):
            if d != axis and s[d] != shapes[0][d]:
                raise ShapeError("E204", f"concat along axis {axis} needs the other dimensions equal, got "
                                 + ", ".join(fmt_shape(x) for x in shapes),
                                 "resize the inputs, or choose another `axis`")
    a["axis"] = axis
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    return tuple(out)


for _name, _doc in (("add", "Elementwise sum, broadcast as NumPy does over the per-example axes."),
                   ("multiply", "Elementwise product, broadcast as NumPy does over the per-example axes.")):
    register(OpDef(_name, Signature(_name, []), "merge", _broadcast_infer(_name), merge=True, doc=_doc,
                   example=f"{_name}(a, b) -> relu"))
register(OpDef("concat", Signature("concat", [Param("axis", Int(), None, "axis to join (batch not counted)")]),
               "merge", _concat_infer, merge=True, doc="Joins its inputs along `axis`.",
               example="concat(a, b, axis=0)"))


# ----------------------------------------------------------------------------------------------
# activations

def _axis_infer(op):
    def infer(shapes, a):
        (s,) = shapes
        rank = len(s)
        if not -rank <= a["axis"] < rank:
            raise ShapeError("E211", f"{op} axis {a['axis']} is out of range for shape {fmt_shape(s)}",
                             f"use an axis in [{-rank}, {rank - 1}] (the batch axis is not counted)")
        a["axis"] %= rank
        return s
    return infer


def _same(shapes, a):
    return shapes[0]


_ACTIVATIONS = {
    "relu": ([], "max(x, 0)"),
    "sigmoid": ([], "1 / (1 + exp(-x))"),
    "tanh": ([], "tanh(x)"),
    "softmax": ([Param("axis", Int(), -1)], "exp(x) / sum(exp(x)) along `axis`"),
    "log_softmax": ([Param("axis", Int(), -1)], "log(softmax(x)) along `axis`"),
    "leaky_relu": ([Param("alpha", Float(min=0), 0.01)], "x if x > 0 else alpha * x"),
    "elu": ([Param("alpha", Float(min=0), 1.0)], "x if x > 0 else alpha * (exp(x) - 1)"),
    "selu": ([], "scale * elu(x, 1.6733) with scale 1.0507 (PyTorch's constants)"),
    "gelu": ([], "x * Phi(x), the exact erf form"),
    "softplus": ([], "log(1 + exp(x)) (x itself above 20, as PyTorch)"),
    "silu": ([], "x * sigmoid(x)"),
    "step": ([], "1 where x > 0 else 0; the gradient passes straight through"),
    "linear": ([], "x (no activation)"),
    "relu6": ([], "min(max(x, 0), 6)"),
    "hardsigmoid": ([], "min(max(x + 3, 0), 6) / 6"),
    "hardswish": ([], "x * hardsigmoid(x)"),
}
for _name, (_params, _doc) in _ACTIVATIONS.items():
    register(OpDef(_name, Signature(_name, _params, 0), "activation",
                   _axis_infer(_name) if _params and _params[0].name == "axis" else _same,
                   passes_values=_name == "linear", doc=_doc, example=f"dense(10) -> {_name}"))


def _clip_check(a, call):
    from ..lang.types import ArgError
    if a["min"] > a["max"]:
        raise ArgError("E402", f"`clip` needs min <= max, got {fmt_number(a['min'])} and {fmt_number(a['max'])}",
                       "swap the bounds: `clip(min, max)`", call.span)


register(OpDef("clip", Signature("clip", [Param("min", Float(), REQUIRED, "lower bound"),
                                          Param("max", Float(), REQUIRED, "upper bound")], 2, check=_clip_check),
               "activation", _same, doc="min(max(x, min), max) (torch.clamp)", example="dense(10) -> clip(-1, 1)"))


# ----------------------------------------------------------------------------------------------
# attention, positional encodings and normalize

def _sequence_check(op: str, s: Shape, what: str = "", heads: int = 1) -> None:
    if len(s) == 2:
        return
    if len(s) == 1:
        # the smallest feature size that `heads` divides and that divides the values
        e = next((k for k in range(heads, s[0] + 1, heads) if s[0] % k == 0), 1)
        hint = f"reshape it to [T, E] first, e.g. `reshape([{s[0] // e}, {e}])`"
    else:
        hint = f"reshape it to [T, E] first, e.g. `reshape([{s[0]}, {_prod(s[1:])}])`"
    raise ShapeError("E223", f"{op} expects a sequence [T, E] per example{what}, got {fmt_shape(s)}", hint)


def _heads_hint(e: int, heads: int) -> str:
    divisors = [d for d in range(1, e + 1) if e % d == 0]
    near = [d for d in (max((d for d in divisors if d < heads), default=None),
                        min((d for d in divisors if d > heads), default=None)) if d is not None]
    options = " or ".join(f"`heads={d}`" for d in near)
    wider = -(-e // heads) * heads
    return (f"use {options} (divisors of {e}), or project to a multiple of {heads} first, "
            f"e.g. `dense({wider})`")


def _mha_infer(shapes, a):
    if len(shapes) > 2:
        raise ShapeError("E404", f"multihead_attention takes a query and one key/value input, got {len(shapes)} inputs",
                         "name the query, then the value used as both keys and values: "
                         "`multihead_attention(q, kv, heads=...)`")
    cross = len(shapes) == 2
    for s, what in zip(shapes, (" (query)", " (key/value)") if cross else ("",)):
        _sequence_check("multihead_attention", s, what, a["heads"])
    (tq, e), (tk, ek) = shapes[0], shapes[-1]
    if ek != e:
        raise ShapeError("E225", f"multihead_attention needs a query and a key/value of the same feature size, "
                         f"got {fmt_shape(shapes[0])} (query) and {fmt_shape(shapes[1])} (key/value)",
                         f"project the key/value to {e} features first, e.g. `kv -> dense({e})`")
    heads = a["heads"]
    if e % heads:
        raise ShapeError("E224", f"multihead_attention needs the feature size E = {e} to be divisible by "
                         f"heads={heads}", _heads_hint(e, heads))
    if cross and a["causal"]:
        raise ShapeError("E226", "multihead_attention with `causal=true` is self-attention only, but it was given "
                         "a separate key/value input",
                         "drop `causal=true`, or attend a sequence to itself: `x -> multihead_attention("
                         f"{heads}, causal=true)`")
    a["head_dim"] = e // heads
    return shapes[0]


def _mha_weights(shapes, a):
    e = shapes[0][1]
    bound = 1 / math.sqrt(e)
    # NOTE: torch.nn.MultiheadAttention: xavier_uniform_ on in_proj_weight, zero biases; out_proj keeps
    # nn.Linear's default kaiming_uniform_(a=sqrt(5)), i.e. U(-1/sqrt(E), 1/sqrt(E))
    out = [Weight(name="in_proj_weight", shape=[3 * e, e], init=init_value("glorot_uniform"))]
    if a["bias"]:
        out.append(Weight(name="in_proj_bias", shape=[3 * e], init=_ZEROS))
    out.append(Weight(name="out_proj.weight", shape=[e, e], init=init_value("uniform", low=-bound, high=bound)))
    if a["bias"]:
        out.append(Weight(name="out_proj.bias", shape=[e], init=_ZEROS))
    return out


def _mha_flops(shapes, out, a):
    (tq, e), (tk, _) = shapes[0], shapes[-1]
    # projections (query Tq*E*E, keys and values 2*Tk*E*E, output Tq*E*E) + scores and values (Tq*Tk*E each)
    return 2 * (2 * tq * e * e + 2 * tk * e * e + 2 * tq * tk * e)


register(OpDef(
    "multihead_attention",
    Signature("multihead_attention", [Param("heads", Int(min=1), REQUIRED, "attention heads; must divide E"),
                                      Param("causal", Bool(), False, "step i attends to steps j <= i only"),
                                      Param("dropout", Float(0, 1, max_open=True), 0.0,
                                            "dropout on the attention weights while training"),
                                      _BIAS], 1),
    "attention", _mha_infer, weights=_mha_weights, flops=_mha_flops, merge="optional",
    doc="torch.nn.MultiheadAttention(E, heads, batch_first=True): self-attention on [T, E], or "
        "multihead_attention(q, kv, heads=...) with kv used as keys and values.",
    example="multihead_attention(4, causal=true)"))


def _positional_infer(op):
    def infer(shapes, a):
        _sequence_check(op, shapes[0])
        return shapes[0]
    return infer


register(OpDef("positional_embedding", Signature("positional_embedding", [_init("normal", mean=0.0, std=0.02)]),
               "layer", _positional_infer("positional_embedding"),
               weights=lambda shapes, a: [Weight(name="weight", shape=list(shapes[0]), init=a["init"])],
               doc="Adds a learned weight [T, E] to a sequence [T, E].", example="positional_embedding"))

register(OpDef("positional_encoding", Signature("positional_encoding", []), "layer",
               _positional_infer("positional_encoding"),
               doc="Adds the fixed sinusoids of Attention Is All You Need to a sequence [T, E].",
               example="dense(32) -> positional_encoding"))


def _normalize_weights(shapes, a):
    k = shapes[0][a["axis"]]
    return [Weight(name="mean", shape=[k], init=_ZEROS, trainable=False),
            Weight(name="var", shape=[k], init=_ONES, trainable=False)]


register(OpDef("normalize", Signature("normalize", [Param("axis", Int(), -1, "the axis whose indices have statistics"),
                                                    Param("eps", Float(0, min_open=True), 1e-5)]),
               "norm", _axis_infer("normalize"), weights=_normalize_weights,
               doc="(x - mean) / sqrt(var + eps) with fixed statistics per index of `axis` (state, not parameters).",
               example="normalize"))
