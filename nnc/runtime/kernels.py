"""NumPy kernels: forward and backward for every op, side by side.

Each op is one :class:`Kernel` registered in :data:`KERNELS` under the op's catalogue name.

    y, cache = KERNELS[op].forward(xs, w, a, ctx)
    dxs, dw = KERNELS[op].backward(dy, cache)

- ``xs``: the op's inputs, batch axis first; ``w``: its weights and state by contract name
  (PyTorch names and layouts, see the language spec 4.1); ``a``: its attrs, already normalised by
  the compiler; ``ctx``: a :class:`Ctx` (train/eval mode and the random generator for dropout).
- ``backward`` returns the gradient of each input in order (``None`` for integer inputs) and the
  gradient of each *trainable* weight by name. State (batchnorm's running statistics) gets none.
- The forward's cache holds exactly what the backward reads. Kernels are stateless objects; all
  per-call data lives in the cache, so one kernel may serve many layers.

Conventions:
- dtype is preserved: float32 in gives float32 out (and float32 gradients); float64 gives float64.
  Python scalars are used for constants so NumPy never upcasts float32 arrays.
- Everything is vectorised over the batch; recurrent layers loop over time only; convolution and
  pooling loop over kernel positions only (kh * kw iterations) where they loop at all.
- Returned arrays (outputs and gradients) may be views of the inputs or of ``dy``, or the very
  same objects (identity, flatten, add, ...). Callers must not modify them in place.
- Per-example axes in attrs (``softmax``/``log_softmax``/``concat`` ``axis``) exclude the batch
  axis: NumPy axis = axis + 1. A negative axis is taken as a NumPy axis counted from the end.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from nnc.compiler.errors import NncError

__all__ = ["Ctx", "Kernel", "KERNELS", "erf", "erfc"]


@dataclass
class Ctx:
    """Per-call context passed to every forward.

    training: train mode (dropout active; batchnorm normalises with batch statistics and updates
        its running statistics in place).
    rng: the generator dropout draws its masks from.
    """

    training: bool = False
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))


class Kernel:
    """Forward and backward of one op. Subclasses are registered with :func:`register`."""

    name: str = "?"

    def forward(self, xs: list[np.ndarray], w: dict[str, np.ndarray], a: dict,
                ctx: Ctx) -> tuple[np.ndarray, object]:
        """xs: the op's inputs (batch axis first); w: weights/state by name; a: attrs.

        Returns (y, cache)."""
        raise NotImplementedError

    def backward(self, dy: np.ndarray,
                 cache) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        """dy: gradient of the loss w.r.t. y. Returns (input grads in order, trainable weight grads)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<Kernel {self.name}>"


KERNELS: dict[str, Kernel] = {}


def register(*names: str):
    """Class decorator: instantiate the kernel once and register it under each of ``names``."""
    def deco(cls):
        for name in names:
            inst = cls()
            inst.name = name
            KERNELS[name] = inst
        return cls
    return deco


def _np_axis(axis: int) -> int:
    """A per-example axis (batch excluded) as a NumPy axis."""
    return axis + 1 if axis >= 0 else axis


# ==============================================================================================
# elementwise math helpers (dtype-preserving)

def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function: never overflows, keeps x's dtype."""
    e = np.exp(-np.abs(x))
    num = np.where(x >= 0, 1, e).astype(x.dtype, copy=False)
    return num / (1 + e)


# W. J. Cody, "Rational Chebyshev approximations for the error function", Math. Comp. 23 (1969)
# 631-637; coefficients of SPECFUN's CALERF. Relative error below about 1e-16 in float64.
_ERF_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02,
          3.20937758913846947e03, 1.85777706184603153e-1)
_ERF_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
          2.84423683343917062e03)
_ERF_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01,
          2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03,
          2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8)
_ERF_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
          1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
          3.43936767414372164e03, 1.23033935480374942e03)
_ERF_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
          1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2)
_ERF_Q = (2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1,
          6.05183413124413191e-2, 2.33520497626869185e-3)
_SQRPI = 5.6418958354775628695e-1  # 1 / sqrt(pi)
_THRESH = 0.46875
_XBIG = 26.543  # erfc(x) underflows to 0 in float64 beyond this


def _erf_small(y: np.ndarray) -> np.ndarray:
    """erf(y) for |y| <= 0.46875 (odd rational function of y)."""
    ysq = y * y
    xnum = _ERF_A[4] * ysq
    xden = ysq
    for i in range(3):
        xnum = (xnum + _ERF_A[i]) * ysq
        xden = (xden + _ERF_B[i]) * ysq
    return y * (xnum + _ERF_A[3]) / (xden + _ERF_B[3])


