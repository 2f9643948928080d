"""Shape ops and merges: flatten, reshape, identity, transpose, select, slice, concat, add, multiply."""
from __future__ import annotations

import numpy as np

from .base import Kernel, _np_axis, register


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


@register("transpose")
class Transpose(Kernel):
    """x: (N, d_0, ..., d_{r-1}) -> (N, d_perm[0], ...): a["perm"] permutes the per-example axes
    (non-negative); the batch axis stays first. Any dtype (token ids pass through)."""

    def forward(self, xs, w, a, ctx):
        axes = (0, *(p + 1 for p in a["perm"]))
        return xs[0].transpose(axes), axes

    def backward(self, dy, axes):
        return [dy.transpose(np.argsort(axes))], {}


@register("select")
class Select(Kernel):
    """x: (N, ..., d_axis, ...) -> (N, ..., ...): position a["index"] of per-example axis a["axis"]
    (both non-negative), the axis dropped. Any dtype."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        key = (slice(None),) * (a["axis"] + 1) + (a["index"],)
        return x[key], (x.shape, key)

    def backward(self, dy, cache):
        xshape, key = cache
        dx = np.zeros(xshape, dtype=dy.dtype)
        dx[key] = dy
        return [dx], {}


@register("slice")
class Slice(Kernel):
    """x: (N, ..., d_axis, ...) -> (N, ..., end - start, ...): positions [a["start"], a["end"]) of
    per-example axis a["axis"] (all resolved: non-negative, clamped, non-empty). Any dtype."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        key = (slice(None),) * (a["axis"] + 1) + (slice(a["start"], a["end"]),)
        return x[key], (x.shape, key)

    def backward(self, dy, cache):
        xshape, key = cache
        dx = np.zeros(xshape, dtype=dy.dtype)
        dx[key] = dy
        return [dx], {}
