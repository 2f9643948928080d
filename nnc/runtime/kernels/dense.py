"""The dense layer."""
from __future__ import annotations

from .base import Kernel, register


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
        has_bias = a["bias"]
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

    def weight_backward(self, dy, cache):
        x2, _, weight, has_bias = cache
        dy2 = dy.reshape(-1, weight.shape[0])
        grads = {"weight": dy2.T @ x2}
        if has_bias:
            grads["bias"] = dy2.sum(axis=0)
        return grads