def _erfc_large(y: np.ndarray) -> np.ndarray:
    """erfc(y) for y > 0.46875 (y >= 0)."""
    out = np.zeros_like(y)
    mid = y <= 4.0
    if mid.any():
        ym = y[mid]
        xnum = _ERF_C[8] * ym
        xden = ym
        for i in range(7):
            xnum = (xnum + _ERF_C[i]) * ym
            xden = (xden + _ERF_D[i]) * ym
        r = (xnum + _ERF_C[7]) / (xden + _ERF_D[7])
        out[mid] = _exp_neg_sq(ym) * r
    far = ~mid & (y < _XBIG)
    if far.any():
        yf = y[far]
        ysq = 1 / (yf * yf)
        xnum = _ERF_P[5] * ysq
        xden = ysq
        for i in range(4):
            xnum = (xnum + _ERF_P[i]) * ysq
            xden = (xden + _ERF_Q[i]) * ysq
        r = ysq * (xnum + _ERF_P[4]) / (xden + _ERF_Q[4])
        r = (_SQRPI - r) / yf
        out[far] = _exp_neg_sq(yf) * r
    return out


def _exp_neg_sq(y: np.ndarray) -> np.ndarray:
    """exp(-y*y) computed as exp(-ysq*ysq) * exp(-del) with ysq = y rounded down to 1/16 (Cody's
    trick: keeps the rounding error of y*y out of the exponent)."""
    ysq = np.trunc(y * 16) / 16
    d = (y - ysq) * (y + ysq)
    return np.exp(-ysq * ysq) * np.exp(-d)


def erf(x: np.ndarray) -> np.ndarray:
    """Vectorised error function (Cody's rational approximations); keeps x's float dtype."""
    x = np.asarray(x)
    y = np.abs(x)
    small = y <= _THRESH
    out = np.empty_like(x)
    if small.all():
        return _erf_small(x)
    out[small] = _erf_small(x[small])
    big = ~small
    out[big] = np.copysign(1 - _erfc_large(y[big]), x[big])
    return out


def erfc(x: np.ndarray) -> np.ndarray:
    """Vectorised complementary error function 1 - erf(x), accurate in the tails."""
    x = np.asarray(x)
    y = np.abs(x)
    small = y <= _THRESH
    out = np.empty_like(x)
    out[small] = 1 - _erf_small(x[small])
    big = ~small
    xb = x[big]
    e = _erfc_large(y[big])
    out[big] = np.where(xb < 0, 2 - e, e)
    return out


# ==============================================================================================
# dense

