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


def _aligned(xs: list[np.ndarray]) -> list[np.ndarray]:
    """The inputs of a broadcasting merge at one rank: a lower-rank input gets size-1 axes right after
    the batch axis, so per-example axes align from the right and the batch axis never broadcasts."""
    rank = max(x.ndim for x in xs)
    return [x if x.ndim == rank else x.reshape(x.shape[:1] + (1,) * (rank - x.ndim) + x.shape[1:]) for x in xs]


def _unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """g: (N, *out) summed over the axes an input of ``shape`` (N, ...) was broadcast along."""
    if g.shape == shape:
        return g
    aligned = shape[:1] + (1,) * (g.ndim - len(shape)) + shape[1:]
    axes = tuple(i for i in range(1, g.ndim) if aligned[i] == 1 and g.shape[i] != 1)
    return (g.sum(axis=axes, keepdims=True) if axes else g).reshape(shape)


def _combine(y: np.ndarray, x: np.ndarray, ufunc) -> np.ndarray:
    """ufunc(y, x), in place when y (a fresh array) already has the broadcast shape."""
    if np.broadcast_shapes(y.shape, x.shape) == y.shape:
        return ufunc(y, x, out=y)
    return ufunc(y, x)


@register("add")
class Add(Kernel):
    """xs: n >= 2 arrays (N, ...) whose per-example shapes broadcast (NumPy's rule, aligned from the
    right; a lower-rank input gets leading size-1 axes) -> their sum (N, *broadcast shape).
    Backward: dy summed over each input's broadcast axes."""

    def forward(self, xs, w, a, ctx):
        al = _aligned(xs)
        y = al[0] + al[1]
        for x in al[2:]:
            y = _combine(y, x, np.add)
        return y, [x.shape for x in xs]

    def backward(self, dy, shapes):
        return [_unbroadcast(dy, s) for s in shapes], {}


@register("multiply")
class Multiply(Kernel):
    """xs: n >= 2 arrays (N, ...) whose per-example shapes broadcast (as ``add``) -> their elementwise
    product (N, *broadcast shape). Backward: dy times the other inputs, summed over broadcast axes."""

    def forward(self, xs, w, a, ctx):
        al = _aligned(xs)
        y = al[0] * al[1]
        for x in al[2:]:
            y = _combine(y, x, np.multiply)
        return y, (al, [x.shape for x in xs])

    def backward(self, dy, cache):
        al, shapes = cache
        grads = []
        for i in range(len(al)):
            g = dy
            for j, x in enumerate(al):
                if j != i:
                    g = g * x
            grads.append(_unbroadcast(g, shapes[i]))
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


class _Indexing(Kernel):
    """An op that takes ``x[key]`` along one per-example axis; its backward scatters dy back into
    zeros of x's shape. Subclasses say which ``key``."""

    def key(self, a: dict) -> tuple:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        key = (slice(None),) * (a["axis"] + 1) + (self.key(a),)
        return x[key], (x.shape, key)

    def backward(self, dy, cache):
        xshape, key = cache
        dx = np.zeros(xshape, dtype=dy.dtype)
        dx[key] = dy
        return [dx], {}


@register("select")
class Select(_Indexing):
    """x: (N, ..., d_axis, ...) -> (N, ..., ...): position a["index"] of per-example axis a["axis"]
    (both non-negative), the axis dropped. Any dtype."""

    def key(self, a):
        return a["index"]


@register("slice")
class Slice(_Indexing):
    """x: (N, ..., d_axis, ...) -> (N, ..., end - start, ...): positions [a["start"], a["end"]) of
    per-example axis a["axis"] (all resolved: non-negative, clamped, non-empty). Any dtype."""

    def key(self, a):
        return slice(a["start"], a["end"])
