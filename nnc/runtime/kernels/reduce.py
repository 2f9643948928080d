"""Reductions over one per-example axis, which is dropped: mean, max, sum."""
from __future__ import annotations

import numpy as np

from .base import Kernel, register


@register("sum")
class Sum(Kernel):
    """x: (N, ..., d_axis, ...) -> (N, ..., ...), the sum over per-example axis a["axis"]
    (non-negative; NumPy axis a["axis"] + 1)."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        axis = a["axis"] + 1
        return x.sum(axis=axis), (x.shape, axis)

    def backward(self, dy, cache):
        xshape, axis = cache
        dx = np.empty(xshape, dtype=dy.dtype)
        dx[...] = np.expand_dims(dy, axis)
        return [dx], {}


@register("mean")
class Mean(Kernel):
    """x: (N, ..., d_axis, ...) -> (N, ..., ...), the mean over per-example axis a["axis"]."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        axis = a["axis"] + 1
        return x.mean(axis=axis), (x.shape, axis)

    def backward(self, dy, cache):
        xshape, axis = cache
        dx = np.empty(xshape, dtype=dy.dtype)
        dx[...] = np.expand_dims(dy, axis) * (1 / xshape[axis])
        return [dx], {}


@register("max")
class Max(Kernel):
    """x: (N, ..., d_axis, ...) -> (N, ..., ...), the maximum over per-example axis a["axis"]; the
    gradient goes to the first maximum along the axis (as maxpool's and ``torch.max(x, dim)``'s)."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        axis = a["axis"] + 1
        idx = np.expand_dims(x.argmax(axis=axis), axis)     # argmax: the first maximum
        return np.take_along_axis(x, idx, axis=axis).squeeze(axis), (x.shape, axis, idx)

    def backward(self, dy, cache):
        xshape, axis, idx = cache
        dx = np.zeros(xshape, dtype=dy.dtype)
        np.put_along_axis(dx, idx, np.expand_dims(dy, axis), axis=axis)
        return [dx], {}
