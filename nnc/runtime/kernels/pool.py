"""Pooling: maxpool2d/1d, avgpool2d/1d, globalavgpool2d/1d, globalmaxpool2d/1d (windowed pools
loop over window positions only; the 1-D pools run the 2-D code on (N, C, 1, L))."""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .base import KERNELS, Kernel, register


class Window(NamedTuple):
    """A pooling window's geometry: size (kh, kw), stride (sh, sw), pads (top, left, bottom, right),
    overhang (oh, ow): how far the last window of ceil_mode reaches past the padded bottom/right
    edge, and the output size (Ho, Wo)."""

    kh: int
    kw: int
    sh: int
    sw: int
    pads: tuple
    overhang: tuple
    Ho: int
    Wo: int


class MaxPoolCache(NamedTuple):
    xp: np.ndarray         # (N, C, Hp, Wp) the (-inf) padded input, overhang included; or, for
                           # disjoint windows, (kh*kw, N, C, Ho, Wo) its window planes
    y: np.ndarray          # (N, C, Ho, Wo) the forward's output: the backward finds the argmax again
    xshape: tuple          # (N, C, H, W)
    win: Window
    xpshape: tuple = ()    # (N, C, Hp, Wp)


class AvgPoolCache(NamedTuple):
    xshape: tuple          # (N, C, H, W)
    xpshape: tuple         # (N, C, Hp, Wp), overhang included
    win: Window
    divisor: object        # a float (kh * kw), or (Ho, Wo) per-window counts when windows overhang


def _pool_geometry(x, a) -> Window:
    kh, kw = a["size"]
    sh, sw = a["stride"]
    pt, pl, pb, pr = a["pads"]
    oh, ow = a["overhang"]
    Ho = (x.shape[2] + pt + pb + oh - kh) // sh + 1
    Wo = (x.shape[3] + pl + pr + ow - kw) // sw + 1
    if Ho <= 0 or Wo <= 0:
        raise ValueError(f"pool: window ({kh}, {kw}) exceeds padded input")
    return Window(kh, kw, sh, sw, (pt, pl, pb, pr), (oh, ow), Ho, Wo)


def _padded(x, win: Window, fill: float):
    (pt, pl, pb, pr), (oh, ow) = win.pads, win.overhang
    if not any((pt, pl, pb + oh, pr + ow)):
        return x
    return np.pad(x, ((0, 0), (0, 0), (pt, pb + oh), (pl, pr + ow)), constant_values=fill)


def _window(xp, p, q, sh, sw, Ho, Wo):
    """The (N, C, Ho, Wo) strided view of xp seen at kernel position (p, q)."""
    return xp[:, :, p:p + sh * (Ho - 1) + 1:sh, q:q + sw * (Wo - 1) + 1:sw]


def _as_2d(a) -> dict:
    """The attrs of a 1-D pool as those of a 2-D pool over (N, C, 1, L)."""
    (pl, pr), (o,) = a["pads"], a["overhang"]
    return {"size": [1, *a["size"]], "stride": [1, *a["stride"]], "pads": [0, pl, 0, pr],
            "overhang": [0, o]}


@register("maxpool2d")
class MaxPool2D(Kernel):
    """x: (N, C, H, W) -> (N, C, Ho, Wo); padding (and ceil_mode's overhang) is -inf. The gradient
    goes to the first maximum of each window in row-major order (PyTorch's tie rule)."""

    # NOTE: where windows are disjoint (stride >= size: the usual 2x2 pool) the forward copies each
    # window position's (N, C, Ho, Wo) plane out of the input once and takes the maxima over the
    # contiguous planes, and the backward compares the planes with y: the strided passes (the slow
    # ones: ~1 ns per element against ~0.15 for contiguous ones) drop from 2 kh*kw to kh*kw + 1
    # per forward + backward, and the planes take no more memory than the input they replace in
    # the cache. Measured on 2x2 pools: backward 1.3-1.5x faster, forward 1.1-1.25x slower, so
    # only when training; inference and overlapping windows read the input's windows in place.

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        win = _pool_geometry(x, a)
        kh, kw, sh, sw, _, _, Ho, Wo = win
        xp = _padded(x, win, -np.inf)
        if ctx.training and sh >= kh and sw >= kw:
            planes = np.empty((kh * kw, x.shape[0], x.shape[1], Ho, Wo), dtype=x.dtype)
            for p in range(kh):
                for q in range(kw):
                    np.copyto(planes[p * kw + q], _window(xp, p, q, sh, sw, Ho, Wo))
            y = planes[0].copy()
            for k in range(1, kh * kw):
                np.maximum(y, planes[k], out=y)
            return y, MaxPoolCache(planes, y, x.shape, win, xp.shape)
        y = _window(xp, 0, 0, sh, sw, Ho, Wo).copy()
        for p in range(kh):
            for q in range(kw):
                if p or q:
                    np.maximum(y, _window(xp, p, q, sh, sw, Ho, Wo), out=y)
        # NOTE: the argmax is not kept: the backward finds it again by comparison with y, which
        # keeps the forward (also used for inference) at kh*kw cheap maximum passes.
        return y, MaxPoolCache(xp, y, x.shape, win, xp.shape)

    def backward(self, dy, cache: MaxPoolCache):
        xp, y, xshape, xpshape = cache.xp, cache.y, cache.xshape, cache.xpshape
        kh, kw, sh, sw, (pt, pl, _, _), _, Ho, Wo = cache.win
        disjoint = sh >= kh and sw >= kw
        planes = xp.ndim == 5                          # the training forward's window planes
        # windows that tile the input exactly write every cell of dx once: no zero fill needed
        tiled = sh == kh and sw == kw and xpshape[2] == Ho * kh and xpshape[3] == Wo * kw
        dxp = (np.empty if tiled else np.zeros)(xpshape, dtype=dy.dtype)
        free = None                                    # windows whose max is not yet claimed
        hit = np.empty(y.shape, dtype=bool)
        last = kh * kw - 1
        for p in range(kh):
            for q in range(kw):
                seen = xp[p * kw + q] if planes else _window(xp, p, q, sh, sw, Ho, Wo)
                np.equal(seen, y, out=hit)
                if free is None:
                    free = ~hit
                else:
                    hit &= free                        # the first max in row-major order wins
                    if p * kw + q < last:
                        free ^= hit
                target = _window(dxp, p, q, sh, sw, Ho, Wo)
                if disjoint:                           # each input cell is in one window at most
                    np.multiply(dy, hit, out=target)
                else:
                    target += dy * hit
        return [dxp[:, :, pt:pt + xshape[2], pl:pl + xshape[3]]], {}