@register("dense")
class Dense(Kernel):
    """y = x @ weight.T + bias.

    x: (N, F) or (N, T, F); weight: (units, F); bias: (units,) if a["bias"]; y: (N, units) or
    (N, T, units)."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        weight = w["weight"]
        x2 = x.reshape(-1, x.shape[-1])          # (N*T, F)
        y = x2 @ weight.T                        # (N*T, units)
        has_bias = a.get("bias", True)
        if has_bias:
            y += w["bias"]
        return y.reshape(*x.shape[:-1], weight.shape[0]), (x2, x.shape, weight, has_bias)

    def backward(self, dy, cache):
        x2, xshape, weight, has_bias = cache
        dy2 = dy.reshape(-1, weight.shape[0])    # (N*T, units)
        dx = (dy2 @ weight).reshape(xshape)
        grads = {"weight": dy2.T @ x2}
        if has_bias:
            grads["bias"] = dy2.sum(axis=0)
        return [dx], grads


# ==============================================================================================
# convolution (conv1d runs as conv2d with H = 1)

def _conv2d_forward(x, weight, bias, stride, dilation, pads):
    """x: (N, C, H, W); weight: (F, C, kh, kw); bias: (F,) or None; pads: (top, left, bottom, right).

    Returns y: (N, F, Ho, Wo) and the cache for :func:`_conv2d_backward`."""
    if tuple(stride) == (1, 1):
        return _conv2d_forward_s1(x, weight, bias, dilation, pads)
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
    y = weight.reshape(F, C * kh * kw) @ cols            # (F, N*Ho*Wo)
    if bias is not None:
        y += bias[:, None]
    y = np.ascontiguousarray(y.reshape(F, N, Ho, Wo).transpose(1, 0, 2, 3))
    cache = (cols, weight, x.shape, xp.shape, (Ho, Wo), stride, dilation, pads, bias is not None)
    return y, cache


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


def _conv2d_forward_s1(x, weight, bias, dilation, pads):
    N, C, H, W, F, kh, kw, Hp, Wp, Ho, Wo, size = _wide_geometry(x.shape, weight.shape, dilation, pads)
    pt, pl, pb, pr = pads
    L = Ho * Wp
    K = C * kh * kw
    xbuf = np.zeros((C, size), dtype=x.dtype)
    xbuf[:, :N * Hp * Wp].reshape(C, N, Hp, Wp)[:, :, pt:pt + H, pl:pl + W] = x.transpose(1, 0, 2, 3)
    # with a bias, the columns get a last row of ones and the weight matrix the bias as its last
    # column: the GEMMs then add the bias (forward) and sum its gradient (backward) for free
    has_bias = bias is not None
    cols = np.empty((K + has_bias, N * L), dtype=x.dtype)
    np.copyto(cols[:K].reshape(C, kh, kw, N, L),
              _wide_runs(xbuf, kh, kw, dilation[0], dilation[1], N, Hp, Wp, L))
    wm = weight.reshape(F, K)
    if has_bias:
        cols[K] = 1
        wm = np.concatenate([wm, bias[:, None].astype(wm.dtype, copy=False)], axis=1)
    y = wm @ cols                                        # (F, N*Ho*Wp)
    y = np.ascontiguousarray(y.reshape(F, N, Ho, Wp)[:, :, :, :Wo].transpose(1, 0, 2, 3))
    cache = (cols, weight, x.shape, None, (Ho, Wo), (1, 1), dilation, pads, has_bias)
    return y, cache


def _conv2d_backward_s1(dy, cache):
    cols, weight, xshape, _, _, _, (dh, dw), pads, has_bias = cache
    N, C, H, W, F, kh, kw, Hp, Wp, Ho, Wo, size = _wide_geometry(xshape, weight.shape, (dh, dw), pads)
    pt, pl, _, _ = pads
    L = Ho * Wp
    dyf = np.empty((F, N, Ho, Wp), dtype=dy.dtype)
    dyf[:, :, :, :Wo] = dy.transpose(1, 0, 2, 3)
    dyf[:, :, :, Wo:] = 0
    dyf = dyf.reshape(F, N * L)
    K = C * kh * kw
    dwm = dyf @ cols.T                                   # (F, K [+ 1 for the bias])
    dweight = np.ascontiguousarray(dwm[:, :K]).reshape(weight.shape)
    dbias = dwm[:, K].copy() if has_bias else None
    dcols = (weight.reshape(F, K).T @ dyf).reshape(C, kh, kw, N, L)
    dxbuf = np.zeros((C, size), dtype=dy.dtype)
    runs = _wide_runs(dxbuf, kh, kw, dh, dw, N, Hp, Wp, L)
    for p in range(kh):
        for q in range(kw):
            runs[:, p, q] += dcols[:, p, q]             # runs of one (p, q) never overlap
    dx = dxbuf[:, :N * Hp * Wp].reshape(C, N, Hp, Wp)[:, :, pt:pt + H, pl:pl + W]
    return np.ascontiguousarray(dx.transpose(1, 0, 2, 3)), dweight, dbias


def _conv2d_backward(dy, cache):
    """dy: (N, F, Ho, Wo). Returns dx: (N, C, H, W), dweight: (F, C, kh, kw), dbias: (F,) | None."""
    if cache[3] is None:
        return _conv2d_backward_s1(dy, cache)
    cols, weight, xshape, xpshape, (Ho, Wo), (sh, sw), (dh, dw), pads, has_bias = cache
    N, C, H, W = xshape
    F, _, kh, kw = weight.shape
    dyf = np.ascontiguousarray(dy.transpose(1, 0, 2, 3)).reshape(F, N * Ho * Wo)
    dweight = (dyf @ cols.T).reshape(weight.shape)
    dbias = dyf.sum(axis=1) if has_bias else None
    dcols = (weight.reshape(F, C * kh * kw).T @ dyf).reshape(C, kh, kw, N, Ho, Wo)
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


@register("conv2d")
class Conv2D(Kernel):
    """Cross-correlation with zero padding (PyTorch Conv2d).

    x: (N, C, H, W); weight: (filters, C, kh, kw); bias: (filters,); y: (N, filters, Ho, Wo) with
    Ho = floor((H + top + bottom - dh*(kh-1) - 1) / sh) + 1."""

    def forward(self, xs, w, a, ctx):
        has_bias = a.get("bias", True)
        return _conv2d_forward(xs[0], w["weight"], w["bias"] if has_bias else None,
                               tuple(a["stride"]), tuple(a["dilation"]), tuple(a["pads"]))

    def backward(self, dy, cache):
        dx, dweight, dbias = _conv2d_backward(dy, cache)
        grads = {"weight": dweight}
        if dbias is not None:
            grads["bias"] = dbias
        return [dx], grads


@register("conv1d")
class Conv1D(Kernel):
    """x: (N, C, L); weight: (filters, C, k); bias: (filters,); y: (N, filters, Lo),
    Lo = floor((L + left + right - d*(k-1) - 1) / s) + 1. Runs as conv2d with H = 1."""

    def forward(self, xs, w, a, ctx):
        has_bias = a.get("bias", True)
        (s,), (d,), (pl, pr) = a["stride"], a["dilation"], a["pads"]
        y, cache = _conv2d_forward(xs[0][:, :, None, :], w["weight"][:, :, None, :],
                                   w["bias"] if has_bias else None, (1, s), (1, d), (0, pl, 0, pr))
        return y[:, :, 0, :], cache

    def backward(self, dy, cache):
        dx, dweight, dbias = _conv2d_backward(dy[:, :, None, :], cache)
        grads = {"weight": dweight[:, :, 0, :]}
        if dbias is not None:
            grads["bias"] = dbias
        return [dx[:, :, 0, :]], grads


# ==============================================================================================
# pooling

def _pool_geometry(x, a):
    kh, kw = a["size"]
    sh, sw = a["stride"]
    pt, pl, pb, pr = a["pads"]
    Ho = (x.shape[2] + pt + pb - kh) // sh + 1
    Wo = (x.shape[3] + pl + pr - kw) // sw + 1
    if Ho <= 0 or Wo <= 0:
        raise ValueError(f"pool: window ({kh}, {kw}) exceeds padded input")
    return kh, kw, sh, sw, (pt, pl, pb, pr), Ho, Wo


def _window(xp, p, q, sh, sw, Ho, Wo):
    """The (N, C, Ho, Wo) strided view of xp seen at kernel position (p, q)."""
    return xp[:, :, p:p + sh * (Ho - 1) + 1:sh, q:q + sw * (Wo - 1) + 1:sw]


@register("maxpool2d")
class MaxPool2D(Kernel):
    """x: (N, C, H, W) -> (N, C, Ho, Wo); padding is -inf. The gradient goes to the first maximum
    of each window in row-major order (PyTorch's tie rule)."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        kh, kw, sh, sw, (pt, pl, pb, pr), Ho, Wo = _pool_geometry(x, a)
        xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=-np.inf) \
            if any((pt, pl, pb, pr)) else x
        y = _window(xp, 0, 0, sh, sw, Ho, Wo).copy()
        for p in range(kh):
            for q in range(kw):
                if p or q:
                    np.maximum(y, _window(xp, p, q, sh, sw, Ho, Wo), out=y)
        # NOTE: the argmax is not kept: the backward finds it again by comparison with y, which
        # keeps the forward (also used for inference) at kh*kw cheap maximum passes.
        return y, (xp, y, x.shape, kh, kw, sh, sw, pt, pl, Ho, Wo)

    def backward(self, dy, cache):
        xp, y, xshape, kh, kw, sh, sw, pt, pl, Ho, Wo = cache
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
        kh, kw, sh, sw, (pt, pl, pb, pr), Ho, Wo = _pool_geometry(x, a)
        xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr))) if any((pt, pl, pb, pr)) else x
        y = _window(xp, 0, 0, sh, sw, Ho, Wo).copy()
        for p in range(kh):
            for q in range(kw):
                if p or q:
                    y += _window(xp, p, q, sh, sw, Ho, Wo)
        y *= 1 / (kh * kw)
        return y, (x.shape, xp.shape, kh, kw, sh, sw, pt, pl, Ho, Wo)

    def backward(self, dy, cache):
        xshape, xpshape, kh, kw, sh, sw, pt, pl, Ho, Wo = cache
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


