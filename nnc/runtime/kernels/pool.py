"""Pooling: maxpool2d, avgpool2d, globalavgpool2d (loops over window positions only)."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .base import Kernel, register


class Window(NamedTuple):
    """A pooling window's geometry: size (kh, kw), stride (sh, sw), pads (top, left, bottom, right)
    and the output size (Ho, Wo)."""

    kh: int
    kw: int
    sh: int
    sw: int
    pads: tuple
    Ho: int
    Wo: int


class MaxPoolCache(NamedTuple):
    xp: np.ndarray         # (N, C, Hp, Wp) the (-inf) padded input
    y: np.ndarray          # (N, C, Ho, Wo) the forward's output: the backward finds the argmax again
    xshape: tuple          # (N, C, H, W)
    win: Window


class AvgPoolCache(NamedTuple):
    xshape: tuple          # (N, C, H, W)
    xpshape: tuple         # (N, C, Hp, Wp)
    win: Window


def _pool_geometry(x, a) -> Window:
    kh, kw = a["size"]
    sh, sw = a["stride"]
    pt, pl, pb, pr = a["pads"]
    Ho = (x.shape[2] + pt + pb - kh) // sh + 1
    Wo = (x.shape[3] + pl + pr - kw) // sw + 1
    if Ho <= 0 or Wo <= 0:
        raise ValueError(f"pool: window ({kh}, {kw}) exceeds padded input")
    return Window(kh, kw, sh, sw, (pt, pl, pb, pr), Ho, Wo)


def _window(xp, p, q, sh, sw, Ho, Wo):
    """The (N, C, Ho, Wo) strided view of xp seen at kernel position (p, q)."""
    return xp[:, :, p:p + sh * (Ho - 1) + 1:sh, q:q + sw * (Wo - 1) + 1:sw]


@register("maxpool2d")
class MaxPool2D(Kernel):
    """x: (N, C, H, W) -> (N, C, Ho, Wo); padding is -inf. The gradient goes to the first maximum
    of each window in row-major order (PyTorch's tie rule)."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        win = _pool_geometry(x, a)
        kh, kw, sh, sw, (pt, pl, pb, pr), Ho, Wo = win
        xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=-np.inf) \
            if any((pt, pl, pb, pr)) else x
        y = _window(xp, 0, 0, sh, sw, Ho, Wo).copy()
        for p in range(kh):
            for q in range(kw):
                if p or q:
                    np.maximum(y, _window(xp, p, q, sh, sw, Ho, Wo), out=y)
        # NOTE: the argmax is not kept: the backward finds it again by comparison with y, which
        # keeps the forward (also used for inference) at kh*kw cheap maximum passes.
        return y, MaxPoolCache(xp, y, x.shape, win)

    def backward(self, dy, cache: MaxPoolCache):
        xp, y, xshape = cache.xp, cache.y, cache.xshape
        kh, kw, sh, sw, (pt, pl, _, _), Ho, Wo = cache.win
        disjoint = sh >= kh and sw >= kw
        # windows that tile the input exactly write every cell of dx once: no zero fill needed
        tiled = sh == kh and sw == kw and xp.shape[2] == Ho * kh and xp.shape[3] == Wo * kw
        dxp = (np.empty if tiled else np.zeros)(xp.shape, dtype=dy.dtype)
        free = None                                    # windows whose max is not yet claimed
        hit = np.empty(y.shape, dtype=bool)
        last = kh * kw - 1
        for p in range(kh):
            for q in range(kw):
                np.equal(_window(xp, p, q, sh, sw, Ho, Wo), y, out=hit)
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


@register("avgpool2d")
class AvgPool2D(Kernel):
    """x: (N, C, H, W) -> (N, C, Ho, Wo); zero padding counted (count_include_pad=True): every
    window is divided by kh * kw."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        win = _pool_geometry(x, a)
        kh, kw, sh, sw, (pt, pl, pb, pr), Ho, Wo = win
        xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr))) if any((pt, pl, pb, pr)) else x
        y = _window(xp, 0, 0, sh, sw, Ho, Wo).copy()
        for p in range(kh):
            for q in range(kw):
                if p or q:
                    y += _window(xp, p, q, sh, sw, Ho, Wo)
        y *= 1 / (kh * kw)
        return y, AvgPoolCache(x.shape, xp.shape, win)

    def backward(self, dy, cache: AvgPoolCache):
        xshape, xpshape = cache.xshape, cache.xpshape
        kh, kw, sh, sw, (pt, pl, _, _), Ho, Wo = cache.win
        g = dy * (1 / (kh * kw))
        dxp = np.zeros(xpshape, dtype=dy.dtype)
        disjoint = sh >= kh and sw >= kw
        for p in range(kh):
            for q in range(kw):
                if disjoint:
                    _window(dxp, p, q, sh, sw, Ho, Wo)[...] = g
                else:
                    _window(dxp, p, q, sh, sw, Ho, Wo)[...] += g
        return [dxp[:, :, pt:pt + xshape[2], pl:pl + xshape[3]]], {}


@register("globalavgpool2d")
class GlobalAvgPool2D(Kernel):
    """x: (N, C, H, W) -> (N, C), the mean over H and W."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        return x.mean(axis=(2, 3)), x.shape

    def backward(self, dy, xshape):
        N, C, H, W = xshape
        dx = np.empty(xshape, dtype=dy.dtype)
        dx[...] = (dy * (1 / (H * W)))[:, :, None, None]
        return [dx], {}
