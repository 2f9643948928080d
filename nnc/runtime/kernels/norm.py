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


def _ncl(x: np.ndarray) -> np.ndarray:
    """x: (N, C, ...) as (N, C, L), L the product of the trailing axes (1 for (N, C)); a view when
    x is contiguous."""
    return x.reshape(x.shape[0], x.shape[1], -1)


def _channel_sums(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Per-channel sums of a (N, C, L), or of a * b: (C,) float64. Each (n, c) row is summed by
    one einsum pass (no product array), the N partial sums of each channel in float64; with
    L = 1 one einsum pass over (N, C) sums the columns."""
    if a.shape[2] == 1:
        a2 = a[:, :, 0]
        cols = np.einsum("nc->c", a2) if b is None else np.einsum("nc,nc->c", a2, b[:, :, 0])
        return cols.astype(np.float64)
    rows = np.einsum("ncl->nc", a) if b is None else np.einsum("ncl,ncl->nc", a, b)
    return rows.sum(axis=0, dtype=np.float64)


@register("batchnorm")
class BatchNorm(Kernel):
    """Normalises axis 1 over every other axis (PyTorch BatchNorm1d/2d).

    x: (N, C), (N, C, L) or (N, C, H, W); weight, bias: (C,) trainable; running_mean, running_var:
    (C,) state, updated IN PLACE in training: running = momentum * running + (1 - momentum) * batch
    with the unbiased batch variance (contract momentum 0.9 == PyTorch momentum 0.1). With a
    single value per channel the unbiased variance is undefined; the biased one (0) is used then.

    Training normalises with the batch mean and biased variance and its backward differentiates
    through them. Eval normalises with the running statistics; its backward is exact for that
    affine map (the running statistics are constants).

    How it runs: x as (N, C, L) (L = H * W); the statistics are two passes (the mean, then the
    variance of the centred values: exact, no E[x^2] - mean^2 cancellation), each a per-row einsum
    reduction with the partial sums over N in float64; the cache holds xhat (N, C, L) and the
    per-channel factors. The backward's reductions are einsum passes too (no dy * xhat array), and
    dx = weight inv_std (dy - mean(dy) - xhat mean(dy xhat)) takes four passes. Eval runs
    y = x k + (bias - running_mean k) with k = weight / sqrt(running_var + eps): two passes."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        eps = float(a["eps"])
        x3 = _ncl(x)
        dt = x.dtype
        weight = w["weight"]
        if not ctx.training:
            inv_std = (1 / np.sqrt(w["running_var"].astype(np.float64) + eps))
            k = (weight * inv_std).astype(dt)
            rm = w["running_mean"].astype(dt, copy=False)
            c = (w["bias"] - rm * k).astype(dt)
            y = np.multiply(x3, k[:, None])
            y += c[:, None]
            return y.reshape(x.shape), (x3, rm, inv_std.astype(dt), weight, x.shape)
        m = x3.shape[0] * x3.shape[2]
        mean = _channel_sums(x3) / m                             # (C,) float64
        xhat = np.subtract(x3, mean.astype(dt)[:, None])        # centred, then scaled in place
        var = _channel_sums(xhat, xhat) / m                      # biased
        momentum = float(a["momentum"])
        rm, rv = w["running_mean"], w["running_var"]
        unbiased = var * (m / (m - 1)) if m > 1 else var
        rm *= momentum
        rm += ((1 - momentum) * mean).astype(rm.dtype)
        rv *= momentum
        rv += ((1 - momentum) * unbiased).astype(rv.dtype)
        inv_std = (1 / np.sqrt(var + eps)).astype(dt)
        xhat *= inv_std[:, None]
        y = np.multiply(xhat, weight[:, None])
        y += w["bias"][:, None]
        return y.reshape(x.shape), (xhat, None, inv_std, weight, x.shape)

    def backward(self, dy, cache):
        # rm: the running mean (eval); None exactly for a training cache, whose xt is xhat itself
        xt, rm, inv_std, weight, shape = cache
        dy3 = _ncl(dy)
        dt = dy.dtype
        if rm is None:
            xhat = xt
        else:
            xhat = np.subtract(xt, rm[:, None])
            xhat *= inv_std[:, None]
        dweight = _channel_sums(dy3, xhat)
        dbias = _channel_sums(dy3)
        k = (weight * inv_std).astype(dt)                         # (C,)
        if rm is None:
            m = dy3.shape[0] * dy3.shape[2]
            # dx = k (dy - mean(dy) - xhat * mean(dy * xhat)), means over the batch axes
            dx = np.multiply(xhat, (dweight / m).astype(dt)[:, None])
            dx += (dbias / m).astype(dt)[:, None]
            np.subtract(dy3, dx, out=dx)
            dx *= k[:, None]
        else:
            dx = np.multiply(dy3, k[:, None])
        return [dx.reshape(shape)], {"weight": dweight.astype(dt), "bias": dbias.astype(dt)}


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
