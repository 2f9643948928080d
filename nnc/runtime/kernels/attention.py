"""Attention and positional encodings: multihead_attention, positional_embedding, positional_encoding."""
from __future__ import annotations

import functools
import math

import numpy as np

from .base import Kernel, register


def _split_heads(z: np.ndarray, n: int, t: int, h: int, d: int) -> np.ndarray:
    """(N*T, H*d) -> (N, H, T, d)."""
    return z.reshape(n, t, h, d).transpose(0, 2, 1, 3)


def _merge_heads(z: np.ndarray) -> np.ndarray:
    """(N, H, T, d) -> (N*T, H*d)."""
    n, h, t, d = z.shape
    return z.transpose(0, 2, 1, 3).reshape(n * t, h * d)


@functools.lru_cache(maxsize=32)
def _future(tq: int, tk: int) -> np.ndarray:
    """(Tq, Tk) bool, True where j > i: the steps a causal query i may not attend to."""
    mask = np.triu(np.ones((tq, tk), dtype=bool), 1)
    mask.flags.writeable = False
    return mask


@register("multihead_attention")
class MultiheadAttention(Kernel):
    """torch.nn.MultiheadAttention(E, heads, batch_first=True); its output, not the weights.

    xs: [x] (N, T, E) for self-attention, or [q, kv] (N, Tq, E) and (N, Tk, E), kv used as both keys
    and values. Weights: in_proj_weight (3E, E) (query, key, value blocks of E rows), in_proj_bias
    (3E,), out_proj.weight (E, E), out_proj.bias (E,) (the biases when a["bias"]). H = a["heads"],
    d = a["head_dim"] = E / H.

        Q = q Wq^T + bq, K = kv Wk^T + bk, V = kv Wv^T + bv     each split into heads (N, H, T, d)
        P = softmax(Q K^T / sqrt(d)) over the keys              (N, H, Tq, Tk); causal: P[i, j > i] = 0
        P' = P * keep / (1 - dropout)                           training with dropout > 0 only
        y = merge_heads(P' V) Wo^T + bo                         (N, Tq, E)

    The softmax is fused and stable (max-shifted; causal scores are -inf before the exp). The
    dropout mask is ``ctx.rng.random(P.shape) >= dropout``, as nnc's dropout kernel draws it.
    """

    def forward(self, xs, w, a, ctx):
        xq, xkv = xs[0], xs[-1]
        n, tq, e = xq.shape
        tk = xkv.shape[1]
        h, d = a["heads"], a["head_dim"]
        W = w["in_proj_weight"]
        b = w["in_proj_bias"] if a["bias"] else None
        xq2, xkv2 = xq.reshape(-1, e), xkv.reshape(-1, e)        # (N*Tq, E), (N*Tk, E)
        if len(xs) == 1:
            qkv = xq2 @ W.T                                        # (N*T, 3E): one product for all three
            if b is not None:
                qkv += b
            q2, k2, v2 = qkv[:, :e], qkv[:, e:2 * e], qkv[:, 2 * e:]
        else:
            q2 = xq2 @ W[:e].T
            kv = xkv2 @ W[e:].T                                    # (N*Tk, 2E)
            if b is not None:
                q2 += b[:e]
                kv += b[e:]
            k2, v2 = kv[:, :e], kv[:, e:]
        Q, K, V = _split_heads(q2, n, tq, h, d), _split_heads(k2, n, tk, h, d), _split_heads(v2, n, tk, h, d)
        scale = 1 / math.sqrt(d)
        s = Q @ K.transpose(0, 1, 3, 2)                            # (N, H, Tq, Tk)
        s *= scale
        if a["causal"]:
            np.copyto(s, -np.inf, where=_future(tq, tk))          # a broadcast pass, not a boolean gather
        s -= s.max(axis=-1, keepdims=True)
        p = np.exp(s, out=s)
        p /= p.sum(axis=-1, keepdims=True)
        rate = float(a["dropout"])
        keep = None
        if ctx.training and rate > 0:
            keep = (ctx.rng.random(p.shape) >= rate).astype(p.dtype) * (1 / (1 - rate))   # scaled mask
        pd = p if keep is None else p * keep
        o2 = _merge_heads(pd @ V)                                  # (N*Tq, E)
        Wo = w["out_proj.weight"]
        y = o2 @ Wo.T
        if b is not None:
            y += w["out_proj.bias"]
        cache = (xq2, xkv2, xs[0].shape, xs[-1].shape, len(xs), Q, K, V, p, keep, o2, W, Wo, a["bias"], scale)
        return y.reshape(n, tq, e), cache

    def backward(self, dy, cache):
        xq2, xkv2, qshape, kvshape, n_in, Q, K, V, p, keep, o2, W, Wo, has_bias, scale = cache
        n, h, tq, d = Q.shape
        e = h * d
        dy2 = dy.reshape(-1, e)
        grads = {"out_proj.weight": dy2.T @ o2}
        if has_bias:
            grads["out_proj.bias"] = dy2.sum(axis=0)
        do = _split_heads(dy2 @ Wo, n, tq, h, d)                   # (N, H, Tq, d)
        pd = p if keep is None else p * keep
        dV = pd.transpose(0, 1, 3, 2) @ do                         # (N, H, Tk, d)
        dp = do @ V.transpose(0, 1, 3, 2)                          # (N, H, Tq, Tk)
        if keep is not None:
            dp *= keep
        # softmax backward, 0 where masked: p (dp - sum(dp p)), the row sums as one einsum pass
        ds = np.subtract(dp, np.einsum("...i,...i->...", dp, p)[..., None], out=dp)
        ds *= p
        ds *= scale
        dq2 = _merge_heads(ds @ K)                                 # (N*Tq, E)
        dk2 = _merge_heads(ds.transpose(0, 1, 3, 2) @ Q)           # (N*Tk, E)
        dv2 = _merge_heads(dV)
        if n_in == 1:
            dqkv = np.concatenate([dq2, dk2, dv2], axis=1)         # (N*T, 3E)
            grads["in_proj_weight"] = dqkv.T @ xq2
            if has_bias:
                grads["in_proj_bias"] = dqkv.sum(axis=0)
            return [(dqkv @ W).reshape(qshape)], grads
        dkv = np.concatenate([dk2, dv2], axis=1)                   # (N*Tk, 2E)
        grads["in_proj_weight"] = np.concatenate([dq2.T @ xq2, dkv.T @ xkv2], axis=0)
        if has_bias:
            grads["in_proj_bias"] = np.concatenate([dq2.sum(axis=0), dkv.sum(axis=0)])
        return [(dq2 @ W[:e]).reshape(qshape), (dkv @ W[e:]).reshape(kvshape)], grads


