"""Activations: elementwise unless noted (softmax and log_softmax work along an axis)."""
from __future__ import annotations

import math

import numpy as np

from .base import Kernel, _np_axis, register
from .special import erfc, sigmoid


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
        axis = _np_axis(a["axis"])
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
        axis = _np_axis(a["axis"])
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
        alpha = float(a["alpha"])
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
        alpha = float(a["alpha"])
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
