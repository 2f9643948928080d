"""Activations. The elementwise ones are one table of forward/backward pairs (tinygrad's gradient
table): adding one is an entry in :data:`POINTWISE` (``linear`` is ``identity``'s kernel). ``softmax`` and ``log_softmax`` work along
an axis and are kernels of their own.

Each pair: ``forward(x, a) -> (y, saved)`` and ``backward(dy, saved) -> dx``, x any shape (batch
first), dtype preserved; ``saved`` holds exactly what the backward reads.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .base import KERNELS, Kernel, _np_axis, register
from .special import erf_float32, erfc, sigmoid


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


@dataclass(frozen=True)
class Pointwise:
    forward: Callable      # (x, a) -> (y, saved)
    backward: Callable     # (dy, saved) -> dx
    doc: str


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_INV_SQRT2 = 1 / math.sqrt(2)
_INV_SQRT2PI = 1 / math.sqrt(2 * math.pi)


def _leaky_relu(x, a):
    pos = x > 0
    alpha = float(a["alpha"])
    return np.where(pos, x, alpha * x), (pos, alpha)


def _elu(x, a):
    alpha = float(a["alpha"])
    pos = x > 0
    neg = alpha * np.expm1(np.minimum(x, 0))
    return np.where(pos, x, neg), (pos, neg, alpha)


def _selu(x, a):
    pos = x > 0
    neg = (_SELU_SCALE * _SELU_ALPHA) * np.expm1(np.minimum(x, 0))
    return np.where(pos, _SELU_SCALE * x, neg), (pos, neg)


#: elements per block of gelu's float32 passes: a block's four temporaries (256 KiB each) stay in
#: a core's L2 cache, where the ~25 passes of the erf polynomial run about 2x faster than over
#: arrays that do not fit. Blocks never change a value: every pass is elementwise.
GELU_BLOCK = 1 << 16


def _gelu(x, a):
    if x.dtype == np.float32:
        # NOTE: Phi(x) = (1 + erf(x / sqrt 2)) / 2 with the float32 erf (as PyTorch's float32
        # gelu): absolute error of Phi about 2e-7; the relative accuracy of the far left tail
        # (Phi below ~1e-4) is float32 cancellation, as in PyTorch
        xf = np.ascontiguousarray(x).reshape(-1)
        y, cdf = np.empty_like(xf), np.empty_like(xf)
        k = np.float32(_INV_SQRT2)
        for s in range(0, xf.size, GELU_BLOCK):
            xb, cb = xf[s:s + GELU_BLOCK], cdf[s:s + GELU_BLOCK]
            np.multiply(erf_float32(xb * k), np.float32(0.5), out=cb)
            cb += np.float32(0.5)
            np.multiply(xb, cb, out=y[s:s + GELU_BLOCK])
        return y.reshape(x.shape), (x, cdf.reshape(x.shape))
    cdf = 0.5 * erfc(x * -_INV_SQRT2)      # Phi(x) = erfc(-x / sqrt 2) / 2: accurate for very negative x
    return x * cdf, (x, cdf)


def _gelu_grad(dy, saved):
    x, cdf = saved
    g = x * x
    g *= -0.5
    np.exp(g, out=g)
    g *= _INV_SQRT2PI
    g *= x
    g += cdf
    g *= dy
    return g


def _softplus(x, a):
    big = x > 20
    return np.where(big, x, np.log1p(np.exp(np.minimum(x, 20)))), (x, big)


def _silu(x, a):
    s = sigmoid(x)
    return x * s, (x, s)


def _relu6(x, a):
    return np.clip(x, 0, 6), (x > 0) & (x < 6)


def _hardsigmoid(x, a):
    return np.clip(x + 3, 0, 6) * (1 / 6), (x > -3) & (x < 3)


def _hardswish(x, a):
    y = np.add(x, 3)
    np.clip(y, 0, 6, out=y)
    y *= x
    y *= 1 / 6
    return y, x


def _hardswish_grad(dy, x):
    # NOTE: PyTorch's hardswish_backward: 0 for x <= -3, x / 3 + 1/2 for -3 < x < 3, 1 for x >= 3
    g = np.divide(x, 3)
    g += 0.5
    np.copyto(g, 0, where=x <= -3)
    np.copyto(g, 1, where=x >= 3)
    g *= dy
    return g


def _clip(x, a):
    lo, hi = float(a["min"]), float(a["max"])
    return np.clip(x, lo, hi), (x >= lo) & (x <= hi)


POINTWISE: dict[str, Pointwise] = {
    "relu": Pointwise(lambda x, a: (np.maximum(x, _zeros_like(x)), x > 0), lambda dy, pos: dy * pos,
                      "max(x, 0)"),
    "sigmoid": Pointwise(lambda x, a: (y := sigmoid(x), y), lambda dy, y: dy * y * (1 - y),
                         "1 / (1 + exp(-x)), stable for large |x|"),
    "tanh": Pointwise(lambda x, a: (y := np.tanh(x), y), lambda dy, y: dy * (1 - y * y), "tanh(x)"),
    "leaky_relu": Pointwise(_leaky_relu, lambda dy, s: np.where(s[0], dy, s[1] * dy), "x if x > 0 else alpha * x"),
    "elu": Pointwise(_elu, lambda dy, s: np.where(s[0], dy, dy * (s[1] + s[2])),
                     "x if x > 0 else alpha * (exp(x) - 1)"),
    "selu": Pointwise(_selu, lambda dy, s: dy * np.where(s[0], _SELU_SCALE, s[1] + _SELU_SCALE * _SELU_ALPHA),
                      "scale * elu(x, alpha), PyTorch's constants"),
    "gelu": Pointwise(_gelu, _gelu_grad, "x * Phi(x), the exact (erf) form"),
    "softplus": Pointwise(_softplus, lambda dy, s: np.where(s[1], dy, dy * sigmoid(s[0])),
                          "log(1 + exp(x)); x itself where x > 20 (PyTorch's beta=1, threshold=20)"),
    "silu": Pointwise(_silu, lambda dy, s: dy * s[1] * (1 + s[0] * (1 - s[1])), "x * sigmoid(x)"),
    # NOTE: Heaviside forward, straight-through backward (dx = dy): the perceptron rule
    "step": Pointwise(lambda x, a: ((x > 0).astype(x.dtype), None), lambda dy, _: dy, "1 where x > 0 else 0"),
    # NOTE: the gradients at the kinks are PyTorch's: relu6 and hardsigmoid (hardtanh_backward) pass
    # none at their bounds; clip (clamp_backward) passes it at both bounds, inclusive
    "relu6": Pointwise(_relu6, lambda dy, inside: dy * inside, "min(max(x, 0), 6)"),
    "hardsigmoid": Pointwise(_hardsigmoid, lambda dy, inside: dy * inside * (1 / 6), "min(max(x + 3, 0), 6) / 6"),
    "hardswish": Pointwise(_hardswish, _hardswish_grad, "x * min(max(x + 3, 0), 6) / 6"),
    "clip": Pointwise(_clip, lambda dy, inside: dy * inside, "min(max(x, min), max)"),
}


class PointwiseKernel(Kernel):
    """An entry of :data:`POINTWISE` as a kernel."""

    def __init__(self, name: str, fn: Pointwise):
        self.name, self.fn = name, fn
        self.__doc__ = f"{name}: y = {fn.doc}, elementwise; x: any shape."

    def forward(self, xs, w, a, ctx):
        return self.fn.forward(xs[0], a)

    def backward(self, dy, saved):
        return [self.fn.backward(dy, saved)], {}


for _name, _fn in POINTWISE.items():
    KERNELS[_name] = PointwiseKernel(_name, _fn)


@register("softmax")
class Softmax(Kernel):
    """Softmax along a["axis"] (per-example axis; NumPy axis + 1); x: (N, ...)."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        axis = _np_axis(a["axis"])
        # NOTE: one new array, every later pass in place (fresh arrays cost page faults)
        e = np.subtract(x, x.max(axis=axis, keepdims=True))
        np.exp(e, out=e)
        e /= e.sum(axis=axis, keepdims=True)
        return e, (e, axis)

    def backward(self, dy, cache):
        y, axis = cache
        if axis in (-1, y.ndim - 1):
            # the row dot products sum(dy * y) in one pass, without the (N, ..., K) product array
            s = np.einsum("...i,...i->...", dy, y)[..., None]
        else:
            s = np.sum(dy * y, axis=axis, keepdims=True)
        dx = np.subtract(dy, s)
        dx *= y
        return [dx], {}


@register("log_softmax")
class LogSoftmax(Kernel):
    """log(softmax(x)) along a["axis"], computed stably."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        axis = _np_axis(a["axis"])
        s = x - x.max(axis=axis, keepdims=True)
        y = s - np.log(np.exp(s).sum(axis=axis, keepdims=True))
        return y, (y, axis)

    def backward(self, dy, cache):
        y, axis = cache
        return [dy - np.exp(y) * dy.sum(axis=axis, keepdims=True)], {}
