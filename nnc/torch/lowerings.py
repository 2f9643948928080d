"""Torch lowerings: one ``torch.nn.Module`` per op of the catalogue, keyed by the op's name.

    layer = LOWERINGS[op](op, attrs, weights, trainable, ctx)
    y = layer(*xs)

- ``attrs``: the node's attrs as the compiler normalised them (the same dict the NumPy kernel
  reads: ``pads``, ``overhang``, non-negative axes, recurrent ``suffixes``...);
- ``weights``: the node's arrays by their contract names (NumPy, PyTorch's layouts); each becomes a
  parameter (``trainable`` names them) or a buffer (state: batchnorm's running statistics,
  normalize's mean and var) under that very name, so ``state_dict`` keys are the contract's. A
  dotted name (``out_proj.weight``) lives in a child module (``out_proj``), as in PyTorch;
- ``ctx``: the :class:`RunContext` shared by every layer of a model: nnc's random generator (the
  dropout masks are drawn from it exactly as the NumPy kernels draw them) and, for data-parallel
  training, where this process' rows sit in the global batch.

Every lowering computes what its NumPy kernel computes (``nnc/runtime/kernels/``, the reference),
forward and gradient, in the input's dtype; ``tests/test_torch_engine_ops.py`` runs both on the
kernels' case table. Where the NumPy kernel fixes a convention PyTorch leaves open it is kept here:
SAME_UPPER padding (the odd pad at the end), pools with nnc's ceil_mode overhang (as PyTorch
computes it), the first maximum taking a pool's gradient, batchnorm's momentum (nnc's 0.9 is
PyTorch's 0.1) and a batch of one, the perceptron ``step`` (straight-through gradient). Shapes
include the batch axis N first; per-example axes in attrs exclude it (torch dim = axis + 1).
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

#: op name -> the layer class that lowers it
LOWERINGS: dict[str, type["Layer"]] = {}


def lowering(*names: str):
    """Class decorator: register a :class:`Layer` subclass as the lowering of each of ``names``."""
    def deco(cls):
        for name in names:
            LOWERINGS[name] = cls
        return cls
    return deco


# ----------------------------------------------------------------------------------------------
# the run context and the layer base class

_NUMPY_DTYPE = {torch.float32: np.float32, torch.float64: np.float64}


class RunContext:
    """What a forward needs besides its inputs; the engine sets it before each forward.

    rng: nnc's generator (``numpy.random.Generator``) that dropout masks are drawn from.
    batch: the rows of the whole (global) batch; offset: this process' first row in it. A
    process holds rows [offset, offset + n) of every batch (n = its inputs' first dimension).
    world: the number of processes; with more than one, batchnorm reduces its statistics over all
    of them (``torch.distributed``'s default group).
    """

    def __init__(self):
        self.rng: np.random.Generator | None = None
        self.batch = 0
        self.offset = 0
        self.world = 1

    def keep_mask(self, shape, rate: float, like: torch.Tensor) -> torch.Tensor:
        """The scaled inverted-dropout mask for a value of ``shape`` (N_local, ...) like ``like``.

        Drawn exactly as the NumPy kernels draw it: ``rng.random((N, ...)) >= rate`` over the
        WHOLE batch (so every process consumes the generator identically and the masks equal a
        one-process run's), this process' rows taken, cast to the dtype and scaled by
        ``1 / (1 - rate)`` in that dtype."""
        if self.rng is None:
            raise RuntimeError("a training forward needs RunContext.rng (nnc's generator) to draw dropout masks")
        n = shape[0]
        full = (self.batch or n, *shape[1:])
        keep = self.rng.random(full) >= rate
        mask = keep[self.offset:self.offset + n].astype(_NUMPY_DTYPE[like.dtype]) * (1 / (1 - rate))
        return torch.from_numpy(mask).to(like.device)


class Layer(nn.Module):
    """One IR node: its weights registered under their contract names, its attrs in ``self.a``."""

    def __init__(self, op: str, attrs: dict, weights: dict[str, np.ndarray], trainable, ctx: RunContext):
        super().__init__()
        self.op = op
        self.a = dict(attrs)
        self.ctx = ctx
        for name, array in weights.items():
            *path, leaf = name.split(".")
            owner: nn.Module = self
            for part in path:
                if part not in owner._modules:
                    owner.add_module(part, nn.Module())
                owner = owner._modules[part]
            tensor = torch.tensor(np.asarray(array))        # a copy: the caller's arrays stay theirs
            if name in trainable:
                owner.register_parameter(leaf, nn.Parameter(tensor))
            else:
                owner.register_buffer(leaf, tensor)

    def optional(self, name: str, owner: nn.Module | None = None):
        """The parameter ``name`` if the layer has it (biases are optional), else None."""
        owner = self if owner is None else owner
        return owner._parameters.get(name)

    def extra_repr(self) -> str:
        shown = {k: v for k, v in self.a.items() if k not in ("init", "recurrent_init", "suffixes")}
        return f"{self.op}: " + ", ".join(f"{k}={v}" for k, v in shown.items())


def _dim(axis: int) -> int:
    """A per-example axis (batch excluded) as a torch dim."""
    return axis + 1 if axis >= 0 else axis


# ----------------------------------------------------------------------------------------------
# dense and convolution

@lowering("dense")
class Dense(Layer):
    """x: (N, F) or (N, T, F) -> (N, [T,] units); y = x weight^T + bias."""

    def forward(self, x):
        return F.linear(x, self.weight, self.optional("bias"))


@lowering("conv2d")
class Conv2D(Layer):
    """x: (N, C, H, W) -> (N, filters, Ho, Wo). ``pads`` (top, left, bottom, right) may be
    asymmetric (SAME_UPPER puts the odd pad last): then the input is padded first."""

    def forward(self, x):
        a = self.a
        t, l, b, r = a["pads"]
        if t == b and l == r:
            return F.conv2d(x, self.weight, self.optional("bias"), a["stride"], (t, l), a["dilation"], a["groups"])
        return F.conv2d(F.pad(x, (l, r, t, b)), self.weight, self.optional("bias"), a["stride"], 0,
                        a["dilation"], a["groups"])


@lowering("conv1d")
class Conv1D(Layer):
    """x: (N, C, L) -> (N, filters, Lo); ``pads`` (left, right)."""

    def forward(self, x):
        a = self.a
        l, r = a["pads"]
        if l == r:
            return F.conv1d(x, self.weight, self.optional("bias"), a["stride"], l, a["dilation"], a["groups"])
        return F.conv1d(F.pad(x, (l, r)), self.weight, self.optional("bias"), a["stride"], 0, a["dilation"],
                        a["groups"])


@lowering("conv2d_transpose")
class Conv2DTranspose(Layer):
    """x: (N, C, H, W) -> (N, filters, Ho, Wo), PyTorch's ConvTranspose2d; weight (C, filters/groups, kh, kw)."""

    def forward(self, x):
        a = self.a
        return F.conv_transpose2d(x, self.weight, self.optional("bias"), a["stride"], a["padding"],
                                  a["output_padding"], a["groups"], a["dilation"])


@lowering("upsample2d")
class Upsample2D(Layer):
    """x: (N, C, H, W) -> (N, C, H*sh, W*sw). nearest: each value repeated (exact, no index
    arithmetic); bilinear: PyTorch's align_corners=False."""

    def forward(self, x):
        sh, sw = self.a["scale"]
        if self.a["mode"] == "nearest":
            n, c, h, w = x.shape
            return x[:, :, :, None, :, None].expand(n, c, h, sh, w, sw).reshape(n, c, h * sh, w * sw)
        return F.interpolate(x, scale_factor=(float(sh), float(sw)), mode="bilinear", align_corners=False)


# ----------------------------------------------------------------------------------------------
# pooling

def _counts(n: int, k: int, s: int, out: int) -> np.ndarray:
    """Per window of one axis: its cells inside the padded input (the avg divisor with overhang)."""
    starts = np.arange(out) * s
    return np.minimum(starts + k, n) - starts


def _pool2d(x, a: dict, kind: str):
    """x: (N, C, H, W); a: size, stride, pads (top, left, bottom, right), overhang (oh, ow) as the
    compiler derives them. Symmetric pads (all the compiler writes) are PyTorch's own pool, with
    ceil_mode where the last window overhangs: nnc's overhang is PyTorch's rule. Asymmetric pads
    pad explicitly (-inf for max, zeros for avg) and divide by the cells inside the padded input."""
    (kh, kw), (sh, sw), (pt, pl, pb, pr), (oh, ow) = a["size"], a["stride"], a["pads"], a["overhang"]
    if pt == pb and pl == pr:
        if kind == "max":
            return F.max_pool2d(x, (kh, kw), (sh, sw), (pt, pl), ceil_mode=bool(oh or ow))
        return F.avg_pool2d(x, (kh, kw), (sh, sw), (pt, pl), ceil_mode=bool(oh or ow), count_include_pad=True)
    if kind == "max":
        return F.max_pool2d(F.pad(x, (pl, pr + ow, pt, pb + oh), value=-math.inf), (kh, kw), (sh, sw))
    xp = F.pad(x, (pl, pr + ow, pt, pb + oh))
    if not (oh or ow):
        return F.avg_pool2d(xp, (kh, kw), (sh, sw))
    total = F.avg_pool2d(xp, (kh, kw), (sh, sw), divisor_override=1)
    ho, wo = total.shape[2:]
    counts = np.multiply.outer(_counts(x.shape[2] + pt + pb, kh, sh, ho), _counts(x.shape[3] + pl + pr, kw, sw, wo))
    return total / torch.from_numpy(counts).to(x)


@lowering("maxpool2d", "avgpool2d")
class Pool2D(Layer):
    """x: (N, C, H, W) -> (N, C, Ho, Wo)."""

    def forward(self, x):
        return _pool2d(x, self.a, self.op[:3])


@lowering("maxpool1d", "avgpool1d")
class Pool1D(Layer):
    """x: (N, C, L) -> (N, C, Lo): the 2-D pool on (N, C, 1, L), as the NumPy kernel runs it."""

    def forward(self, x):
        a = self.a
        (pl, pr), (o,) = a["pads"], a["overhang"]
        a2 = {"size": [1, *a["size"]], "stride": [1, *a["stride"]], "pads": [0, pl, 0, pr], "overhang": [0, o]}
        return _pool2d(x[:, :, None, :], a2, self.op[:3])[:, :, 0, :]


@lowering("globalavgpool2d", "globalavgpool1d")
class GlobalAvgPool(Layer):
    """x: (N, C, H, W) or (N, C, L) -> (N, C)."""

    def forward(self, x):
        return x.mean(dim=tuple(range(2, x.dim())))


@lowering("globalmaxpool2d", "globalmaxpool1d")
class GlobalMaxPool(Layer):
    """x: (N, C, H, W) or (N, C, L) -> (N, C); the gradient goes to the first maximum."""

    def forward(self, x):
        return x.reshape(x.shape[0], x.shape[1], math.prod(x.shape[2:])).max(dim=2).values


# ----------------------------------------------------------------------------------------------
# shape ops, reductions, merges

@lowering("flatten")
class Flatten(Layer):
    def forward(self, x):
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))


@lowering("reshape")
class Reshape(Layer):
    def forward(self, x):
        return x.reshape(x.shape[0], *self.a["shape"])


@lowering("identity", "linear")
class Identity(Layer):
    def forward(self, x):
        return x


@lowering("transpose")
class Transpose(Layer):
    def forward(self, x):
        return x.permute(0, *(p + 1 for p in self.a["perm"]))


@lowering("select")
class Select(Layer):
    def forward(self, x):
        return x.select(self.a["axis"] + 1, self.a["index"])


@lowering("slice")
class Slice(Layer):
    def forward(self, x):
        a = self.a
        return x.narrow(a["axis"] + 1, a["start"], a["end"] - a["start"])


@lowering("mean", "max", "sum")
class Reduce(Layer):
    """Over per-example axis ``axis``, which is dropped; max's gradient goes to the first maximum."""

    def forward(self, x):
        dim = self.a["axis"] + 1
        if self.op == "max":
            return x.max(dim=dim).values
        return x.mean(dim=dim) if self.op == "mean" else x.sum(dim=dim)


@lowering("concat")
class Concat(Layer):
    def forward(self, *xs):
        return torch.cat(xs, dim=_dim(self.a["axis"]))


def _aligned(xs):
    """A lower-rank input gets size-1 axes after the batch axis: per-example axes align from the
    right and the batch axis never broadcasts (the NumPy kernel's rule)."""
    rank = max(x.dim() for x in xs)
    return [x if x.dim() == rank else x.reshape(x.shape[0], *(1,) * (rank - x.dim()), *x.shape[1:]) for x in xs]


@lowering("add", "multiply")
class Broadcast(Layer):
    """n >= 2 inputs whose per-example shapes broadcast -> their sum or product, left to right."""

    def forward(self, *xs):
        al = _aligned(xs)
        y = al[0]
        for x in al[1:]:
            y = y + x if self.op == "add" else y * x
        return y


# ----------------------------------------------------------------------------------------------
# activations

class _Step(torch.autograd.Function):
    """Heaviside forward (1 where x > 0, else 0), straight-through backward: the perceptron rule."""

    @staticmethod
    def forward(ctx, x):
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        return g


#: elementwise activations: op -> f(x, attrs); each is PyTorch's function of that name, whose values
#: and gradients (at the kinks too) the NumPy kernels reproduce
POINTWISE = {
    "relu": lambda x, a: F.relu(x),
    "sigmoid": lambda x, a: torch.sigmoid(x),
    "tanh": lambda x, a: torch.tanh(x),
    "leaky_relu": lambda x, a: F.leaky_relu(x, a["alpha"]),
    "elu": lambda x, a: F.elu(x, a["alpha"]),
    "selu": lambda x, a: F.selu(x),
    "gelu": lambda x, a: F.gelu(x),                      # the exact (erf) form
    "softplus": lambda x, a: F.softplus(x),              # beta=1, threshold=20
    "silu": lambda x, a: F.silu(x),
    "step": lambda x, a: _Step.apply(x),
    "relu6": lambda x, a: F.relu6(x),
    # NOTE: not F.hardsigmoid, whose CPU backward scales by 1/6 rounded to float32 even in float64
    "hardsigmoid": lambda x, a: F.relu6(x + 3) * (1 / 6),
    "hardswish": lambda x, a: F.hardswish(x),
    "clip": lambda x, a: torch.clamp(x, a["min"], a["max"]),
}


@lowering(*POINTWISE)
class Pointwise(Layer):
    def __init__(self, op, attrs, weights, trainable, ctx):
        super().__init__(op, attrs, weights, trainable, ctx)
        self.fn = POINTWISE[op]

    def forward(self, x):
        return self.fn(x, self.a)


@lowering("softmax", "log_softmax")
class Softmax(Layer):
    def forward(self, x):
        fn = F.softmax if self.op == "softmax" else F.log_softmax
        return fn(x, dim=_dim(self.a["axis"]))


# ----------------------------------------------------------------------------------------------
# regularisation and normalisation

@lowering("dropout")
class Dropout(Layer):
    """Inverted dropout with nnc's masks while training (:meth:`RunContext.keep_mask`)."""

    def forward(self, x):
        rate = float(self.a["rate"])
        if not self.training or rate == 0.0:
            return x
        return x * self.ctx.keep_mask(x.shape, rate, x)


def _all_reduce(t: torch.Tensor, ctx: RunContext) -> torch.Tensor:
    if ctx.world > 1:
        dist.all_reduce(t)
    return t


class _GlobalBatchNorm(torch.autograd.Function):
    """Training batchnorm whose statistics are those of the whole batch over every process.

    x: (N_local, C, ...). The sums of x, then of (x - mean)^2, are all-reduced (two passes, as the
    NumPy kernel computes mean and variance), so any backend works (gloo on CPU, NCCL). The
    backward all-reduces the sums of dy and dy * xhat that the input gradient needs and returns
    this process' own weight gradients (DDP averages those). ``count``: the values per channel in
    the whole batch. With one value per channel the biased variance (0) updates the running one,
    as the NumPy kernel does."""

    @staticmethod
    def forward(fctx, x, weight, bias, running_mean, running_var, momentum, eps, count, rctx):
        axes = [0, *range(2, x.dim())]
        shape = [1, x.shape[1]] + [1] * (x.dim() - 2)
        mean = _all_reduce(x.sum(axes), rctx) / count
        xc = x - mean.view(shape)
        var = _all_reduce((xc * xc).sum(axes), rctx) / count
        unbiased = var * (count / (count - 1)) if count > 1 else var
        running_mean.mul_(momentum).add_((1 - momentum) * mean)
        running_var.mul_(momentum).add_((1 - momentum) * unbiased)
        inv_std = 1 / torch.sqrt(var + eps)
        xhat = xc * inv_std.view(shape)
        fctx.save_for_backward(xhat, inv_std, weight)
        fctx.info = (axes, shape, count, rctx)
        return xhat * weight.view(shape) + bias.view(shape)

    @staticmethod
    def backward(fctx, dy):
        xhat, inv_std, weight = fctx.saved_tensors
        axes, shape, count, rctx = fctx.info
        dweight = (dy * xhat).sum(axes)
        dbias = dy.sum(axes)
        total = _all_reduce(torch.stack([dbias, dweight]), rctx)
        dx = (weight * inv_std).view(shape) * (dy - (total[0] / count).view(shape)
                                               - xhat * (total[1] / count).view(shape))
        return dx, dweight, dbias, None, None, None, None, None, None


@lowering("batchnorm")
class BatchNorm(Layer):
    """Over axis 1 and every axis but it: x (N, C), (N, C, L) or (N, C, H, W). Training normalises
    with the batch's statistics and updates the running ones in place: ``running = momentum *
    running + (1 - momentum) * batch`` (nnc's momentum 0.9 is PyTorch's 0.1), unbiased variance."""

    def forward(self, x):
        a = self.a
        eps, momentum = float(a["eps"]), float(a["momentum"])
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, eps)
        per_row = math.prod(x.shape[2:])
        count = (self.ctx.batch or x.shape[0]) * per_row
        if self.ctx.world == 1 and count > 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, True,
                                1 - momentum, eps)
        return _GlobalBatchNorm.apply(x, self.weight, self.bias, self.running_mean, self.running_var, momentum,
                                      eps, count, self.ctx)


