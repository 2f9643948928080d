"""Convolution: conv2d, conv1d (run as conv2d with H = 1) and conv2d_transpose.

A convolution is an im2col GEMM each way: stride 1 with "wide" columns (long contiguous runs),
built and multiplied a range of samples at a time when they are large (``COLS_CHUNK_BYTES``), any
other stride by a per-window gather; with ``groups > 1`` the GEMM is batched over the groups
(``np.matmul`` on (groups, rows, cols) stacks). Depthwise (groups == C == F) and 1x1 convolutions
take the paths of ``depthwise.py`` (no im2col). conv2d_transpose with dilation 1 runs as one
stride-1 convolution over its sub-pixel phases where that pays, else by a col2im scatter. Group g
owns input channels [g*C/groups, (g+1)*C/groups) and output channels [g*F/groups, (g+1)*F/groups),
as in PyTorch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .base import Kernel, register
from .depthwise import (DepthwiseCache, PointwiseCache, correlation_pads, depthwise_backward, depthwise_forward,
                        is_depthwise, is_pointwise, pointwise_backward, pointwise_forward)


def _wx(wm, cols, groups):
    """Per group: weight rows (F, Kg) times columns (groups*Kg, M) -> (F, M)."""
    if groups == 1:
        return wm @ cols
    F, Kg = wm.shape
    return np.matmul(wm.reshape(groups, F // groups, Kg),
                     cols.reshape(groups, Kg, cols.shape[1])).reshape(F, cols.shape[1])


def _dy_colsT(dyf, cols, groups):
    """Per group: (F, M) times the columns (groups*Kg, M) transposed -> (F, Kg)."""
    if groups == 1:
        return dyf @ cols.T
    F, M = dyf.shape
    Kg = cols.shape[0] // groups
    return np.matmul(dyf.reshape(groups, F // groups, M),
                     cols.reshape(groups, Kg, M).transpose(0, 2, 1)).reshape(F, Kg)


def _wT_dy(wm, dyf, groups):
    """Per group: weight rows (F, Kg) transposed times (F, M) -> (groups*Kg, M)."""
    if groups == 1:
        return wm.T @ dyf
    F, Kg = wm.shape
    M = dyf.shape[1]
    return np.matmul(wm.reshape(groups, F // groups, Kg).transpose(0, 2, 1),
                     dyf.reshape(groups, F // groups, M)).reshape(groups * Kg, M)


@dataclass
class ConvCache:
    """What a conv2d forward keeps for its backward.

    cols: the im2col matrix, (C*kh*kw, N*Ho*Wo) for the strided path, or the "wide" stride-1
        columns (C*kh*kw [+ 1 bias row], N*Ho*Wp), or None on the chunked stride-1 path, which
        keeps the padded input ``xbuf`` (C, N*Hp*Wp + kw - 1) and rebuilds the columns of each
        range of samples in ``chunks`` in its backward; weight: (F, C/groups, kh, kw); xshape: (N, C, H, W);
    xpshape: the padded input's shape (strided path only); out_hw: (Ho, Wo);
    stride, dilation: (sh, sw), (dh, dw); pads: (top, left, bottom, right); has_bias;
    wide: the stride-1 path, whose bias rides in the columns when groups == 1 (bias_row).
    """

    cols: np.ndarray
    weight: np.ndarray
    xshape: tuple
    xpshape: tuple | None
    out_hw: tuple
    stride: tuple
    dilation: tuple
    pads: tuple
    has_bias: bool
    wide: bool
    groups: int = 1
    bias_row: bool = False
    xbuf: np.ndarray | None = None      # chunked stride-1 path: the padded input (C, size), no cols
    chunks: tuple = ()                  # chunked stride-1 path: the sample ranges ((n0, n1), ...)


def _conv2d_forward(x, weight, bias, stride, dilation, pads, groups=1):
    """x: (N, C, H, W); weight: (F, C/groups, kh, kw); bias: (F,) or None; pads: (top, left, bottom, right).

    Returns y: (N, F, Ho, Wo) and the cache for :func:`_conv2d_backward`. Depthwise (groups == C ==
    F) and 1x1 convolutions take the paths of ``depthwise.py`` (no im2col), the rest im2col."""
    if is_depthwise(x.shape, weight.shape, groups):
        return depthwise_forward(x, weight, bias, stride, dilation, pads)
    if is_pointwise(weight.shape, pads, groups):
        return pointwise_forward(x, weight, bias, stride)
    return _conv2d_forward_im2col(x, weight, bias, stride, dilation, pads, groups)


def _conv2d_forward_im2col(x, weight, bias, stride, dilation, pads, groups=1):
    """The general path of :func:`_conv2d_forward`: one im2col GEMM (batched over the groups)."""
    if tuple(stride) == (1, 1):
        return _conv2d_forward_s1(x, weight, bias, dilation, pads, groups)
    N, C, H, W = x.shape
    F, _, kh, kw = weight.shape
    sh, sw = stride
    dh, dw = dilation
    pt, pl, pb, pr = pads
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr))) if any(pads) else x
    Hp, Wp = xp.shape[2], xp.shape[3]
    ekh, ekw = dh * (kh - 1) + 1, dw * (kw - 1) + 1    # effective (dilated) kernel extent
    Ho, Wo = (Hp - ekh) // sh + 1, (Wp - ekw) // sw + 1
    if Ho <= 0 or Wo <= 0:
        raise ValueError(f"conv: kernel extent ({ekh}, {ekw}) exceeds padded input ({Hp}, {Wp})")
    # NOTE: a strided view of every window, (N, C, Ho, Wo, kh, kw), copied once into im2col
    # columns ordered (c, p, q) x (n, i, j) so the whole convolution is one GEMM. This layout
    # (rows contiguous along the image width, output F-major) measured about twice as fast as
    # (n, i, j) x (c, p, q) rows: the gather and the output transpose both stream memory.
    win = sliding_window_view(xp, (ekh, ekw), axis=(2, 3))[:, :, ::sh, ::sw, ::dh, ::dw]
    cols = win.transpose(1, 4, 5, 0, 2, 3).reshape(C * kh * kw, N * Ho * Wo)
    y = _wx(weight.reshape(F, -1), cols, groups)        # (F, N*Ho*Wo)
    if bias is not None:
        y += bias[:, None]
    y = np.ascontiguousarray(y.reshape(F, N, Ho, Wo).transpose(1, 0, 2, 3))
    return y, ConvCache(cols, weight, x.shape, xp.shape, (Ho, Wo), tuple(stride), tuple(dilation), tuple(pads),
                        bias is not None, wide=False, groups=groups)


# NOTE: stride-1 convolutions (the common case) use "wide" im2col columns. The padded input is
# laid out channel-major, (C, N * Hp * Wp) flat, so for kernel position (p, q) the inputs of output
# rows i = 0..Ho-1 over the full padded width are ONE contiguous run of Ho * Wp values starting at
# n * Hp * Wp + p * dh * Wp + q * dw. The columns are then a copy of a strided view whose inner
# runs are Ho * Wp long (instead of Wo), about 3x faster than the per-window gather; the GEMMs
# compute Wp - Wo extra (discarded) output columns per row. The backward zeroes dy in those columns,
# so they add nothing to dweight, and their dcols are exact zeros, so col2im can add whole runs.

def _wide_geometry(xshape, wshape, dilation, pads):
    N, C, H, W = xshape
    F, _, kh, kw = wshape
    dh, dw = dilation
    pt, pl, pb, pr = pads
    Hp, Wp = H + pt + pb, W + pl + pr
    ekh, ekw = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    Ho, Wo = Hp - ekh + 1, Wp - ekw + 1
    if Ho <= 0 or Wo <= 0:
        raise ValueError(f"conv: kernel extent ({ekh}, {ekw}) exceeds padded input ({Hp}, {Wp})")
    # the last sample's runs read up to ekw - 1 values past N * Hp * Wp
    return N, C, H, W, F, kh, kw, Hp, Wp, Ho, Wo, N * Hp * Wp + ekw - 1


def _wide_runs(buf, kh, kw, dh, dw, N, Hp, Wp, L):
    """(C, kh, kw, N, L) strided view of the flat (C, size) buffer: run (p, q, n) starts at
    n * Hp * Wp + p * dh * Wp + q * dw."""
    s0, s1 = buf.strides
    return np.lib.stride_tricks.as_strided(
        buf, shape=(buf.shape[0], kh, kw, N, L),
        strides=(s0, dh * Wp * s1, dw * s1, Hp * Wp * s1, s1))


#: the stride-1 path of one group builds its columns at most about this many bytes at a time
#: (a core's L2 cache here), over a range of samples, and multiplies them while they are still in
#: the cache; the backward rebuilds them from the padded input (a ninth of their size for 3x3).
#: Written whole, the columns of a (64, 16, 14, 14) batch are 8 MB: their GEMM then streams them
#: from memory, and the chunked forward measured about 1.2x faster (1.5x with one BLAS thread).
COLS_CHUNK_BYTES = 2 << 20


def _sample_chunks(N, per_sample_bytes):
    """Ranges ((n0, n1), ...) covering N samples, of equal sizes but the last, each of at most
    about COLS_CHUNK_BYTES of columns (at least one sample)."""
    per = max(1, COLS_CHUNK_BYTES // max(1, per_sample_bytes))
    size = -(-N // -(-N // per))                        # ceil(N / number of chunks)
    return tuple((n0, min(N, n0 + size)) for n0 in range(0, N, size))


def _chunk_cols(buf, runs, n0, n1, K, L, bias_row):
    """The wide columns of samples [n0, n1) in ``buf`` (K [+ 1], >= (n1 - n0) * L); returns the
    (K [+ 1], (n1 - n0) * L) view. runs: the (C, kh, kw, N, L) view of the padded input."""
    m = n1 - n0
    cols = buf[:, :m * L]
    C, kh, kw = runs.shape[:3]
    np.copyto(cols[:K].reshape(C, kh, kw, m, L), runs[:, :, :, n0:n1])
    if bias_row:
        cols[K] = 1
    return cols


def _bias_column(wm, bias):
    """The weight matrix (F, K) with the bias as a last column (F, K + 1): with a row of ones under
    the columns, the GEMM adds the bias (forward) and sums its gradient (backward)."""
    return np.concatenate([wm, bias[:, None].astype(wm.dtype, copy=False)], axis=1)


def _split_bias_column(dwm, K, wshape):
    """The inverse of :func:`_bias_column`, for the gradient: (F, K + 1) -> dweight (wshape), dbias (F,)."""
    return np.ascontiguousarray(dwm[:, :K]).reshape(wshape), dwm[:, K].copy()


def _wide_dy(dy, Wp):
    """dy: (N, F, Ho, Wo) -> (F, N*Ho*Wp) in the wide columns' order, zeros in the Wp - Wo discarded
    columns of each row (so they add nothing to the weight gradient and give zero dcols)."""
    N, F, Ho, Wo = dy.shape
    dyf = np.empty((F, N, Ho, Wp), dtype=dy.dtype)
    dyf[:, :, :, :Wo] = dy.transpose(1, 0, 2, 3)
    dyf[:, :, :, Wo:] = 0
    return dyf.reshape(F, N * Ho * Wp)


def _correlation_full(F, C, kernel, dilation, pads):
    """The padding under which the stride-1 backward takes dx by correlation (:func:`correlation_pads`),
    or None for a col2im scatter. Its columns have F*kh*kw rows, so it pays where F <= C: it
    replaces a (C*kh*kw, N*L) product and its kh*kw col2im scatter-adds (measured 1.1-1.2x faster
    for 3x3 with F = C, 1.2x for depthwise; slower for 16 -> 32 channels). A padding beyond the
    kernel's extent needs the scatter (a negative padding would crop)."""
    return correlation_pads(kernel, dilation, pads) if F <= C else None