# ==============================================================================================
# shape ops

@register("flatten")
class Flatten(Kernel):
    """x: (N, ...) -> (N, prod(...))."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        return x.reshape(x.shape[0], -1), x.shape

    def backward(self, dy, xshape):
        return [dy.reshape(xshape)], {}


@register("reshape")
class Reshape(Kernel):
    """x: (N, ...) -> (N, *a["shape"]) (fully resolved, no -1)."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        return x.reshape(x.shape[0], *a["shape"]), x.shape

    def backward(self, dy, xshape):
        return [dy.reshape(xshape)], {}


@register("identity", "linear")
class Identity(Kernel):
    """y = x, any shape."""

    def forward(self, xs, w, a, ctx):
        return xs[0], None

    def backward(self, dy, cache):
        return [dy], {}


@register("concat")
class Concat(Kernel):
    """xs: n arrays equal but along a["axis"] (per-example; NumPy axis + 1) -> joined."""

    def forward(self, xs, w, a, ctx):
        axis = _np_axis(a["axis"])
        sizes = [x.shape[axis] for x in xs]
        return np.concatenate(xs, axis=axis), (axis, np.cumsum(sizes)[:-1])

    def backward(self, dy, cache):
        axis, splits = cache
        return list(np.split(dy, splits, axis=axis)), {}


@register("add")
class Add(Kernel):
    """xs: n >= 2 arrays of equal shape -> their sum."""

    def forward(self, xs, w, a, ctx):
        y = xs[0] + xs[1]
        for x in xs[2:]:
            y += x
        return y, len(xs)

    def backward(self, dy, n):
        return [dy] * n, {}


@register("multiply")
class Multiply(Kernel):
    """xs: n >= 2 arrays of equal shape -> their elementwise product."""

    def forward(self, xs, w, a, ctx):
        y = xs[0] * xs[1]
        for x in xs[2:]:
            y *= x
        return y, list(xs)

    def backward(self, dy, xs):
        grads = []
        for i in range(len(xs)):
            g = dy
            for j, x in enumerate(xs):
                if j != i:
                    g = g * x
            grads.append(g)
        return grads, {}