def _counts(n: int, k: int, s: int, out: int) -> np.ndarray:
    """Per window of one axis: the cells inside the padded input (PyTorch's avg_pool divisor)."""
    starts = np.arange(out) * s
    return np.minimum(starts + k, n) - starts


@register("avgpool2d")
class AvgPool2D(Kernel):
    """x: (N, C, H, W) -> (N, C, Ho, Wo); zero padding counted (count_include_pad=True): a window
    is divided by kh * kw, or, when ceil_mode makes it reach past the padded edge, by the number of
    its cells inside the padded input (PyTorch's divisor)."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        win = _pool_geometry(x, a)
        kh, kw, sh, sw, (pt, pl, pb, pr), (oh, ow), Ho, Wo = win
        xp = _padded(x, win, 0.0)
        y = _window(xp, 0, 0, sh, sw, Ho, Wo).copy()
        for p in range(kh):
            for q in range(kw):
                if p or q:
                    y += _window(xp, p, q, sh, sw, Ho, Wo)
        if oh or ow:
            divisor = np.multiply.outer(_counts(x.shape[2] + pt + pb, kh, sh, Ho),
                                        _counts(x.shape[3] + pl + pr, kw, sw, Wo)).astype(x.dtype)
            y /= divisor
        else:
            divisor = float(kh * kw)
            y *= 1 / divisor
        return y, AvgPoolCache(x.shape, xp.shape, win, divisor)

    def backward(self, dy, cache: AvgPoolCache):
        xshape, xpshape = cache.xshape, cache.xpshape
        kh, kw, sh, sw, (pt, pl, _, _), _, Ho, Wo = cache.win
        g = dy * (1 / cache.divisor) if isinstance(cache.divisor, float) else dy / cache.divisor
        dxp = np.zeros(xpshape, dtype=dy.dtype)
        disjoint = sh >= kh and sw >= kw
        for p in range(kh):
            for q in range(kw):
                if disjoint:
                    _window(dxp, p, q, sh, sw, Ho, Wo)[...] = g
                else:
                    _window(dxp, p, q, sh, sw, Ho, Wo)[...] += g
        return [dxp[:, :, pt:pt + xshape[2], pl:pl + xshape[3]]], {}


@register("maxpool1d", "avgpool1d")
class Pool1D(Kernel):
    """x: (N, C, L) -> (N, C, Lo): the 2-D pool of the same kind on (N, C, 1, L)."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        inner = KERNELS[self.name.replace("1d", "2d")]
        y, cache = inner.forward([x[:, :, None, :]], w, _as_2d(a), ctx)
        return y[:, :, 0, :], (inner, cache)

    def backward(self, dy, cache):
        inner, c = cache
        (dx,), _ = inner.backward(dy[:, :, None, :], c)
        return [dx[:, :, 0, :]], {}



@register("globalavgpool2d", "globalavgpool1d")
class GlobalAvgPool(Kernel):
    """x: (N, C, H, W) or (N, C, L) -> (N, C), the mean over the spatial axes."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        return x.mean(axis=tuple(range(2, x.ndim))), x.shape

    def backward(self, dy, xshape):
        dx = np.empty(xshape, dtype=dy.dtype)
        dx[...] = (dy * (1 / math.prod(xshape[2:])))[(...,) + (None,) * (len(xshape) - 2)]
        return [dx], {}


@register("globalmaxpool2d", "globalmaxpool1d")
class GlobalMaxPool(Kernel):
    """x: (N, C, H, W) or (N, C, L) -> (N, C), the maximum over the spatial axes; the gradient goes
    to the first maximum in row-major order (as maxpool2d's)."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        flat = x.reshape(x.shape[0], x.shape[1], -1)
        idx = flat.argmax(axis=2)[:, :, None]          # argmax: the first maximum
        return np.take_along_axis(flat, idx, axis=2)[:, :, 0], (x.shape, idx)

    def backward(self, dy, cache):
        xshape, idx = cache
        dx = np.zeros((xshape[0], xshape[1], math.prod(xshape[2:])), dtype=dy.dtype)
        np.put_along_axis(dx, idx, dy[:, :, None], axis=2)
        return [dx.reshape(xshape)], {}