def _dx_by_correlation(dy, weight, groups, dilation, full):
    """dx (N, C, H, W) as the correlation of dy (N, F, Ho, Wo), padded by ``full``
    (:func:`correlation_pads`), with the kernel flipped and its channels swapped: one more wide
    GEMM, whose K sums over (filter, p, q) at once."""
    F, Cg, kh, kw = weight.shape
    G = groups
    wf = weight.reshape(G, F // G, Cg, kh, kw).transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1]
    dx, _ = _conv2d_forward_s1(dy, wf.reshape(G * Cg, F // G, kh, kw), None, dilation, full, G)
    return dx


def _crop_dx(dxbuf, xshape, Hp, Wp, pads):
    """The (C, size) col2im buffer of the padded input -> dx (N, C, H, W) without the padding."""
    N, C, H, W = xshape
    pt, pl = pads[0], pads[1]
    dx = dxbuf[:, :N * Hp * Wp].reshape(C, N, Hp, Wp)[:, :, pt:pt + H, pl:pl + W]
    return np.ascontiguousarray(dx.transpose(1, 0, 2, 3))


def _conv2d_forward_s1(x, weight, bias, dilation, pads, groups=1):
    geom = _wide_geometry(x.shape, weight.shape, dilation, pads)
    N, C, H, W, F, kh, kw, Hp, Wp, Ho, Wo, size = geom
    pt, pl, pb, pr = pads
    L = Ho * Wp
    K = C * kh * kw
    xbuf = np.zeros((C, size), dtype=x.dtype)
    xbuf[:, :N * Hp * Wp].reshape(C, N, Hp, Wp)[:, :, pt:pt + H, pl:pl + W] = x.transpose(1, 0, 2, 3)
    # with a bias (and one group), the columns get a last row of ones and the weight matrix the
    # bias as its last column: the GEMMs then add the bias (forward) and sum its gradient
    # (backward) for free
    has_bias = bias is not None
    bias_row = has_bias and groups == 1
    if groups == 1:
        chunks = _sample_chunks(N, (K + bias_row) * L * x.dtype.itemsize)
        if len(chunks) > 1:
            return _conv2d_forward_s1_chunked(x, xbuf, weight, bias, dilation, pads, chunks, geom, L, K,
                                              bias_row)
    cols = np.empty((K + bias_row, N * L), dtype=x.dtype)
    np.copyto(cols[:K].reshape(C, kh, kw, N, L),
              _wide_runs(xbuf, kh, kw, dilation[0], dilation[1], N, Hp, Wp, L))
    wm = weight.reshape(F, K // groups)
    if bias_row:
        cols[K] = 1
        wm = _bias_column(wm, bias)
    y = _wx(wm, cols, groups)                            # (F, N*Ho*Wp)
    if has_bias and not bias_row:
        y += bias[:, None]
    y = np.ascontiguousarray(y.reshape(F, N, Ho, Wp)[:, :, :, :Wo].transpose(1, 0, 2, 3))
    return y, ConvCache(cols, weight, x.shape, None, (Ho, Wo), (1, 1), tuple(dilation), tuple(pads), has_bias,
                        wide=True, groups=groups, bias_row=bias_row)


def _conv2d_forward_s1_chunked(x, xbuf, weight, bias, dilation, pads, chunks, geom, L, K, bias_row):
    """The stride-1 forward of one group, range of samples by range: x: (N, C, H, W) (its padded
    copy xbuf: (C, size)); weight: (F, C, kh, kw); bias: (F,) | None -> y: (N, F, Ho, Wo).
    geom, L, K, bias_row: :func:`_conv2d_forward_s1`'s (:func:`_wide_geometry`, Ho*Wp, C*kh*kw, and
    whether the bias rides in the columns: whenever there is one, with one group)."""
    N, C, H, W, F, kh, kw, Hp, Wp, Ho, Wo, size = geom
    wm = _bias_column(weight.reshape(F, K), bias) if bias_row else weight.reshape(F, K)
    runs = _wide_runs(xbuf, kh, kw, dilation[0], dilation[1], N, Hp, Wp, L)
    most = max(n1 - n0 for n0, n1 in chunks)
    buf = np.empty((K + bias_row, most * L), dtype=x.dtype)
    out = np.empty((F, most * L), dtype=x.dtype)
    y = np.empty((N, F, Ho, Wo), dtype=x.dtype)
    for n0, n1 in chunks:
        m = n1 - n0
        yc = np.matmul(wm, _chunk_cols(buf, runs, n0, n1, K, L, bias_row), out=out[:, :m * L])
        y[n0:n1] = yc.reshape(F, m, Ho, Wp)[:, :, :, :Wo].transpose(1, 0, 2, 3)
    return y, ConvCache(None, weight, x.shape, None, (Ho, Wo), (1, 1), tuple(dilation), tuple(pads),
                        bias_row, wide=True, groups=1, bias_row=bias_row, xbuf=xbuf, chunks=chunks)


def _conv2d_backward_s1(dy, cache: ConvCache, need_dx: bool = True):
    if cache.chunks:
        return _conv2d_backward_s1_chunked(dy, cache, need_dx)
    cols, weight, xshape, pads, has_bias = cache.cols, cache.weight, cache.xshape, cache.pads, cache.has_bias
    dh, dw = cache.dilation
    N, C, H, W, F, kh, kw, Hp, Wp, Ho, Wo, size = _wide_geometry(xshape, weight.shape, (dh, dw), pads)
    L = Ho * Wp
    dyf = _wide_dy(dy, Wp)
    K = C * kh * kw
    G = cache.groups
    if cache.bias_row:
        dweight, dbias = _split_bias_column(dyf @ cols.T, K, weight.shape)    # (F, K + 1 for the bias)
    else:
        dweight = _dy_colsT(dyf, cols, G).reshape(weight.shape)
        dbias = dyf.sum(axis=1) if has_bias else None   # the discarded columns of dyf are zeros
    if not need_dx:
        return None, dweight, dbias
    # dx is the correlation of dy (padded by the kernel's extent less the forward's padding) with
    # the kernel flipped and its channels swapped: one more wide GEMM, whose K sums over
    # (filter, p, q) at once, where that pays (_correlation_full); else a col2im scatter
    full = _correlation_full(F, C, (kh, kw), (dh, dw), pads)
    if full is not None:
        return _dx_by_correlation(dy, weight, G, (dh, dw), full), dweight, dbias
    dcols = _wT_dy(weight.reshape(F, K // G), dyf, G).reshape(C, kh, kw, N, L)
    dxbuf = np.zeros((C, size), dtype=dy.dtype)
    runs = _wide_runs(dxbuf, kh, kw, dh, dw, N, Hp, Wp, L)
    for p in range(kh):
        for q in range(kw):
            runs[:, p, q] += dcols[:, p, q]             # runs of one (p, q) never overlap
    return _crop_dx(dxbuf, xshape, Hp, Wp, pads), dweight, dbias


def _conv2d_backward_s1_chunked(dy, cache: ConvCache, need_dx: bool = True):
    """The backward of :func:`_conv2d_forward_s1_chunked`: the columns of each range of samples
    are rebuilt from the padded input, and its weight gradient added to the sum; dx as the
    unchunked path computes it (by correlation where F <= C, else a col2im of each range)."""
    weight, xshape, pads, bias_row, xbuf = cache.weight, cache.xshape, cache.pads, cache.bias_row, cache.xbuf
    dh, dw = cache.dilation
    N, C, H, W, F, kh, kw, Hp, Wp, Ho, Wo, size = _wide_geometry(xshape, weight.shape, (dh, dw), pads)
    L = Ho * Wp
    K = C * kh * kw
    dyf = _wide_dy(dy, Wp)
    full = _correlation_full(F, C, (kh, kw), (dh, dw), pads)    # as the unchunked path
    scatter = need_dx and full is None
    runs = _wide_runs(xbuf, kh, kw, dh, dw, N, Hp, Wp, L)
    most = max(n1 - n0 for n0, n1 in cache.chunks)
    buf = np.empty((K + bias_row, most * L), dtype=dy.dtype)
    dwm = np.zeros((F, K + bias_row), dtype=dy.dtype)
    part = np.empty_like(dwm)
    if scatter:
        wT = np.ascontiguousarray(weight.reshape(F, K).T)
        dcols = np.empty((K, most * L), dtype=dy.dtype)
        dxbuf = np.zeros((C, size), dtype=dy.dtype)
        druns = _wide_runs(dxbuf, kh, kw, dh, dw, N, Hp, Wp, L)
    for n0, n1 in cache.chunks:
        m = n1 - n0
        d = dyf[:, n0 * L:n1 * L]
        dwm += np.matmul(d, _chunk_cols(buf, runs, n0, n1, K, L, bias_row).T, out=part)
        if scatter:
            dc = np.matmul(wT, d, out=dcols[:, :m * L]).reshape(C, kh, kw, m, L)
            for p in range(kh):
                for q in range(kw):
                    druns[:, p, q, n0:n1] += dc[:, p, q]   # runs of one (p, q) never overlap
    if bias_row:
        dweight, dbias = _split_bias_column(dwm, K, weight.shape)
    else:
        dweight, dbias = dwm.reshape(weight.shape), None
    if not need_dx:
        return None, dweight, dbias
    if full is not None:
        return _dx_by_correlation(dy, weight, 1, (dh, dw), full), dweight, dbias
    return _crop_dx(dxbuf, xshape, Hp, Wp, pads), dweight, dbias


def _conv2d_backward(dy, cache: ConvCache, need_dx: bool = True):
    """dy: (N, F, Ho, Wo). Returns dx: (N, C, H, W) (None unless need_dx), dweight: (F, C/groups, kh, kw),
    dbias: (F,) | None."""
    if isinstance(cache, DepthwiseCache):
        return depthwise_backward(dy, cache, need_dx)
    if isinstance(cache, PointwiseCache):
        return pointwise_backward(dy, cache, need_dx)
    if cache.wide:
        return _conv2d_backward_s1(dy, cache, need_dx)
    cols, weight, xshape, xpshape, pads, has_bias = (cache.cols, cache.weight, cache.xshape, cache.xpshape,
                                                     cache.pads, cache.has_bias)
    (Ho, Wo), (sh, sw), (dh, dw) = cache.out_hw, cache.stride, cache.dilation
    N, C, H, W = xshape
    F, _, kh, kw = weight.shape
    G = cache.groups
    dyf = np.ascontiguousarray(dy.transpose(1, 0, 2, 3)).reshape(F, N * Ho * Wo)
    dweight = _dy_colsT(dyf, cols, G).reshape(weight.shape)
    dbias = dyf.sum(axis=1) if has_bias else None
    if not need_dx:
        return None, dweight, dbias
    dcols = _wT_dy(weight.reshape(F, -1), dyf, G).reshape(C, kh, kw, N, Ho, Wo)
    # col2im into a (C, N, Hp, Wp) buffer: one strided scatter-add per kernel position.
    dxp = np.zeros((C, N, xpshape[2], xpshape[3]), dtype=dy.dtype)
    for p in range(kh):
        r0 = p * dh
        for q in range(kw):
            c0 = q * dw
            dxp[:, :, r0:r0 + sh * (Ho - 1) + 1:sh, c0:c0 + sw * (Wo - 1) + 1:sw] += dcols[:, p, q]
    pt, pl, _, _ = pads
    dx = np.ascontiguousarray(dxp[:, :, pt:pt + H, pl:pl + W].transpose(1, 0, 2, 3))
    return dx, dweight, dbias


def _grads(dweight, dbias):
    """A kernel's weight gradients: the weight's, plus the bias's if it has one."""
    return {"weight": dweight} if dbias is None else {"weight": dweight, "bias": dbias}


@register("conv2d")
class Conv2D(Kernel):
    """Cross-correlation with zero padding (PyTorch Conv2d).

    x: (N, C, H, W); weight: (filters, C/groups, kh, kw); bias: (filters,); y: (N, filters, Ho, Wo)
    with Ho = floor((H + top + bottom - dh*(kh-1) - 1) / sh) + 1."""

    def forward(self, xs, w, a, ctx):
        return _conv2d_forward(xs[0], w["weight"], w["bias"] if a["bias"] else None,
                               tuple(a["stride"]), tuple(a["dilation"]), tuple(a["pads"]), a["groups"])

    def backward(self, dy, cache):
        dx, dweight, dbias = _conv2d_backward(dy, cache)
        return [dx], _grads(dweight, dbias)

    def weight_backward(self, dy, cache):
        _, dweight, dbias = _conv2d_backward(dy, cache, need_dx=False)
        return _grads(dweight, dbias)


@register("conv1d")
class Conv1D(Kernel):
    """x: (N, C, L); weight: (filters, C/groups, k); bias: (filters,); y: (N, filters, Lo),
    Lo = floor((L + left + right - d*(k-1) - 1) / s) + 1. Runs as conv2d with H = 1."""

    def forward(self, xs, w, a, ctx):
        (s,), (d,), (pl, pr) = a["stride"], a["dilation"], a["pads"]
        y, cache = _conv2d_forward(xs[0][:, :, None, :], w["weight"][:, :, None, :],
                                   w["bias"] if a["bias"] else None, (1, s), (1, d), (0, pl, 0, pr),
                                   a["groups"])
        return y[:, :, 0, :], cache

    def backward(self, dy, cache):
        dx, dweight, dbias = _conv2d_backward(dy[:, :, None, :], cache)
        return [dx[:, :, 0, :]], _grads(dweight[:, :, 0, :], dbias)

    def weight_backward(self, dy, cache):
        _, dweight, dbias = _conv2d_backward(dy[:, :, None, :], cache, need_dx=False)
        return _grads(dweight[:, :, 0, :], dbias)


# ----------------------------------------------------------------------------------------------
# transposed convolution: the data gradient of a convolution, run forward

@dataclass
class ConvTransposeCache:
    """What a conv2d_transpose forward keeps for its backward.

    x: the input (N, C, H, W) (the forward's own array, not a copy); weight: (C, F/groups, kh, kw);
    buf_hw: the uncropped output buffer (Hb, Wb); out_hw: (Ho, Wo); stride, dilation: (sh, sw),
    (dh, dw); padding: (ph, pw), cropped from the buffer's top and left; groups; has_bias.
    """

    x: np.ndarray
    weight: np.ndarray
    buf_hw: tuple
    out_hw: tuple
    stride: tuple
    dilation: tuple
    padding: tuple
    groups: int
    has_bias: bool


# NOTE: conv2d_transpose runs sample-major: its GEMMs are batched over the samples (np.matmul on
# (N, groups, rows, H*W) stacks), so the input, the output buffer, dy and dx all stay in the
# (N, C, H, W) layout and no transposed copy of any of them is made (the channel-major layout,
# one (F*kh*kw, N*H*W) GEMM, copied x, the output and dy across to channel-major and dx back).

# NOTE: the sub-pixel ("phase") form. With dilation 1, output row o = i*sh + p of the uncropped
# buffer has phase rh = o mod sh, and only the taps p = rh + sh*t (t = 0..Kh-1, Kh = ceil(kh / sh))
# reach it, from input rows m - t (m = o // sh). So each phase (rh, rw) is a stride-1 convolution of
# x, padded by Kh-1 / Kw-1, with a (Kh, Kw) sub-kernel (flipped; taps past kh are zeros), and all
# sh*sw phases share the input windows: ONE stride-1 conv2d (the wide im2col path) whose output
# channels are (group, rh, rw, f) computes them all; the GEMM sums the taps, and the phases are
# copied into the interleaved output rows and columns (each output value written once) instead
# of kh*kw scatter-adds. The backward is that convolution's backward, on dy de-interleaved.

def _use_phases(C, F, kh, kw, stride, dilation):
    """The phase form when its im2col (C*Kh*Kw rows) is at most twice the scatter form's column
    matrix (F*kh*kw rows, each added into the output: read and written), dilation 1."""
    if tuple(dilation) != (1, 1):
        return False
    Kh, Kw = -(-kh // stride[0]), -(-kw // stride[1])
    return C * Kh * Kw <= 2 * F * kh * kw


def _phase_weight(weight, G, sh, sw):
    """(C, Fg, kh, kw) -> the phase convolution's weight (G*sh*sw*Fg, C/G, Kh, Kw): output channel
    (g, rh, rw, f), tap (u, v) = weight[c, f, rh + sh*(Kh-1-u), rw + sw*(Kw-1-v)] (zero past kh, kw)."""
    C, Fg, kh, kw = weight.shape
    Kh, Kw = -(-kh // sh), -(-kw // sw)
    wp = np.zeros((C, Fg, Kh * sh, Kw * sw), dtype=weight.dtype)
    wp[:, :, :kh, :kw] = weight
    w6 = wp.reshape(C, Fg, Kh, sh, Kw, sw)[:, :, ::-1, :, ::-1, :]
    return np.ascontiguousarray(w6.reshape(G, C // G, Fg, Kh, sh, Kw, sw).transpose(0, 4, 6, 2, 1, 3, 5)
                                ).reshape(G * sh * sw * Fg, C // G, Kh, Kw)


def _phase_weight_grad(dwc, wshape, G, sh, sw):
    """The inverse map of :func:`_phase_weight`, for its gradient: -> (C, Fg, kh, kw)."""
    C, Fg, kh, kw = wshape
    Kh, Kw = dwc.shape[2], dwc.shape[3]
    d7 = dwc.reshape(G, sh, sw, Fg, C // G, Kh, Kw).transpose(0, 4, 3, 5, 1, 6, 2)
    d6 = d7.reshape(C, Fg, Kh, sh, Kw, sw)[:, :, ::-1, :, ::-1, :]
    return np.ascontiguousarray(d6.reshape(C, Fg, Kh * sh, Kw * sw)[:, :, :kh, :kw])


def _phase_slices(sh, ph, Ho, Hm):
    """Per phase rh: (rh, first output row a0, first phase row m0, rows taken, rows wanted)."""
    out = []
    for rh in range(sh):
        a0 = (rh - ph) % sh
        m0 = (a0 + ph - rh) // sh
        want = len(range(a0, Ho, sh))
        out.append((rh, a0, m0, max(0, min(want, Hm - m0)), want))
    return out


@dataclass
class ConvTransposePhaseCache:
    """The phase form's cache: conv: the phase convolution's ConvCache; wshape: (C, F/groups, kh, kw);
    the output geometry (Ho, Wo), stride (sh, sw), padding (ph, pw); groups; has_bias."""

    conv: ConvCache
    wshape: tuple
    out_hw: tuple
    stride: tuple
    padding: tuple
    groups: int
    has_bias: bool


def _convt_phase_geometry(H, W, wshape, stride, padding, out_hw):
    _, _, kh, kw = wshape
    (sh, sw), (ph, pw), (Ho, Wo) = stride, padding, out_hw
    Kh, Kw = -(-kh // sh), -(-kw // sw)
    Hm, Wm = H + Kh - 1, W + Kw - 1
    return Kh, Kw, Hm, Wm, _phase_slices(sh, ph, Ho, Hm), _phase_slices(sw, pw, Wo, Wm)


def _conv2d_transpose_forward_phases(x, weight, bias, stride, padding, out_hw, groups):
    """x: (N, C, H, W); weight: (C, F/groups, kh, kw); bias: (F,) or None -> y: (N, F, Ho, Wo), cache."""
    N, C, H, W = x.shape
    _, Fg, kh, kw = weight.shape
    G, (sh, sw), (Ho, Wo) = groups, stride, out_hw
    Kh, Kw, Hm, Wm, rows, cols = _convt_phase_geometry(H, W, weight.shape, stride, padding, out_hw)
    pbias = None
    if bias is not None:
        pbias = np.broadcast_to(bias.reshape(G, 1, 1, Fg), (G, sh, sw, Fg)).reshape(-1)
    yp, conv = _conv2d_forward_s1(x, _phase_weight(weight, G, sh, sw), pbias, (1, 1),
                                  (Kh - 1, Kw - 1, Kh - 1, Kw - 1), G)
    yp = yp.reshape(N, G, sh, sw, Fg, Hm, Wm)
    covered = all(t == w for *_, t, w in rows) and all(t == w for *_, t, w in cols)
    if covered:
        y = np.empty((N, G * Fg, Ho, Wo), dtype=x.dtype)
    else:                                   # output_padding past the buffer: zeros (and the bias) there
        y = np.zeros((N, G * Fg, Ho, Wo), dtype=x.dtype)
        if bias is not None:
            y += bias.astype(y.dtype, copy=False)[:, None, None]
    y5 = y.reshape(N, G, Fg, Ho, Wo)
    for rh, a0, m0, th, _ in rows:
        for rw, b0, n0, tw, _ in cols:
            if th and tw:
                y5[:, :, :, a0:a0 + sh * (th - 1) + 1:sh, b0:b0 + sw * (tw - 1) + 1:sw] = \
                    yp[:, :, rh, rw, :, m0:m0 + th, n0:n0 + tw]
    return y, ConvTransposePhaseCache(conv, weight.shape, out_hw, (sh, sw), tuple(padding), G, bias is not None)


def _conv2d_transpose_backward_phases(dy, cache: ConvTransposePhaseCache, need_dx: bool = True):
    """dy: (N, F, Ho, Wo) -> dx: (N, C, H, W) | None, dweight: (C, F/groups, kh, kw), dbias: (F,) | None."""
    N, C, H, W = cache.conv.xshape
    _, Fg, kh, kw = cache.wshape
    G, (sh, sw), (Ho, Wo) = cache.groups, cache.stride, cache.out_hw
    _, _, Hm, Wm, rows, cols = _convt_phase_geometry(H, W, cache.wshape, cache.stride, cache.padding,
                                                     cache.out_hw)
    # every phase row and column of dyp is written when each phase's slice spans all of it
    full = all(m0 == 0 and t == Hm for _, _, m0, t, _ in rows) and all(n0 == 0 and t == Wm for _, _, n0, t, _ in cols)
    dyp = (np.empty if full else np.zeros)((N, G, sh, sw, Fg, Hm, Wm), dtype=dy.dtype)
    dy5 = dy.reshape(N, G, Fg, Ho, Wo)
    for rh, a0, m0, th, _ in rows:
        for rw, b0, n0, tw, _ in cols:
            if th and tw:
                dyp[:, :, rh, rw, :, m0:m0 + th, n0:n0 + tw] = \
                    dy5[:, :, :, a0:a0 + sh * (th - 1) + 1:sh, b0:b0 + sw * (tw - 1) + 1:sw]
    dx, dwc, _ = _conv2d_backward_s1(dyp.reshape(N, G * sh * sw * Fg, Hm, Wm), cache.conv, need_dx)
    dweight = _phase_weight_grad(dwc, cache.wshape, G, sh, sw)
    dbias = dy.sum(axis=(0, 2, 3)) if cache.has_bias else None
    return dx, dweight, dbias


def _conv2d_transpose_forward(x, weight, bias, stride, dilation, padding, output_padding, groups):
    """x: (N, C, H, W); weight: (C, F/groups, kh, kw); bias: (F,) or None.

    Input pixel (i, j) spreads weight[c, f] over the output rows i*sh + p*dh - ph and columns
    j*sw + q*dw - pw. Two forms: the phase form (dilation 1, where its columns are not much larger:
    one stride-1 convolution, see the note above) and the scatter form: per sample one GEMM (per
    group) gives every (f, p, q) contribution as (F*kh*kw, H*W) columns, and col2im adds them into
    the uncropped output, one strided slice per kernel position. The output is that buffer
    without `padding` rows/columns at each start, Ho rows long; an output_padding larger than the
    padding reaches past the buffer's end (zeros there)."""
    _, C, H, W = x.shape
    _, Fg, kh, kw = weight.shape
    G = groups
    F = Fg * G
    (sh, sw), (dh, dw), (ph, pw), (oph, opw) = stride, dilation, padding, output_padding
    Ho = (H - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    Wo = (W - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    if Ho <= 0 or Wo <= 0:
        raise ValueError(f"conv2d_transpose: output size ({Ho}, {Wo}) is not positive")
    if _use_phases(C, F, kh, kw, stride, dilation):
        return _conv2d_transpose_forward_phases(x, weight, bias, (sh, sw), (ph, pw), (Ho, Wo), groups)
    return _conv2d_transpose_forward_scatter(x, weight, bias, stride, dilation, padding, (Ho, Wo), groups)


def _conv2d_transpose_forward_scatter(x, weight, bias, stride, dilation, padding, out_hw, groups):
    """The scatter form of :func:`_conv2d_transpose_forward` (any dilation)."""
    N, C, H, W = x.shape
    _, Fg, kh, kw = weight.shape
    G = groups
    F = Fg * G
    (sh, sw), (dh, dw), (ph, pw), (Ho, Wo) = stride, dilation, padding, out_hw
    Hb = max((H - 1) * sh + dh * (kh - 1) + 1, ph + Ho)
    Wb = max((W - 1) * sw + dw * (kw - 1) + 1, pw + Wo)
    wT = weight.reshape(G, C // G, Fg * kh * kw).transpose(0, 2, 1)            # (G, Fg*kh*kw, C/G)
    cols = np.matmul(wT, x.reshape(N, G, C // G, H * W)).reshape(N, F, kh, kw, H, W)
    buf = np.zeros((N, F, Hb, Wb), dtype=x.dtype)
    for p in range(kh):
        r0 = p * dh
        for q in range(kw):
            c0 = q * dw
            buf[:, :, r0:r0 + sh * (H - 1) + 1:sh, c0:c0 + sw * (W - 1) + 1:sw] += cols[:, :, p, q]
    if (Hb, Wb) == (Ho, Wo):
        y = buf
    else:
        y = np.ascontiguousarray(buf[:, :, ph:ph + Ho, pw:pw + Wo])
    if bias is not None:
        y += bias.astype(y.dtype, copy=False)[:, None, None]
    return y, ConvTransposeCache(x, weight, (Hb, Wb), (Ho, Wo), (sh, sw), (dh, dw), (ph, pw), groups,
                                 bias is not None)


def _conv2d_transpose_backward(dy, cache: ConvTransposeCache, need_dx: bool = True):
    """dy: (N, F, Ho, Wo). Returns dx: (N, C, H, W) (None unless need_dx), dweight: (C, F/groups, kh, kw),
    dbias: (F,) | None.

    The gradient columns are an im2col of dy placed back into the uncropped buffer (the gather
    that mirrors the forward's scatter); dx and dweight are then one GEMM each per sample."""
    if isinstance(cache, ConvTransposePhaseCache):
        return _conv2d_transpose_backward_phases(dy, cache, need_dx)
    x, weight, G = cache.x, cache.weight, cache.groups
    N, C, H, W = x.shape
    _, Fg, kh, kw = weight.shape
    F = Fg * G
    (Hb, Wb), (Ho, Wo), (sh, sw), (dh, dw), (ph, pw) = (cache.buf_hw, cache.out_hw, cache.stride,
                                                        cache.dilation, cache.padding)
    if (Hb, Wb) == (Ho, Wo):
        dyb = dy
    else:
        dyb = np.zeros((N, F, Hb, Wb), dtype=dy.dtype)
        dyb[:, :, ph:ph + Ho, pw:pw + Wo] = dy
    ekh, ekw = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    win = sliding_window_view(dyb, (ekh, ekw), axis=(2, 3))[:, :, :sh * (H - 1) + 1:sh, :sw * (W - 1) + 1:sw,
                                                            ::dh, ::dw]
    dcols = win.transpose(0, 1, 4, 5, 2, 3).reshape(N, G, Fg * kh * kw, H * W)
    xg = x.reshape(N, G, C // G, H * W)
    dweight = np.matmul(xg, dcols.transpose(0, 1, 3, 2)).sum(axis=0).reshape(weight.shape)
    dbias = dy.sum(axis=(0, 2, 3)) if cache.has_bias else None
    if not need_dx:
        return None, dweight, dbias
    dx = np.matmul(weight.reshape(G, C // G, Fg * kh * kw), dcols).reshape(N, C, H, W)
    return dx, dweight, dbias


@register("conv2d_transpose")
class Conv2DTranspose(Kernel):
    """Transposed convolution (PyTorch ConvTranspose2d).

    x: (N, C, H, W); weight: (C, filters/groups, kh, kw); bias: (filters,); y: (N, filters, Ho, Wo)
    with Ho = (H-1)*sh - 2*ph + dh*(kh-1) + output_padding_h + 1."""

    def forward(self, xs, w, a, ctx):
        return _conv2d_transpose_forward(xs[0], w["weight"], w["bias"] if a["bias"] else None,
                                         tuple(a["stride"]), tuple(a["dilation"]), tuple(a["padding"]),
                                         tuple(a["output_padding"]), a["groups"])

    def backward(self, dy, cache):
        dx, dweight, dbias = _conv2d_transpose_backward(dy, cache)
        return [dx], _grads(dweight, dbias)

    def weight_backward(self, dy, cache):
        _, dweight, dbias = _conv2d_transpose_backward(dy, cache, need_dx=False)
        return _grads(dweight, dbias)