# ==============================================================================================
# regularisation and normalisation

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
    """Normalises the last axis. x: (..., D); weight, bias: (D,)."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        eps = float(a["eps"])
        xc = x - x.mean(axis=-1, keepdims=True)
        var = np.mean(xc * xc, axis=-1, keepdims=True)
        inv_std = 1 / np.sqrt(var + eps)                     # (..., 1)
        xhat = xc * inv_std
        weight = w["weight"]
        return xhat * weight + w["bias"], (xhat, inv_std, weight)

    def backward(self, dy, cache):
        xhat, inv_std, weight = cache
        lead = tuple(range(dy.ndim - 1))
        dweight = np.sum(dy * xhat, axis=lead)
        dbias = dy.sum(axis=lead)
        g = dy * weight                                     # d loss / d xhat
        dx = inv_std * (g - g.mean(axis=-1, keepdims=True)
                        - xhat * np.mean(g * xhat, axis=-1, keepdims=True))
        return [dx], {"weight": dweight, "bias": dbias}


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


# ==============================================================================================
# recurrent layers: time-major internally; x-projection and weight gradients are one matmul each

def _input_projection(x, w, a, with_bias_hh: bool):
    """x: (N, T, F) -> (xt: (T*N, F) time-major copy, xp: (T, N, G*u) = x W_ih^T + b_ih [+ b_hh])."""
    N, T, F = x.shape
    xt = np.ascontiguousarray(x.transpose(1, 0, 2)).reshape(T * N, F)
    xp = xt @ w["weight_ih"].T
    if a.get("bias", True):
        xp += w["bias_ih"]
        if with_bias_hh:
            xp += w["bias_hh"]
    return xt, xp.reshape(T, N, -1)


def _recurrent_grads(dG, dGh, xt, H, w, a, xshape):
    """Shared tail of the recurrent backwards.

    dG: (T, N, G*u) gradient of the input projection; dGh: (T, N, G*u) of the recurrent
    projection (same array as dG when the biases add identically); xt: (T*N, F); H: (T+1, N, u)."""
    N, T, F = xshape
    Gu = dG.shape[-1]
    dG2 = dG.reshape(T * N, Gu)
    dGh2 = dGh.reshape(T * N, Gu)
    dx = np.ascontiguousarray((dG2 @ w["weight_ih"]).reshape(T, N, F).transpose(1, 0, 2))
    grads = {"weight_ih": dG2.T @ xt,
             "weight_hh": dGh2.T @ H[:-1].reshape(T * N, -1)}
    if a.get("bias", True):
        grads["bias_ih"] = dG2.sum(axis=0)
        grads["bias_hh"] = grads["bias_ih"].copy() if dGh is dG else dGh2.sum(axis=0)
    return [dx], grads


def _output(H, a):
    """H: (T+1, N, u) -> (N, T, u) if return_sequences else (N, u)."""
    if a.get("return_sequences", False):
        return np.ascontiguousarray(H[1:].transpose(1, 0, 2))
    return H[-1].copy()


def _dy_at(dy, t, T, seq):
    """The output gradient reaching h_t: dy (N, T, u) if seq else (N, u) at the last step only."""
    if seq:
        return dy[:, t]
    return dy if t == T - 1 else None


@register("rnn")
class RNN(Kernel):
    """Elman RNN: h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), h_0 = 0.

    x: (N, T, F); weight_ih: (u, F); weight_hh: (u, u); bias_ih, bias_hh: (u,);
    y: (N, u) = h_T or (N, T, u) with return_sequences. act: a["activation"] tanh | relu."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        N, T, F = x.shape
        act = a.get("activation", "tanh")
        xt, xp = _input_projection(x, w, a, with_bias_hh=True)
        u = xp.shape[-1]
        whhT = w["weight_hh"].T
        H = np.zeros((T + 1, N, u), dtype=xp.dtype)
        for t in range(T):
            h = H[t + 1]
            np.matmul(H[t], whhT, out=h)
            h += xp[t]
            if act == "tanh":
                np.tanh(h, out=h)
            else:
                np.maximum(h, 0, out=h)
        return _output(H, a), (xt, H, w, a, act, x.shape)

    def backward(self, dy, cache):
        xt, H, w, a, act, xshape = cache
        N, T, F = xshape
        seq = a.get("return_sequences", False)
        whh = w["weight_hh"]
        dA = np.empty_like(H[1:])                      # (T, N, u) grad of pre-activations
        dh = np.zeros_like(H[0])
        for t in range(T - 1, -1, -1):
            g = _dy_at(dy, t, T, seq)
            if g is not None:
                dh = dh + g
            h = H[t + 1]
            da = dA[t]
            if act == "tanh":
                np.multiply(dh, 1 - h * h, out=da)
            else:
                np.multiply(dh, h > 0, out=da)
            dh = da @ whh
        return _recurrent_grads(dA, dA, xt, H, w, a, xshape)


