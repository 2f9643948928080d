"""Shape ops and merges: flatten, reshape, identity, concat, add, multiply."""
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