@register("positional_embedding")
class PositionalEmbedding(Kernel):
    """y = x + weight. x: (N, T, E); weight: (T, E) trainable."""

    def forward(self, xs, w, a, ctx):
        return xs[0] + w["weight"], None

    def backward(self, dy, cache):
        return [dy], {"weight": dy.sum(axis=0)}


@functools.lru_cache(maxsize=32)
def sinusoids(t: int, e: int, dtype: str) -> np.ndarray:
    """(T, E) read-only: PE[t, 2i] = sin(t / 10000^(2i/E)), PE[t, 2i+1] = cos(t / 10000^(2i/E)),
    computed in float64. An odd E ends with a sine column (2i = E - 1) that has no cosine partner."""
    j = np.arange(e)
    angle = np.arange(t)[:, None] * 10000.0 ** (-(j - j % 2) / e)
    pe = np.where(j % 2 == 0, np.sin(angle), np.cos(angle)).astype(dtype)
    pe.flags.writeable = False
    return pe


@register("positional_encoding")
class PositionalEncoding(Kernel):
    """y = x + PE, the fixed sinusoids of "Attention Is All You Need" (:func:`sinusoids`).
    x: (N, T, E)."""

    def forward(self, xs, w, a, ctx):
        x = xs[0]
        return x + sinusoids(x.shape[1], x.shape[2], x.dtype.str), None

    def backward(self, dy, cache):
        return [dy], {}
