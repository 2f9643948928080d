"""Regularisation, normalisation and lookup: dropout, batchnorm, layernorm, embedding."""
from __future__ import annotations

import numpy as np

from nnc.errors import NncError

from .base import Kernel, register


@register("dropout")
class Dropout(Kernel):
    """Inverted dropout, x: any shape. Training with rate > 0: keep = rng.random(x.shape) >= rate,
    y = x * keep / (1 - rate). Otherwise the identity."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        rate = float(a["rate"])
        if not ctx.training or rate == 0.0:
            return x, None
        keep = ctx.rng.random(x.shape) >= rate
        mask = keep.astype(x.dtype) * (1 / (1 - rate))   # (same shape as x), already scaled
        return x * mask, mask

    def backward(self, dy, mask):
        return [dy if mask is None else dy * mask], {}


def _stat_shape(x: np.ndarray) -> tuple[int, ...]:
    """Broadcast shape of a per-channel vector against x: (1, C, 1, ...)."""
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


@register("batchnorm")
class BatchNorm(Kernel):
    """Normalises axis 1 over every other axis (PyTorch BatchNorm1d/2d).

    x: (N, C), (N, C, L) or (N, C, H, W); weight, bias: (C,) trainable; running_mean, running_var:
    (C,) state, updated IN PLACE in training: running = momentum * running + (1 - momentum) * batch
    with the unbiased batch variance (contract momentum 0.9 == PyTorch momentum 0.1). With a
    single value per channel the unbiased variance is undefined; the biased one (0) is used then.

    Training normalises with the batch mean and biased variance and its backward differentiates
    through them. Eval normalises with the running statistics; its backward is exact for that
    affine map (the running statistics are constants)."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        eps = float(a["eps"])
        axes = (0,) + tuple(range(2, x.ndim))
        shape = _stat_shape(x)
        if ctx.training:
            m = x.size // x.shape[1]
            mean = x.mean(axis=axes)
            xc = x - mean.reshape(shape)
            var = np.mean(xc * xc, axis=axes)
            momentum = float(a["momentum"])
            rm, rv = w["running_mean"], w["running_var"]
            unbiased = var * (m / (m - 1)) if m > 1 else var
            rm *= momentum
            rm += (1 - momentum) * mean
            rv *= momentum
            rv += (1 - momentum) * unbiased
        else:
            xc = x - w["running_mean"].astype(x.dtype, copy=False).reshape(shape)
            var = w["running_var"].astype(x.dtype, copy=False)
        inv_std = (1 / np.sqrt(var + eps)).reshape(shape)
        xhat = xc * inv_std
        weight = w["weight"]
        y = xhat * weight.reshape(shape) + w["bias"].reshape(shape)
        return y, (xhat, inv_std, weight, axes, shape, ctx.training)

    def backward(self, dy, cache):
        xhat, inv_std, weight, axes, shape, training = cache
        dweight = np.sum(dy * xhat, axis=axes)
        dbias = dy.sum(axis=axes)
        scale = weight.reshape(shape) * inv_std
        if training:
            m = dy.size // dy.shape[1]
            # dx = g/sigma * (dy - mean(dy) - xhat * mean(dy * xhat)), means over the batch axes
            dx = scale * (dy - (dbias * (1 / m)).reshape(shape) - xhat * (dweight * (1 / m)).reshape(shape))
        else:
            dx = dy * scale
        return [dx], {"weight": dweight, "bias": dbias}


