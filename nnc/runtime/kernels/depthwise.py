"""Fast paths of conv2d without im2col: depthwise (groups == C == filters) and 1x1 convolutions.

Depthwise: each channel is correlated with its own kh x kw kernel, so the im2col path's batched
GEMM is a (1 x kh*kw) times (kh*kw x N*Ho*Wo) product per channel, bound by writing and reading
the kh*kw-times-larger columns. Here the output is accumulated over the kh*kw taps instead: tap
(p, q) multiplies a shifted view of the padded input by that tap's per-channel weight and adds it
up, a few samples at a time (padded chunk by chunk) so that the views and the accumulator stay in
the CPU cache. The backward keeps only the input itself, not kh*kw copies of it.

With stride 1 the taps use "wide" views, as the stride-1 im2col path does: each (sample, channel)
plane of the padded input is one flat run of Hp*Wp values, and tap (p, q)'s inputs of every output
row over the full padded width are ONE contiguous run of Ho*Wp values starting at p*dh*Wp + q*dw;
the Wp - Wo extra columns per row are discarded (forward) or carry zero gradients (backward).

1x1 convolutions (groups 1, no padding): y[n] = weight (F, C) @ x[n] (C, H*W), one batched matmul
straight in the (N, F, H, W) layout, with no column matrix and no transposes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import as_strided

#: elements of a (samples, C, Ho, Wv) chunk: 128K float32 values (512 KiB) keep the views and the
#: accumulator in the L2 cache (measured fastest of 32K-256K for 32 channels of 32x32)
CHUNK = 1 << 17


@dataclass
class DepthwiseCache:
    """What a depthwise forward keeps for its backward.

    x: the input (N, C, H, W) (the forward's own array: inputs are never modified in place);
    weight: (C, 1, kh, kw); stride, dilation, pads: (sh, sw), (dh, dw), (top, left, bottom,
    right); has_bias."""

    x: np.ndarray
    weight: np.ndarray
    stride: tuple
    dilation: tuple
    pads: tuple
    has_bias: bool


def is_depthwise(xshape, wshape, groups) -> bool:
    """True when conv2d x: (N, C, H, W), weight: (F, C/groups, kh, kw) is depthwise with one filter per
    channel (groups == C == F)."""
    return groups > 1 and groups == xshape[1] == wshape[0] and wshape[1] == 1


def correlation_pads(kernel, dilation, pads) -> tuple | None:
    """The padding (top, left, bottom, right) under which dx of a stride-1 convolution is the
    correlation of dy with the flipped kernel: the kernel's extent less one, less the forward's
    padding; None where the forward padded beyond the kernel's extent (the correlation would need a
    negative padding, a crop: dx is then a scatter)."""
    (kh, kw), (dh, dw) = kernel, dilation
    ekh, ekw = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    full = tuple(e - 1 - pad for e, pad in zip((ekh, ekw, ekh, ekw), pads))
    return full if min(full) >= 0 else None


def _geometry(xshape, wshape, stride, dilation, pads):
    N, C, H, W = xshape
    _, _, kh, kw = wshape
    (sh, sw), (dh, dw) = stride, dilation
    pt, pl, pb, pr = pads
    Hp, Wp = H + pt + pb, W + pl + pr
    ekh, ekw = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    Ho, Wo = (Hp - ekh) // sh + 1, (Wp - ekw) // sw + 1
    if Ho <= 0 or Wo <= 0:
        raise ValueError(f"conv: kernel extent ({ekh}, {ekw}) exceeds padded input ({Hp}, {Wp})")
    wide = (sh, sw) == (1, 1)
    return N, C, H, W, kh, kw, Hp, Wp, Ho, Wo, wide, (ekw - 1 if wide else 0)


class _Taps:
    """Views of a flat buffer of planes (Hp*Wp values each, C per sample): tap (p, q) of samples
    [n0, n0 + nb) is (nb, C, Ho*Wp) in the wide (stride-1) layout, else (nb, C, Ho, Wo)."""

    def __init__(self, buf, C, Hp, Wp, Ho, Wo, stride, dilation, wide):
        self.buf, self.C, self.plane, self.Wp, self.Ho, self.Wo = buf, C, Hp * Wp, Wp, Ho, Wo
        self.stride, self.dilation, self.wide = stride, dilation, wide
        self.e = buf.strides[0]

    def __call__(self, n0, nb, p, q):
        e, plane, Wp = self.e, self.plane, self.Wp
        start = n0 * self.C * plane + p * self.dilation[0] * Wp + q * self.dilation[1]
        if self.wide:
            return as_strided(self.buf[start:], shape=(nb, self.C, self.Ho * Wp),
                              strides=(self.C * plane * e, plane * e, e))
        sh, sw = self.stride
        return as_strided(self.buf[start:], shape=(nb, self.C, self.Ho, self.Wo),
                          strides=(self.C * plane * e, plane * e, sh * Wp * e, sw * e))


class _PaddedChunks:
    """A zero-padded copy of ``nb`` samples at a time: :meth:`load` copies samples [n0, n0 + m)
    of x into the interior of one reused flat buffer (its border and the wide runs' tail are never
    written, so they stay zero); ``taps`` views that buffer, so the views of its first ``nb``
    samples, built once, serve every chunk (sliced to its ``m``). Padding chunk by chunk keeps the
    padded copy in the cache for the taps that read it, and no padded copy of the whole input is
    ever held."""

    def __init__(self, x, nb, geom, pads, stride, dilation):
        N, C, H, W, kh, kw, Hp, Wp, Ho, Wo, wide, tail = geom
        self.x, self.H, self.W, self.pt, self.pl = x, H, W, pads[0], pads[1]
        self.buf = np.zeros(nb * C * Hp * Wp + tail, dtype=x.dtype)
        self.planes = self.buf[:nb * C * Hp * Wp].reshape(nb, C, Hp, Wp)
        self.taps = _Taps(self.buf, C, Hp, Wp, Ho, Wo, stride, dilation, wide)

    def load(self, n0, m):
        self.planes[:m, :, self.pt:self.pt + self.H, self.pl:self.pl + self.W] = self.x[n0:n0 + m]


def _chunk(C, Ho, Wv):
    return max(1, CHUNK // (C * Ho * Wv))


def depthwise_forward(x, weight, bias, stride, dilation, pads):
    """x: (N, C, H, W); weight: (C, 1, kh, kw); bias: (C,) or None; pads: (top, left, bottom, right).

    Returns y: (N, C, Ho, Wo) and the cache for :func:`depthwise_backward`."""
    stride, dilation, pads = tuple(stride), tuple(dilation), tuple(pads)
    geom = _geometry(x.shape, weight.shape, stride, dilation, pads)
    N, C, H, W, kh, kw, Hp, Wp, Ho, Wo, wide, _ = geom
    Wv = Wp if wide else Wo
    nb = min(N, _chunk(C, Ho, Wv))
    chunks = _PaddedChunks(x, nb, geom, pads, stride, dilation)
    wt = [[np.ascontiguousarray(weight[:, 0, p, q]).reshape(C, 1, *(() if wide else (1,)))
           for q in range(kw)] for p in range(kh)]
    b = bias.astype(weight.dtype, copy=False).reshape(wt[0][0].shape) if bias is not None else None
    y = np.empty((N, C, Ho, Wo), dtype=weight.dtype)
    acc = np.empty((nb, C, Ho * Wv) if wide else (nb, C, Ho, Wo), dtype=weight.dtype)
    tmp = np.empty_like(acc)
    views = [[chunks.taps(0, nb, p, q) for q in range(kw)] for p in range(kh)]
    rest = [(p, q) for p in range(kh) for q in range(kw)][1:]
    for n0 in range(0, N, nb):
        m = min(nb, N - n0)
        chunks.load(n0, m)
        a, t = acc[:m], tmp[:m]
        np.multiply(views[0][0][:m], wt[0][0], out=a)
        for p, q in rest:
            np.multiply(views[p][q][:m], wt[p][q], out=t)
            a += t
        if b is not None:
            a += b
        y[n0:n0 + m] = a.reshape(m, C, Ho, Wv)[..., :Wo] if wide else a
    return y, DepthwiseCache(x, weight, stride, dilation, pads, bias is not None)


def depthwise_backward(dy, cache: DepthwiseCache, need_dx: bool = True):
    """dy: (N, C, Ho, Wo). Returns dx: (N, C, H, W) (None unless need_dx), dweight: (C, 1, kh, kw),
    dbias: (C,) | None."""
    weight, stride, dilation, pads = cache.weight, cache.stride, cache.dilation, cache.pads
    geom = _geometry(cache.x.shape, weight.shape, stride, dilation, pads)
    N, C, H, W, kh, kw, Hp, Wp, Ho, Wo, wide, _ = geom
    Wv = Wp if wide else Wo
    nb = min(N, _chunk(C, Ho, Wv))
    chunks = _PaddedChunks(cache.x, nb, geom, pads, stride, dilation)
    dw = np.zeros((C, kh, kw), dtype=dy.dtype)
    # wide: dy in the wide rows, whose discarded columns stay zero; strided: dy itself, contiguous
    dyw = np.zeros((nb, C, Ho, Wv), dtype=dy.dtype) if wide else None
    win = None if wide else np.empty((nb, C, Ho, Wo), dtype=dy.dtype)
    views = [[chunks.taps(0, nb, p, q) for q in range(kw)] for p in range(kh)]
    for n0 in range(0, N, nb):
        m = min(nb, N - n0)
        if wide:
            d = dyw[:m]
            d[..., :Wo] = dy[n0:n0 + m]
        else:
            d = np.ascontiguousarray(dy[n0:n0 + m])      # a view unless dy is not contiguous
        d = d.reshape(m, C, 1, Ho * Wv)
        chunks.load(n0, m)
        for p in range(kh):
            for q in range(kw):
                t = views[p][q][:m]
                if not wide:                              # strided windows: one copy, then long rows
                    np.copyto(win[:m], t)
                    t = win[:m]
                # (m, C) dot products of rows of Ho*Wv values (as np.vecdot, which needs NumPy 2)
                v = np.matmul(d, t.reshape(m, C, Ho * Wv, 1))
                dw[:, p, q] += v.sum(axis=0)[:, 0, 0]
    dweight = dw.reshape(weight.shape)
    dbias = dy.sum(axis=(0, 2, 3)) if cache.has_bias else None
    if not need_dx:
        return None, dweight, dbias
    full = correlation_pads((kh, kw), dilation, pads)
    if wide and full is not None:
        # dx is the correlation of dy, padded by the kernel's extent less the forward's padding,
        # with the flipped kernel: the forward again
        dx, _ = depthwise_forward(dy, weight[:, :, ::-1, ::-1], None, (1, 1), dilation, full)
        return dx, dweight, dbias
    # otherwise scatter: tap (p, q) adds w[c, p, q] * dy into its (strided) window positions
    dxbuf = np.zeros(N * C * Hp * Wp, dtype=dy.dtype)
    dtaps = _Taps(dxbuf, C, Hp, Wp, Ho, Wo, stride, dilation, False)
    tmp = np.empty((nb, C, Ho, Wo), dtype=dy.dtype)
    dviews = [[dtaps(0, N, p, q) for q in range(kw)] for p in range(kh)]
    for n0 in range(0, N, nb):
        m = min(nb, N - n0)
        t = tmp[:m]
        for p in range(kh):
            for q in range(kw):
                np.multiply(dy[n0:n0 + m], weight[:, 0, p, q].reshape(C, 1, 1), out=t)
                view = dviews[p][q][n0:n0 + m]
                view += t                                 # one tap's window positions never overlap
    pt, pl = pads[0], pads[1]
    dx = np.ascontiguousarray(dxbuf.reshape(N, C, Hp, Wp)[:, :, pt:pt + H, pl:pl + W])
    return dx, dweight, dbias


# ----------------------------------------------------------------------------------------------
# 1x1 convolution

@dataclass
class PointwiseCache:
    """What a 1x1 conv2d forward keeps: xs: the (strided) input samples (N, C, Ho*Wo), contiguous;
    weight: (F, C, 1, 1); xshape: (N, C, H, W); stride: (sh, sw); has_bias."""

    xs: np.ndarray
    weight: np.ndarray
    xshape: tuple
    stride: tuple
    has_bias: bool


def is_pointwise(wshape, pads, groups) -> bool:
    """True for a 1x1 kernel with one group and no padding (any stride; dilation is moot)."""
    return groups == 1 and tuple(wshape[2:]) == (1, 1) and not any(pads)


def pointwise_forward(x, weight, bias, stride):
    """x: (N, C, H, W); weight: (F, C, 1, 1); bias: (F,) or None. Returns y: (N, F, Ho, Wo), the cache."""
    N, C, H, W = x.shape
    F = weight.shape[0]
    sh, sw = stride
    xs = x if (sh, sw) == (1, 1) else x[:, :, ::sh, ::sw]
    Ho, Wo = xs.shape[2], xs.shape[3]
    xs = np.ascontiguousarray(xs).reshape(N, C, Ho * Wo)
    y = np.matmul(weight.reshape(F, C), xs)                 # (N, F, Ho*Wo)
    if bias is not None:
        y += bias.astype(y.dtype, copy=False)[:, None]
    return y.reshape(N, F, Ho, Wo), PointwiseCache(xs, weight, x.shape, (sh, sw), bias is not None)


def pointwise_backward(dy, cache: PointwiseCache, need_dx: bool = True):
    """dy: (N, F, Ho, Wo). Returns dx: (N, C, H, W) (None unless need_dx), dweight: (F, C, 1, 1),
    dbias: (F,) | None."""
    N, C, H, W = cache.xshape
    F = cache.weight.shape[0]
    Ho, Wo = dy.shape[2], dy.shape[3]
    dyr = dy.reshape(N, F, Ho * Wo)
    dweight = np.matmul(dyr, cache.xs.transpose(0, 2, 1)).sum(axis=0).reshape(cache.weight.shape)
    dbias = dyr.sum(axis=(0, 2)) if cache.has_bias else None
    if not need_dx:
        return None, dweight, dbias
    dxs = np.matmul(cache.weight.reshape(F, C).T, dyr)      # (N, C, Ho*Wo)
    if cache.stride == (1, 1):
        return dxs.reshape(N, C, H, W), dweight, dbias
    sh, sw = cache.stride
    dx = np.zeros((N, C, H, W), dtype=dy.dtype)
    dx[:, :, ::sh, ::sw] = dxs.reshape(N, C, Ho, Wo)
    return dx, dweight, dbias