@lowering("layernorm")
class LayerNorm(Layer):
    def forward(self, x):
        return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, float(self.a["eps"]))


@lowering("embedding")
class Embedding(Layer):
    """x: (N, T) token ids -> (N, T, dim)."""

    def forward(self, x):
        return F.embedding(x if not x.is_floating_point() else x.long(), self.weight)


@lowering("normalize")
class Normalize(Layer):
    """(x - mean) / sqrt(var + eps), fixed statistics per index of ``axis`` (state, not trained)."""

    def forward(self, x):
        shape = [1] * x.dim()
        shape[self.a["axis"] + 1] = x.shape[self.a["axis"] + 1]
        inv_std = 1 / torch.sqrt(self.var.to(x.dtype) + float(self.a["eps"]))
        return (x - self.mean.to(x.dtype).view(shape)) * inv_std.view(shape)


# ----------------------------------------------------------------------------------------------
# recurrent layers

_RNN_WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


@lowering("rnn", "lstm", "gru")
class Recurrent(Layer):
    """x: (N, T, F) -> (N, D*units), or (N, T, D*units) with return_sequences: PyTorch's
    ``torch.lstm`` / ``torch.gru`` / ``torch.rnn_tanh`` / ``torch.rnn_relu`` (the functions behind
    nn.LSTM & co., cuDNN on a GPU) with the contract's weights. Dropout between stacked layers runs
    the layers one at a time with nnc's masks in between."""

    def _function(self):
        if self.op == "rnn":
            return torch.rnn_tanh if self.a["activation"] == "tanh" else torch.rnn_relu
        return torch.lstm if self.op == "lstm" else torch.gru

    def _run(self, x, layers):
        suffixes, u = self.a["suffixes"], self.a["units"]
        d = len(suffixes[0])
        flat = [getattr(self, name + s) for k in layers for s in suffixes[k] for name in _RNN_WEIGHTS]
        h0 = x.new_zeros(len(layers) * d, x.shape[0], u)
        hx = (h0, h0) if self.op == "lstm" else h0
        out = self._function()(x, hx, flat, True, len(layers), 0.0, self.training, d == 2, True)
        return out[0], out[1]                                # (N, T, D*u), h_n (layers*D, N, u)

    def forward(self, x):
        a = self.a
        layers, d, rate = len(a["suffixes"]), len(a["suffixes"][0]), float(a["dropout"])
        if self.training and rate > 0 and layers > 1:
            out = x
            for k in range(layers):
                if k:
                    out = out * self.ctx.keep_mask(out.shape, rate, out)
                out, h_n = self._run(out, [k])
        else:
            out, h_n = self._run(x, list(range(layers)))
        if a["return_sequences"]:
            return out
        return torch.cat(list(h_n[-d:]), dim=-1)             # PyTorch's h_n[-D:], side by side


