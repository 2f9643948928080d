"""The op catalogue: one entry per op, keyed by name, reused by every stage.

Each :class:`OpDef` holds the op's signature (positional and keyword parameters, defaults, type
and range checks), its shape rule, the weights it owns (the weights contract of
``docs/language.md``), and its FLOPs. The runtime's kernels (``nnc.runtime.kernels.KERNELS``), the
ONNX emitters (``nnc.onnx.emitters.EMITTERS``) and the torch engine's lowerings
(``nnc.torch.lowerings.LOWERINGS``, ``nnc.torch.emit.EMIT``) are registered under the same names;
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
3. an ONNX emitter in ``nnc/onnx/emitters.py``, a torch lowering in ``nnc/torch/lowerings.py`` and
   its ``--emit torch`` code in ``nnc/torch/emit.py``;
4. rows in the test tables: the gradient case in ``tests/test_kernels.py`` (its op list is this
   catalogue, so a missing case fails), PyTorch parity, export parity, a golden error for each new
   message in ``tests/errors/``; and the op's row in ``docs/language.md`` section 6
   (``tests/test_docs_catalogue.py`` checks it names every parameter).
"""
from __future__ import annotations

import math
from collections.abc import Callable

from ..errors import fmt_shape
from ..vocab import INITIALIZERS, init_value
from .irtypes import Weight
from ..lang import ast as A
from ..lang.types import (REQUIRED, ArgError, Bool, Enum, Float, Int, Ints, Padding, Param, ShapeList,
                          Signature, Type, fmt_number)
from ..record import record

Shape = tuple[int, ...]


class ShapeError(Exception):
    """The op cannot take these input shapes/dtypes: becomes a diagnostic at the stage."""

    def __init__(self, code: str, message: str, hint: str | None = None):
        super().__init__(message)
        self.code, self.message, self.hint = code, message, hint


@record
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
    # NOTE: a warning about what feeds the op (W201: conv1d over an embedding's features):
    # ``warn(origins, shapes, attrs)`` gets, per input, the op that made the value (seen through the
    # ops that keep its layout, LAYOUT_KEEPING kinds; None for a model input) and returns
    # ``(code, message, hint)`` or None
    warn: Callable[[list, list[Shape], dict], tuple[str, str, str] | None] | None = None
    doc: str = ""
    example: str = ""


OPS: dict[str, OpDef] = {}

#: kinds of single-input ops whose output keeps the layout of their input (an elementwise function,
#: dropout, a normalisation): a warning's ``origins`` look through them
LAYOUT_KEEPING = ("activation", "regularization", "norm")


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


_GROUPS = Param("groups", Int(min=1), 1, "channel groups (divides C and filters; C is depthwise)")


def _check_groups(op: str, channels: int, filters: int, groups: int) -> None:
    """E212 unless ``groups`` divides both the input channels and the filters (PyTorch's rule)."""
    if channels % groups == 0 and filters % groups == 0:
        return
    parts = ([f"the input channels C = {channels}"] if channels % groups else []) + \
            ([f"filters = {filters}"] if filters % groups else [])
    common = math.gcd(channels, filters)
    valid = [g for g in range(1, common + 1) if common % g == 0]
    shown = ", ".join(map(str, valid)) if len(valid) <= 12 else ", ".join(map(str, valid[:11])) + ", ..."
    depthwise = (f"; `groups={channels}` (depthwise) needs filters a multiple of {channels}"
                 if groups == channels else "")
    raise ShapeError("E212", f"{op} groups={groups} does not divide {' nor '.join(parts)}",
                     f"groups must divide both C and filters: use one of {shown}{depthwise}")


def _conv_infer(nd: int):
    op = "conv2d" if nd == 2 else "conv1d"
    expected = "[C, H, W]" if nd == 2 else "[C, L]"

    def infer(shapes, a):
        (s,) = shapes
        if len(s) != nd + 1:
            raise _rank_error("E202", op, expected, s, _reshape_hint(s, nd + 1))
        _check_groups(op, s[0], a["filters"], a["groups"])
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