@register("lstm")
class LSTM(Kernel):
    """LSTM with PyTorch's formulas and gate order (input, forget, cell, output), h_0 = c_0 = 0.

    x: (N, T, F); weight_ih: (4u, F); weight_hh: (4u, u); bias_ih, bias_hh: (4u,);
    y: (N, u) = h_T or (N, T, u) with return_sequences."""

    # NOTE: the forward keeps the gates planar, A: (T, 4, N, u), in the order (i, f, o, g), with
    # the weight rows (and biases) of i, f, o scaled by 0.5 (exact in binary floating point): one
    # in-place tanh over a step's 4 gate planes gives tanh(g) and tanh(z/2) for the rest, and
    # sigmoid(z) = 0.5 * tanh(z/2) + 0.5 is two in-place passes over one contiguous block. Every
    # per-step elementwise op then runs on contiguous (N, u) planes without temporaries. The
    # backward writes dZ in PyTorch's interleaved order (it feeds the weight gradients directly)
    # and precomputes every gate-derivative factor that does not depend on dh/dc over all steps
    # at once, leaving four small ufuncs and one matmul per step.

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        N, T, F = x.shape
        wih, whh = w["weight_ih"], w["weight_hh"]
        u = whh.shape[1]
        dt = np.result_type(x.dtype, wih.dtype)
        perm = np.r_[0:2 * u, 3 * u:4 * u, 2 * u:3 * u]          # (i, f, g, o) -> (i, f, o, g)
        scale = np.ones(4 * u, dtype=dt)
        scale[:3 * u] = 0.5
        xt = np.ascontiguousarray(x.transpose(1, 0, 2)).reshape(T * N, F)
        xp = xt @ (wih[perm] * scale[:, None]).T                  # (T*N, 4u): x W_ih^T + b
        if a.get("bias", True):
            xp += (w["bias_ih"][perm] + w["bias_hh"][perm]) * scale
        xp = xp.reshape(T, N, 4, u)
        whhT = np.ascontiguousarray((whh[perm] * scale[:, None]).T)      # (u, 4u)
        A = np.empty((T, 4, N, u), dtype=xp.dtype)    # gate activations, planar
        H = np.empty((T + 1, N, u), dtype=xp.dtype)
        H[0] = 0
        C = np.empty((T + 1, N, u), dtype=xp.dtype)
        C[0] = 0
        TC = np.empty((T, N, u), dtype=xp.dtype)       # tanh(c_t)
        hw = np.empty((N, 4, u), dtype=xp.dtype)
        hw2 = hw.reshape(N, 4 * u)
        hwp = hw.transpose(1, 0, 2)
        tmp = np.empty((N, u), dtype=xp.dtype)
        for t in range(T):
            z = A[t]
            if t:
                np.matmul(H[t], whhT, out=hw2)
                np.add(xp[t].transpose(1, 0, 2), hwp, out=z)
            else:
                np.copyto(z, xp[0].transpose(1, 0, 2))
            np.tanh(z, out=z)
            s = z[:3]
            s *= 0.5
            s += 0.5
            c = C[t + 1]
            np.multiply(z[1], C[t], out=c)
            np.multiply(z[0], z[3], out=tmp)
            c += tmp
            np.tanh(c, out=TC[t])
            np.multiply(z[2], TC[t], out=H[t + 1])
        return _output(H, a), (xt, H, C, A, TC, w, a, x.shape)

    def backward(self, dy, cache):
        xt, H, C, A, TC, w, a, xshape = cache
        N, T, F = xshape
        u = H.shape[-1]
        seq = a.get("return_sequences", False)
        whh = w["weight_hh"]
        I, Fg, O, G = A[:, 0], A[:, 1], A[:, 2], A[:, 3]
        # factors of dZ in PyTorch's gate order: dZ = (dc * D_i, dc * D_f, dc * D_g, dh * D_o)
        D = np.empty((T, 4, N, u), dtype=A.dtype)
        Di, Df, Dg, Do = D[:, 0], D[:, 1], D[:, 2], D[:, 3]
        np.subtract(1, I, out=Di)
        Di *= I
        Di *= G                                        # g * i * (1 - i)
        np.subtract(1, Fg, out=Df)
        Df *= Fg
        Df *= C[:-1]                                   # c_{t-1} * f * (1 - f)
        np.multiply(G, G, out=Dg)
        np.subtract(1, Dg, out=Dg)
        Dg *= I                                        # i * (1 - g^2)
        np.subtract(1, O, out=Do)
        Do *= O
        Do *= TC                                       # tanh(c) * o * (1 - o)
        P = np.multiply(TC, TC)
        np.subtract(1, P, out=P)
        P *= O                                         # dc_t += dh_t * o * (1 - tanh(c)^2)
        dZ = np.empty((T, N, 4 * u), dtype=A.dtype)
        dZp = dZ.reshape(T, N, 4, u).transpose(0, 2, 1, 3)   # planar view (T, 4, N, u)
        dh = np.zeros((N, u), dtype=A.dtype)
        dc = np.zeros((N, u), dtype=A.dtype)
        tmp = np.empty((N, u), dtype=A.dtype)
        for t in range(T - 1, -1, -1):
            gy = _dy_at(dy, t, T, seq)
            if gy is not None:
                dh += gy
            np.multiply(dh, P[t], out=tmp)
            dc += tmp
            np.multiply(D[t, :3], dc, out=dZp[t, :3])
            np.multiply(Do[t], dh, out=dZp[t, 3])
            if t:
                dc *= Fg[t]
                np.matmul(dZ[t], whh, out=dh)
        return _recurrent_grads(dZ, dZ, xt, H, w, a, xshape)