# ----------------------------------------------------------------------------------------------
# attention and positional encodings

@functools.lru_cache(maxsize=32)
def _future(tq: int, tk: int, device: torch.device) -> torch.Tensor:
    return torch.triu(torch.ones(tq, tk, dtype=torch.bool, device=device), 1)


@lowering("multihead_attention")
class MultiheadAttention(Layer):
    """torch.nn.MultiheadAttention(E, heads, batch_first=True)'s output: xs = [x] (N, T, E) for
    self-attention, or [q, kv] (N, Tq, E), (N, Tk, E). Without active dropout it is PyTorch's
    ``scaled_dot_product_attention``; with it, the weights are computed and masked with nnc's mask
    (drawn for (N, H, Tq, Tk) as the NumPy kernel draws it)."""

    def __init__(self, op, attrs, weights, trainable, ctx):
        super().__init__(op, attrs, weights, trainable, ctx)
        if not self.a["bias"]:
            self.register_parameter("in_proj_bias", None)
            self.out_proj.register_parameter("bias", None)

    def forward(self, *xs):
        a = self.a
        q, kv = xs[0], xs[-1]
        n, tq, e = q.shape
        tk = kv.shape[1]
        h, d = a["heads"], a["head_dim"]
        w, b = self.in_proj_weight, self.in_proj_bias
        if len(xs) == 1:
            qp, kp, vp = F.linear(q, w, b).split(e, dim=-1)
        else:
            qp = F.linear(q, w[:e], None if b is None else b[:e])
            kp, vp = F.linear(kv, w[e:], None if b is None else b[e:]).split(e, dim=-1)
        qh = qp.reshape(n, tq, h, d).transpose(1, 2)           # (N, H, Tq, d)
        kh = kp.reshape(n, tk, h, d).transpose(1, 2)
        vh = vp.reshape(n, tk, h, d).transpose(1, 2)
        rate = float(a["dropout"])
        if self.training and rate > 0:
            s = (qh @ kh.transpose(-2, -1)) * (1 / math.sqrt(d))
            if a["causal"]:
                s = s.masked_fill(_future(tq, tk, s.device), -math.inf)
            p = torch.softmax(s, dim=-1)
            o = (p * self.ctx.keep_mask(p.shape, rate, p)) @ vh
        else:
            o = F.scaled_dot_product_attention(qh, kh, vh, is_causal=bool(a["causal"]))
        o = o.transpose(1, 2).reshape(n, tq, e)
        return F.linear(o, self.out_proj.weight, self.out_proj.bias)


@lowering("positional_embedding")
class PositionalEmbedding(Layer):
    def forward(self, x):
        return x + self.weight


@functools.lru_cache(maxsize=32)
def sinusoids(t: int, e: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(T, E): PE[t, 2i] = sin(t / 10000^(2i/E)), PE[t, 2i+1] = cos(...), computed in float64
    with NumPy (the NumPy kernel's formula, so the table is the same to the bit)."""
    j = np.arange(e)
    angle = np.arange(t)[:, None] * 10000.0 ** (-(j - j % 2) / e)
    pe = np.where(j % 2 == 0, np.sin(angle), np.cos(angle))
    return torch.from_numpy(pe).to(device=device, dtype=dtype)


@lowering("positional_encoding")
class PositionalEncoding(Layer):
    def forward(self, x):
        return x + sinusoids(x.shape[1], x.shape[2], x.dtype, x.device)