def _conv_weights(shapes, a):
    w = [Weight(name="weight", shape=[a["filters"], shapes[0][0] // a["groups"], *a["kernel"]], init=a["init"])]
    if a["bias"]:
        w.append(Weight(name="bias", shape=[a["filters"]], init=_ZEROS))
    return w


def _conv_flops(shapes, out, a):
    return 2 * _prod(out) * (shapes[0][0] // a["groups"]) * _prod(a["kernel"])


def _conv1d_warn(origins, shapes, a):
    """W201: conv1d straight after an embedding slides over the embedding's features."""
    if origins[0] != "embedding":
        return None
    t, dim = shapes[0]
    return ("W201", f"conv1d takes [C, L] (channels, length); on the embedding's [T, dim] = "
            f"{fmt_shape(shapes[0])} it slides along the {dim} embedding features, with the {t} time steps "
            "as channels",
            f"to convolve over time, add `transpose([1, 0])` before it ([T, dim] -> [dim, T] = [{dim}, {t}])")


for _nd in (2, 1):
    _name = f"conv{_nd}d"
    register(OpDef(
        _name,
        Signature(_name, [Param("filters", Int(min=1), REQUIRED, "output channels"),
                          Param("kernel", Ints(_nd), REQUIRED, "kernel size"),
                          Param("stride", Ints(_nd), [1] * _nd),
                          Param("padding", Padding(_nd), "valid", "`valid`, `same`, or explicit"),
                          Param("dilation", Ints(_nd), [1] * _nd), _GROUPS, _BIAS, _init()], 2),
        "layer", _conv_infer(_nd), weights=_conv_weights, flops=_conv_flops,
        warn=_conv1d_warn if _nd == 1 else None,
        doc=("2-D convolution over [C, H, W]" if _nd == 2 else "1-D convolution over [C, L]")
        + " (cross-correlation, as PyTorch); `groups` splits the channels into independent groups.",
        example="conv2d(16, kernel=3, padding=same) -> relu" if _nd == 2 else "conv1d(8, 5, stride=2)"))


def _convt_check(a, call):
    """PyTorch's rule: each axis' output_padding is smaller than its stride or its dilation."""
    from ..lang.types import ArgError
    for i, axis in enumerate(("height", "width")):
        p, s, d = a["output_padding"][i], a["stride"][i], a["dilation"][i]
        if p >= s and p >= d:
            span = next((kw.value.span for kw in call.keywords if kw.name == "output_padding"), call.span)
            where = f" on the {axis}" if len(set(a["output_padding"])) > 1 else ""
            raise ArgError("E402", f"`conv2d_transpose` `output_padding` {p}{where} must be smaller than the "
                           f"stride {s} or the dilation {d}",
                           f"use an `output_padding` of at most {max(s, d) - 1}{where}; for a larger output "
                           "use a larger stride or kernel", span)


def _convt_infer(shapes, a):
    (s,) = shapes
    if len(s) != 3:
        raise _rank_error("E202", "conv2d_transpose", "[C, H, W]", s, _reshape_hint(s, 3))
    _check_groups("conv2d_transpose", s[0], a["filters"], a["groups"])
    out = []
    for i, axis in enumerate(("height", "width")):
        k, st, p, op_, d = (a[key][i] for key in ("kernel", "stride", "padding", "output_padding", "dilation"))
        full = (s[1 + i] - 1) * st + d * (k - 1) + op_ + 1
        size = full - 2 * p
        if size < 1:
            most = (full - 1) // 2
            raise ShapeError("E213", f"conv2d_transpose output {axis} would be {size}: the input {axis} "
                             f"{s[1 + i]} gives {full} before padding, and `padding` {p} crops {p} from each side",
                             (f"use `padding` at most {most} on the {axis}" if most else
                              f"remove the padding on the {axis}") + ", or a larger kernel or stride")
        out.append(size)
    a["pads"] = list(a["padding"]) * 2  # ONNX order: [top, left, bottom, right]
    return (a["filters"], *out)


def _convt_weights(shapes, a):
    w = [Weight(name="weight", shape=[shapes[0][0], a["filters"] // a["groups"], *a["kernel"]], init=a["init"])]
    if a["bias"]:
        w.append(Weight(name="bias", shape=[a["filters"]], init=_ZEROS))
    return w


register(OpDef(
    "conv2d_transpose",
    Signature("conv2d_transpose",
              [Param("filters", Int(min=1), REQUIRED, "output channels"),
               Param("kernel", Ints(2), REQUIRED, "kernel size"),
               Param("stride", Ints(2), [1, 1]),
               Param("padding", Ints(2, min=0, labels="ph, pw"), [0, 0], "cropped from each side of the output"),
               Param("output_padding", Ints(2, min=0, labels="h, w"), [0, 0],
                     "added to one side of the output (less than stride or dilation)"),
               Param("dilation", Ints(2), [1, 1]), _GROUPS, _BIAS, _init()], 2, check=_convt_check),
    "layer", _convt_infer, weights=_convt_weights,
    flops=lambda shapes, out, a: 2 * _prod(shapes[0]) * (a["filters"] // a["groups"]) * _prod(a["kernel"]),
    doc="Transposed 2-D convolution (PyTorch ConvTranspose2d): the gradient of conv2d with respect to its "
        "input; H' = (H-1)*stride - 2*padding + dilation*(kernel-1) + output_padding + 1.",
    example="conv2d_transpose(16, 2, stride=2)"))


def _upsample_infer(shapes, a):
    (s,) = shapes
    if len(s) != 3:
        raise ShapeError("E214", f"upsample2d expects [C, H, W] per example, got {fmt_shape(s)}",
                         _reshape_hint(s, 3) or "reshape it to [C, H, W] first with `reshape([...])`")
    return (s[0], s[1] * a["scale"][0], s[2] * a["scale"][1])


register(OpDef(
    "upsample2d",
    Signature("upsample2d", [Param("scale", Ints(2, labels="sh, sw"), REQUIRED, "integer scale factors"),
                             Param("mode", Enum(("nearest", "bilinear"), "upsample mode"), "nearest",
                                   "`nearest` or `bilinear` (align_corners=False)")], 1),
    "shape", _upsample_infer,
    doc="Scales height and width by integer factors: nearest neighbour, or bilinear with PyTorch's "
        "align_corners=False.",
    example="upsample2d(2, mode=bilinear)"))


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


_POOL_LAYOUT = {1: "[C, L]", 2: "[C, H, W]"}
_POOL_AXES = {1: ("length",), 2: ("height", "width")}


def _pool_rank_error(op: str, nd: int, s: Shape) -> ShapeError:
    """E210 for a pool given the wrong rank; the hint names the pool of the other rank when the
    value has that rank (`maxpool1d` on an image points to `maxpool2d`, and back)."""
    other = 3 - nd
    if len(s) == other + 1:
        peer = op.replace(f"{nd}d", f"{other}d")
        what = "images [C, H, W]" if other == 2 else "signals and sequences [C, L]"
        hint = f"use `{peer}` for {what}"
    else:
        hint = _reshape_hint(s, nd + 1)
    return ShapeError("E210", f"{op} expects {_POOL_LAYOUT[nd]} per example, got {fmt_shape(s)}", hint)


def _pool_out(n: int, k: int, s: int, p: int, ceil: bool) -> int:
    """PyTorch's output size of one pooled axis (``pooling_output_shape``): floor, or ceil with the
    last window dropped when it would start in the right padding."""
    out = (n + 2 * p - k + (s - 1 if ceil else 0)) // s + 1
    if ceil and (out - 1) * s >= n + p:
        out -= 1
    return out


def _pool_infer(op, nd):
    def infer(shapes, a):
        (s,) = shapes
        if len(s) != nd + 1:
            raise _pool_rank_error(op, nd, s)
        out, overhang = [], []
        for i, name in enumerate(_POOL_AXES[nd]):
            n, k, st, p = s[1 + i], a["size"][i], a["stride"][i], a["padding"][i]
            size = _pool_out(n, k, st, p, a["ceil_mode"])
            if size < 1:
                raise ShapeError("E206", f"{op} size {k} does not fit the input {name} {n}"
                                 + (f" (padding {2 * p})" if p else ""),
                                 "use a smaller pool size, or pool earlier")
            out.append(size)
            # NOTE: with ceil_mode the last window may reach past the padded end; those cells are
            # neither input nor padding (never the max, not counted by avgpool's divisor)
            overhang.append(max(0, (size - 1) * st + k - (n + 2 * p)))
        a["pads"] = list(a["padding"]) * 2    # ONNX order: [x1_begin, x2_begin, ..., x1_end, x2_end]
        a["overhang"] = overhang
        return (s[0], *out)
    return infer


class _StrideDefault(Ints):
    """``stride`` of a pool: defaults to the pool size."""

    def render(self, value):
        return "size" if value is None else super().render(value)

    def json_schema(self):
        return {"anyOf": [super().json_schema(), {"type": "null"}]}


_CEIL_MODE = Param("ceil_mode", Bool(), False, "round the output size up (PyTorch's rule)")

for _nd in (2, 1):
    for _kind in ("max", "avg"):
        _name = f"{_kind}pool{_nd}d"
        register(OpDef(
            _name,
            Signature(_name, [Param("size", Ints(_nd), REQUIRED, "pool window"),
                              Param("stride", _StrideDefault(_nd), None, "defaults to `size`"),
                              Param("padding", Ints(_nd, min=0, labels="ph, pw") if _nd == 2 else Ints(1, min=0),
                                    [0] * _nd),
                              _CEIL_MODE], 1,
                             check=_pool_check),
            "pool", _pool_infer(_name, _nd),
            doc=("Max pooling (padding never wins)" if _kind == "max" else
                 "Average pooling; padded zeros count in the average (PyTorch's count_include_pad=True)")
            + (" over [C, H, W]." if _nd == 2 else " over [C, L]."),
            example=f"{_name}(2)" if _nd == 2 else f"{_name}(3, stride=2, ceil_mode=true)"))


def _global_pool_infer(op, nd):
    def infer(shapes, a):
        (s,) = shapes
        if len(s) != nd + 1:
            raise _pool_rank_error(op, nd, s)
        return (s[0],)
    return infer


for _nd, _kind in ((2, "avg"), (2, "max"), (1, "avg"), (1, "max")):
    _name = f"global{_kind}pool{_nd}d"
    _over = "height and width: [C, H, W]" if _nd == 2 else "the length: [C, L]"
    register(OpDef(_name, Signature(_name, []), "pool", _global_pool_infer(_name, _nd),
                   doc=f"{'Mean' if _kind == 'avg' else 'Maximum'} over {_over} -> [C]"
                   + (" (the gradient goes to the first maximum)." if _kind == "max" else "."),
                   example=_name))


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
# axis ops: transpose, select, slice (they keep values: token ids pass through them) and the
# reductions mean, max, sum (axes are per-example: the batch axis is not counted)

class _AxisList(Type):
    """A list of per-example axes (``transpose``'s ``perm``); negative entries count from the end."""

    doc = "a list of axes"

    def coerce(self, v):
        if not isinstance(v, A.List):
            raise self.bad(v, "e.g. `[1, 0]` swaps the two axes of [T, F]")
        if not v.items:
            raise ArgError("E401", "expected a list of axes, got an empty list", "e.g. `[1, 0]`", v.span)
        return [Int().coerce(x) for x in v.items]

    def json_schema(self):
        return {"type": "array", "items": {"type": "integer"}, "minItems": 1}


def _axis(op: str, s: Shape, axis: int) -> int:
    """``axis`` of ``s`` made non-negative, or E211."""
    rank = len(s)
    if not -rank <= axis < rank:
        raise ShapeError("E211", f"{op} axis {axis} is out of range for shape {fmt_shape(s)}",
                         f"use an axis in [{-rank}, {rank - 1}] (the batch axis is not counted)")
    return axis % rank


def _drop_axis(op: str, s: Shape, axis: int, a: dict) -> Shape:
    """``s`` without ``axis`` (normalised into ``a["axis"]``); E218 if none would be left."""
    axis = _axis(op, s, axis)
    a["axis"] = axis
    if len(s) == 1:
        keep = (f"slice(0, {a['index']}, {a['index'] + 1})" if op == "select"
                else f"reshape([1, {s[0]}]) -> {op}(1)")
        raise ShapeError("E218", f"{op} over the only axis of {fmt_shape(s)} would leave no axis per example",
                         f"keep an axis of size 1: `{keep}` gives [1]")
    return s[:axis] + s[axis + 1:]


def _transpose_infer(shapes, a):
    (s,) = shapes
    rank = len(s)
    perm = a["perm"]
    norm = [p % rank if -rank <= p < rank else None for p in perm]
    if len(perm) != rank or None in norm or sorted(norm) != list(range(rank)):
        if perm[:1] == [0] and sorted(perm) == list(range(rank + 1)):     # the batch axis written too
            fixed = ", ".join(str(p - 1) for p in perm[1:])
            hint = f"the batch axis is not counted: `transpose([{fixed}])`"
        else:
            example = ", ".join(str(i) for i in reversed(range(rank)))
            hint = (f"list each axis 0..{rank - 1} exactly once (the batch axis is not counted), "
                    f"e.g. `transpose([{example}])`")
        raise ShapeError("E215", f"transpose perm {fmt_shape(perm)} is not a permutation of the {rank} axes "
                         f"of {fmt_shape(s)}", hint)
    a["perm"] = norm
    return tuple(s[p] for p in norm)


def _select_infer(shapes, a):
    (s,) = shapes
    axis = _axis("select", s, a["axis"])
    n, index = s[axis], a["index"]
    if not -n <= index < n:
        raise ShapeError("E216", f"select index {index} is out of range for axis {axis} of size {n} "
                         f"in {fmt_shape(s)}",
                         f"use an index in [{-n}, {n - 1}]; -1 is the last")
    a["index"] = index % n
    return _drop_axis("select", s, axis, a)


def _slice_infer(shapes, a):
    (s,) = shapes
    axis = _axis("slice", s, a["axis"])
    n = s[axis]
    start, end = (min(max(b + n if b < 0 else b, 0), n) for b in (a["start"], a["end"]))
    if end <= start:
        raise ShapeError("E217", f"slice({a['axis']}, {a['start']}, {a['end']}) of {fmt_shape(s)} is empty: "
                         f"axis {axis} has {n} entries, and the bounds give [{start}, {end})",
                         f"keep at least one entry: `start` must come before `end` within [0, {n}] "
                         "(negative bounds count from the end)")
    a["axis"], a["start"], a["end"] = axis, start, end
    return s[:axis] + (end - start,) + s[axis + 1:]


_AXIS_PARAM = Param("axis", Int(), REQUIRED, "per-example axis (negative counts from the end)")

register(OpDef("transpose", Signature("transpose", [Param("perm", _AxisList(), REQUIRED,
                                                          "the new order of the per-example axes")], 1),
               "shape", _transpose_infer, input_dtype="any", passes_values=True,
               doc="Permutes the per-example axes (the batch axis stays first).", example="transpose([1, 0])"))
register(OpDef("select", Signature("select", [_AXIS_PARAM, Param("index", Int(), REQUIRED,
                                                                 "position along `axis`; negative counts from the end")], 2),
               "shape", _select_infer, input_dtype="any", passes_values=True,
               doc="Takes one position along `axis`, which is dropped.", example="select(0, -1)"))
register(OpDef("slice", Signature("slice", [_AXIS_PARAM,
                                            Param("start", Int(), REQUIRED, "first position kept (Python slice bound)"),
                                            Param("end", Int(), REQUIRED, "position after the last one kept")], 3),
               "shape", _slice_infer, input_dtype="any", passes_values=True,
               doc="Keeps positions [start, end) of `axis` (Python slice bounds, clamped; step 1).",
               example="slice(0, -4, 1000)"))

for _name, _doc in (("mean", "Mean"), ("max", "Maximum (the gradient goes to the first maximum)"),
                    ("sum", "Sum")):
    register(OpDef(_name, Signature(_name, [_AXIS_PARAM], 1), "reduce",
                   lambda shapes, a, _op=_name: _drop_axis(_op, shapes[0], a["axis"], a),
                   doc=f"{_doc} over `axis`, which is dropped.", example=f"{_name}(0)"))


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


def _rnn_suffixes(a) -> list[list[str]]:
    """The weight-name suffix of each layer's directions (forward, then backward): ``[[""]]`` for
    one forward layer (the names ``weight_ih``, ...), else PyTorch's ``_l{k}`` and ``_l{k}_reverse``."""
    if a["layers"] == 1 and not a["bidirectional"]:
        return [[""]]
    dirs = ("", "_reverse") if a["bidirectional"] else ("",)
    return [[f"_l{k}{d}" for d in dirs] for k in range(a["layers"])]


def _rnn_check(op):
    def check(a, call):
        from ..lang.types import ArgError
        if a["dropout"] and a["layers"] == 1:
            span = next((kw.span for kw in call.keywords if kw.name == "dropout"), call.span)
            raise ArgError("E220", f"{op} `dropout={a['dropout']:g}` needs stacked layers: it drops between "
                           "layers, and `layers=1` has none",
                           f"use `layers=2` or more, or put `dropout({a['dropout']:g})` after the {op}", span)
    return check


def _rnn_infer(op):
    def infer(shapes, a):
        (s,) = shapes
        if len(s) != 2:
            hint = (f"make it a sequence of {s[0]} steps of 1 feature first: `reshape([{s[0]}, 1])`" if len(s) == 1 else
                    "flatten the image rows into a sequence with `reshape([T, F])`")
            raise ShapeError("E209", f"{op} expects a sequence [T, F] per example, got {fmt_shape(s)}", hint)
        a["suffixes"] = _rnn_suffixes(a)
        out = len(a["suffixes"][0]) * a["units"]
        return (s[0], out) if a["return_sequences"] else (out,)
    return infer


def _rnn_weights(op):
    g = _GATES[op]

    def weights(shapes, a):
        u, f = a["units"], shapes[0][1]
        bias_ih = init_value("zeros") if op != "lstm" else {"kind": "lstm_forget_bias"}
        out = []
        for k, suffixes in enumerate(a["suffixes"]):      # set by the shape rule
            fk = f if k == 0 else len(suffixes) * u       # layer k > 0 reads D*units features
            for s in suffixes:
                out += [Weight(name=f"weight_ih{s}", shape=[g * u, fk], init=a["init"], blocks=g),
                        Weight(name=f"weight_hh{s}", shape=[g * u, u], init=a["recurrent_init"], blocks=g),
                        Weight(name=f"bias_ih{s}", shape=[g * u], init=bias_ih, blocks=g),
                        Weight(name=f"bias_hh{s}", shape=[g * u], init=_ZEROS, blocks=g)]
        return out
    return weights


def _rnn_flops(op):
    g = _GATES[op]

    def flops(shapes, out, a):
        (t, f), u = shapes[0], a["units"]
        d = 2 if a["bidirectional"] else 1
        return sum(d * 2 * t * g * u * ((f if k == 0 else d * u) + u) for k in range(a["layers"]))
    return flops


for _name in ("rnn", "lstm", "gru"):
    _params = [Param("units", Int(min=1), REQUIRED, "hidden size"),
               Param("return_sequences", Bool(), False, "output every step [T, D*units]")]
    if _name == "rnn":
        _params.append(Param("activation", Enum(("tanh", "relu"), "activation"), "tanh"))
    _params += [Param("bidirectional", Bool(), False, "also run backwards in time; outputs side by side"),
                Param("layers", Int(min=1), 1, "stacked layers, each reading the previous one's sequence"),
                Param("dropout", Float(0, 1, max_open=True), 0.0,
                      "dropout on the input of layers 2, 3, ... while training"),
                _init(), Param("recurrent_init", INITIALIZERS, init_value("orthogonal"),
                               "initializer of weight_hh")]
    register(OpDef(_name, Signature(_name, _params, 1, check=_rnn_check(_name)), "layer", _rnn_infer(_name),
                   weights=_rnn_weights(_name), flops=_rnn_flops(_name),
                   doc={"rnn": "Elman RNN, h = act(W_ih x + b_ih + W_hh h + b_hh).",
                        "lstm": "LSTM with PyTorch's gate order (input, forget, cell, output).",
                        "gru": "GRU with PyTorch's formulas (reset gate after the recurrent product)."}[_name]
                   + " Optionally bidirectional and stacked (PyTorch's `bidirectional`, `num_layers`, `dropout`).",
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


def readers_of(nodes) -> dict[str, list]:
    """Value id -> the nodes (of the IR, either form) that read it, in model order (graph outputs
    not included)."""
    readers: dict[str, list] = {}
    for node in nodes:
        for src in node.inputs:
            readers.setdefault(src, []).append(node)
    return readers


def embeddings_reading(nodes, value: str) -> list:
    """The nodes (of the IR, either form) that take token ids and read the value ``value`` (an input
    name or node id), directly or through ops that pass its values on unchanged (``passes_values``)."""
    readers = readers_of(nodes)
    found, todo, seen = [], [value], set()
    while todo:
        v = todo.pop()
        if v in seen:
            continue
        seen.add(v)
        for node in readers.get(v, ()):
            if OPS[node.op].input_dtype == "int64":   # an op that takes token ids: an embedding
                found.append(node)
            elif OPS[node.op].passes_values:
                todo.append(node.id)
    return found