@register("gru")
class GRU(Kernel):
    """GRU with PyTorch's formulas and gate order (reset, update, new), h_0 = 0; the reset gate is
    applied after the recurrent product (ONNX linear_before_reset=1):

        r = sig(W_ir x + b_ir + W_hr h + b_hr);  z = sig(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn));  h' = (1 - z) * n + z * h

    x: (N, T, F); weight_ih: (3u, F); weight_hh: (3u, u); bias_ih, bias_hh: (3u,);
    y: (N, u) = h_T or (N, T, u) with return_sequences."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        N, T, F = x.shape
        has_bias = a.get("bias", True)
        xt, gi = _input_projection(x, w, a, with_bias_hh=False)   # (T, N, 3u)
        u = gi.shape[-1] // 3
        whhT = w["weight_hh"].T
        bhh = w["bias_hh"] if has_bias else None
        H = np.zeros((T + 1, N, u), dtype=gi.dtype)
        RZ = np.empty((T, N, 2 * u), dtype=gi.dtype)   # r, z
        NN = np.empty((T, N, u), dtype=gi.dtype)       # n
        GHN = np.empty((T, N, u), dtype=gi.dtype)      # W_hn h + b_hn
        for t in range(T):
            gh = H[t] @ whhT
            if bhh is not None:
                gh += bhh
            rz = RZ[t]
            rz[...] = sigmoid(gi[t, :, :2 * u] + gh[:, :2 * u])
            r, z = rz[:, :u], rz[:, u:]
            GHN[t] = gh[:, 2 * u:]
            n = NN[t]
            np.multiply(r, GHN[t], out=n)
            n += gi[t, :, 2 * u:]
            np.tanh(n, out=n)
            # h' = n + z * (h - n)
            np.subtract(H[t], n, out=H[t + 1])
            H[t + 1] *= z
            H[t + 1] += n
        return _output(H, a), (xt, H, RZ, NN, GHN, w, a, x.shape)

    def backward(self, dy, cache):
        xt, H, RZ, NN, GHN, w, a, xshape = cache
        N, T, F = xshape
        u = H.shape[-1]
        seq = a.get("return_sequences", False)
        whh = w["weight_hh"]
        dGI = np.empty((T, N, 3 * u), dtype=H.dtype)   # grad of x W_ih^T + b_ih
        dGH = np.empty((T, N, 3 * u), dtype=H.dtype)   # grad of h W_hh^T + b_hh
        dh = np.zeros_like(H[0])
        for t in range(T - 1, -1, -1):
            gy = _dy_at(dy, t, T, seq)
            if gy is not None:
                dh = dh + gy
            r, z = RZ[t, :, :u], RZ[t, :, u:]
            n = NN[t]
            dnp = dh * (1 - z) * (1 - n * n)           # grad of n's pre-activation
            drp = dnp * GHN[t] * r * (1 - r)
            dzp = dh * (H[t] - n) * z * (1 - z)
            dgi, dgh = dGI[t], dGH[t]
            dgi[:, :u] = drp
            dgi[:, u:2 * u] = dzp
            dgi[:, 2 * u:] = dnp
            dgh[:, :2 * u] = dgi[:, :2 * u]
            np.multiply(dnp, r, out=dgh[:, 2 * u:])
            dh = dh * z + dgh @ whh
        return _recurrent_grads(dGI, dGH, xt, H, w, a, xshape)


# ==============================================================================================
# activations (elementwise unless noted)

_ZEROS: dict[np.dtype, np.ndarray] = {}


def _zeros_like(x: np.ndarray) -> np.ndarray:
    """A read-only array of zeros shaped like x (a view of one shared buffer per dtype).

    NOTE: np.maximum(x, 0) with a scalar misses NumPy's SIMD loop: about 3x slower than against
    an array of zeros (NumPy 2.x, float32). The buffer only grows and is never written after."""
    z = _ZEROS.get(x.dtype)
    if z is None or z.size < x.size:
        z = np.zeros(x.size, dtype=x.dtype)
        z.flags.writeable = False
        _ZEROS[x.dtype] = z
    return z[:x.size].reshape(x.shape)

@register("relu")
class ReLU(Kernel):
    """y = max(x, 0), elementwise; x: any shape."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        return np.maximum(x, _zeros_like(x)), x > 0

    def backward(self, dy, pos):
        return [dy * pos], {}