@register("layernorm")
class LayerNorm(Kernel):
    """Normalises the last axis. x: (..., D); weight, bias: (D,).

        y = xhat * weight + bias,  xhat = (x - mean(x)) * inv_std,  inv_std = 1 / sqrt(var(x) + eps)

    with the biased variance, means over the last axis. The cache holds xhat (..., D) and
    inv_std (..., 1)."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        eps = float(a["eps"])
        D = x.shape[-1]
        # NOTE: the row sums as einsum passes (about 3x faster than x.mean(axis=-1) on rows of
        # 128 float32), the variance of the centred rows (exact two-pass form), every pass after
        # the first in place
        mean = np.einsum("...i->...", x)[..., None]
        mean *= 1 / D
        xhat = np.subtract(x, mean)
        var = np.einsum("...i,...i->...", xhat, xhat)[..., None]
        var *= 1 / D
        var += eps
        inv_std = np.sqrt(var, out=var)
        np.divide(1, inv_std, out=inv_std)                   # (..., 1)
        xhat *= inv_std
        weight = w["weight"]
        y = xhat * weight
        y += w["bias"]
        return y, (xhat, inv_std, weight)

    def backward(self, dy, cache):
        xhat, inv_std, weight = cache
        D = weight.shape[0]
        dy2 = dy.reshape(-1, D)                             # (M, D)
        xh2 = xhat.reshape(-1, D)
        gx = dy2 * xh2
        dweight = gx.sum(axis=0)
        dbias = dy2.sum(axis=0)
        # with g = dy * weight (d loss / d xhat): dx = inv_std (g - mean(g) - xhat mean(g xhat)).
        # NOTE: the row means are einsum passes, not matrix-vector products: OpenBLAS runs a
        # (M, D) x (D,) product on its threads, which costs 10x more than the arithmetic when the
        # other core is busy
        g = np.multiply(dy2, weight)
        mg = np.einsum("ij->i", g)[:, None]
        mg *= 1 / D
        mgx = np.einsum("ij,ij->i", g, xh2)[:, None]
        mgx *= 1 / D
        g -= mg
        np.multiply(xh2, mgx, out=gx)
        g -= gx
        g *= inv_std.reshape(-1, 1)
        return [g.reshape(xhat.shape)], {"weight": dweight, "bias": dbias}


@register("embedding")
class Embedding(Kernel):
    """x: int (N, T) ids in [0, vocab) -> (N, T, dim) rows of weight: (vocab, dim).

    An id out of range raises NncError E720. Float arrays holding whole numbers are accepted."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        weight = w["weight"]
        vocab = weight.shape[0]
        if not np.issubdtype(x.dtype, np.integer):
            if x.size and not np.all(np.floor(x) == x):
                bad = x.flat[np.flatnonzero(np.floor(x) != x)[0]]
                raise NncError.single(
                    "E720", f"embedding input id {bad!r} is not an integer in [0, {vocab})",
                    hint="embedding inputs are token ids: integers in [0, vocab)")
            x = x.astype(np.int64)
        if x.size and (x.min() < 0 or x.max() >= vocab):
            bad = x.flat[np.flatnonzero((x < 0) | (x >= vocab))[0]]
            raise NncError.single(
                "E720", f"embedding input id {int(bad)} is out of range [0, {vocab})",
                hint=f"token ids must lie in [0, {vocab}); check the data or raise the "
                     f"embedding's vocab")
        return weight[x], (x, weight.shape)

    def backward(self, dy, cache):
        ids, wshape = cache
        dim = wshape[1]
        flat = ids.ravel()
        g = dy.reshape(-1, dim)
        dweight = np.zeros(wshape, dtype=dy.dtype)
        if flat.size:
            # NOTE: sort + reduceat sums the rows of each id in one pass (much faster than add.at).
            order = np.argsort(flat, kind="stable")
            sid = flat[order]
            starts = np.flatnonzero(np.concatenate(([True], sid[1:] != sid[:-1])))
            dweight[sid[starts]] = np.add.reduceat(g[order], starts, axis=0)
        return [None], {"weight": dweight}


@register("normalize")
class Normalize(Kernel):
    """y = (x - mean) / sqrt(var + eps) with fixed statistics per index of a["axis"] (per-example,
    normalised by the compiler; NumPy axis + 1).

    x: (N, ..., K, ...) with K at that axis; mean, var: (K,) state (never trained here; fitting them
    on data is the trainer's business). Backward treats the statistics as constants: dx = dy / std."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        shape = [1] * x.ndim
        shape[a["axis"] + 1] = x.shape[a["axis"] + 1]
        mean = w["mean"].astype(x.dtype, copy=False).reshape(shape)
        inv_std = (1 / np.sqrt(w["var"].astype(x.dtype, copy=False) + float(a["eps"]))).reshape(shape)
        return (x - mean) * inv_std, inv_std

    def backward(self, dy, inv_std):
        return [dy * inv_std], {}