@register("sigmoid")
class Sigmoid(Kernel):
    """y = 1 / (1 + exp(-x)), stable for large |x|; x: any shape."""

    def forward(self, xs, w, a, ctx):
        y = sigmoid(xs[0])
        return y, y

    def backward(self, dy, y):
        return [dy * y * (1 - y)], {}


@register("tanh")
class Tanh(Kernel):
    """y = tanh(x); x: any shape."""

    def forward(self, xs, w, a, ctx):
        y = np.tanh(xs[0])
        return y, y

    def backward(self, dy, y):
        return [dy * (1 - y * y)], {}


@register("softmax")
class Softmax(Kernel):
    """Softmax along a["axis"] (per-example axis; NumPy axis + 1); x: (N, ...)."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        axis = _np_axis(a.get("axis", -1))
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        y = e / e.sum(axis=axis, keepdims=True)
        return y, (y, axis)

    def backward(self, dy, cache):
        y, axis = cache
        return [y * (dy - np.sum(dy * y, axis=axis, keepdims=True))], {}


@register("log_softmax")
class LogSoftmax(Kernel):
    """log(softmax(x)) along a["axis"], computed stably."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        axis = _np_axis(a.get("axis", -1))
        s = x - x.max(axis=axis, keepdims=True)
        y = s - np.log(np.exp(s).sum(axis=axis, keepdims=True))
        return y, (y, axis)

    def backward(self, dy, cache):
        y, axis = cache
        return [dy - np.exp(y) * dy.sum(axis=axis, keepdims=True)], {}


@register("leaky_relu")
class LeakyReLU(Kernel):
    """y = x where x > 0 else alpha * x."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        alpha = float(a.get("alpha", 0.01))
        pos = x > 0
        return np.where(pos, x, alpha * x), (pos, alpha)

    def backward(self, dy, cache):
        pos, alpha = cache
        return [np.where(pos, dy, alpha * dy)], {}


@register("elu")
class ELU(Kernel):
    """y = x where x > 0 else alpha * (exp(x) - 1)."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        alpha = float(a.get("alpha", 1.0))
        pos = x > 0
        neg = alpha * np.expm1(np.minimum(x, 0))
        return np.where(pos, x, neg), (pos, neg, alpha)

    def backward(self, dy, cache):
        pos, neg, alpha = cache
        return [np.where(pos, dy, dy * (neg + alpha))], {}


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


@register("selu")
class SELU(Kernel):
    """y = scale * (x where x > 0 else alpha * (exp(x) - 1)), PyTorch's constants."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        pos = x > 0
        neg = (_SELU_SCALE * _SELU_ALPHA) * np.expm1(np.minimum(x, 0))
        return np.where(pos, _SELU_SCALE * x, neg), (pos, neg)

    def backward(self, dy, cache):
        pos, neg = cache
        return [dy * np.where(pos, _SELU_SCALE, neg + _SELU_SCALE * _SELU_ALPHA)], {}


_INV_SQRT2 = 1 / math.sqrt(2)
_INV_SQRT2PI = 1 / math.sqrt(2 * math.pi)


@register("gelu")
class GELU(Kernel):
    """Exact GELU: y = x * Phi(x), Phi(x) = erfc(-x / sqrt 2) / 2 (accurate for very negative x)."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        cdf = 0.5 * erfc(x * -_INV_SQRT2)
        return x * cdf, (x, cdf)

    def backward(self, dy, cache):
        x, cdf = cache
        pdf = _INV_SQRT2PI * np.exp(-0.5 * x * x)
        return [dy * (cdf + x * pdf)], {}


@register("softplus")
class Softplus(Kernel):
    """y = log(1 + exp(x)), and y = x where x > 20 (PyTorch beta=1, threshold=20)."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        big = x > 20
        y = np.where(big, x, np.log1p(np.exp(np.minimum(x, 20))))
        return y, (x, big)

    def backward(self, dy, cache):
        x, big = cache
        return [np.where(big, dy, dy * sigmoid(x))], {}


@register("silu")
class SiLU(Kernel):
    """y = x * sigmoid(x)."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        s = sigmoid(x)
        return x * s, (x, s)

    def backward(self, dy, cache):
        x, s = cache
        return [dy * s * (1 + x * (1 - s))], {}


@register("step")
class Step(Kernel):
    """Heaviside: y = 1 where x > 0 else 0 (x's dtype). Backward is straight-through: dx = dy."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        return (x > 0).astype(x.dtype), None

    def backward(self, dy, cache):
        return [dy], {}
