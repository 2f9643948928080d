"""Attention and positional encodings: multihead_attention, positional_embedding, positional_encoding."""
from __future__ import annotations

import functools
import math

import numpy as np

from .base import Kernel, register
from .blas import small_products


def _split_heads(z: np.ndarray, n: int, t: int, h: int, d: int) -> np.ndarray:
    """(N*T, H*d) -> (N, H, T, d), a view (written through when z is an output buffer)."""
    return z.reshape(n, t, h, d).transpose(0, 2, 1, 3)


def _stack_heads(z: np.ndarray, n: int, t: int, k: int, h: int, d: int) -> np.ndarray:
    """(N*T, k*H*d), k projections side by side -> (k, N, H, T, d), a contiguous copy."""
    return np.ascontiguousarray(z.reshape(n, t, k, h, d).transpose(2, 0, 3, 1, 4))


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

    How it runs (tests/test_kernels_attention_paths.py checks it against the formulas above):
    the projection takes weights (and bias) whose query rows are scaled by 1/sqrt(d), so it yields
    Q / sqrt(d); Q, K and V are copied once into contiguous (N, H, T, d) stacks, read by five
    products; the softmax stays unnormalised, u = exp(s - max s) with r = 1 / rowsum(u), and r
    scales the (Tq, d) products u V instead of the (Tq, Tk) probabilities; the products write the
    merged (N*T, E) layouts directly (``out=`` views), so no head is merged by a copy; the
    per-head products run on one BLAS thread (:func:`~nnc.runtime.kernels.blas.small_products`:
    OpenBLAS hands each 128 x 128 x 32 product to both threads, which costs several times the
    arithmetic when the other core is busy). The cache holds Q, K, V, u, r, the mask and the
    merged heads.
    """

    def forward(self, xs, w, a, ctx):
        xq, xkv = xs[0], xs[-1]
        n, tq, e = xq.shape
        tk = xkv.shape[1]
        h, d = a["heads"], a["head_dim"]
        W = w["in_proj_weight"]
        b = w["in_proj_bias"] if a["bias"] else None
        scale = 1 / math.sqrt(d)
        # NOTE: the scaling folded into the query rows of the weights (a copy of the (3E, E)
        # weights and an (E, E) pass), so the projection yields Q / sqrt(d) and the backward
        # needs no pass to scale dQ
        Ws = W.copy()
        Ws[:e] *= scale
        bs = None
        if b is not None:
            bs = b.copy()
            bs[:e] *= scale
        xq2, xkv2 = xq.reshape(-1, e), xkv.reshape(-1, e)        # (N*Tq, E), (N*Tk, E)
        # heads copied once into contiguous (N, H, T, d) stacks: the five products of the forward
        # and backward then read contiguous matrices (a bias pass over the 2-D projection and a
        # copy measured faster than one broadcast add into the 5-D transposed layout)
        if len(xs) == 1:
            qkv = xq2 @ Ws.T                                       # (N*T, 3E): one product for all three
            if bs is not None:
                qkv += bs
            Q, K, V = _stack_heads(qkv, n, tq, 3, h, d)             # (3, N, H, T, d)
        else:
            q2 = xq2 @ Ws[:e].T
            kv2 = xkv2 @ Ws[e:].T                                  # (N*Tk, 2E)
            if bs is not None:
                q2 += bs[:e]
                kv2 += bs[e:]
            Q = np.ascontiguousarray(_split_heads(q2, n, tq, h, d))
            K, V = _stack_heads(kv2, n, tk, 2, h, d)                # (2, N, H, Tk, d)
        with small_products(tq * tk * d):
            s = Q @ K.transpose(0, 1, 3, 2)                        # (N, H, Tq, Tk), already scaled
            if a["causal"]:
                np.copyto(s, -np.inf, where=_future(tq, tk))      # a broadcast pass, not a boolean gather
            s -= s.max(axis=-1, keepdims=True)
            u = np.exp(s, out=s)                                   # unnormalised: P = u * r
            r = np.einsum("...i->...", u)[..., None]                # row sums (3x faster than u.sum(-1))
            np.divide(1, r, out=r)                                 # (N, H, Tq, 1)
            rate = float(a["dropout"])
            keep = None
            if ctx.training and rate > 0:
                keep = (ctx.rng.random(u.shape) >= rate).astype(u.dtype) * (1 / (1 - rate))   # scaled mask
            ud = u if keep is None else u * keep
            o2 = np.empty((n * tq, e), dtype=u.dtype)              # merged heads (N*Tq, E), written by the BLAS
            o = _split_heads(o2, n, tq, h, d)
            np.matmul(ud, V, out=o)
            o *= r                                                 # the normalisation on (Tq, d), not (Tq, Tk)
        Wo = w["out_proj.weight"]
        y = o2 @ Wo.T
        if b is not None:
            y += w["out_proj.bias"]
        cache = (xq2, xkv2, xs[0].shape, xs[-1].shape, len(xs), Q, K, V, u, ud, r, keep, o2, Ws, Wo, a["bias"], scale)
        return y.reshape(n, tq, e), cache

    def backward(self, dy, cache):
        xq2, xkv2, qshape, kvshape, n_in, Q, K, V, u, ud, r, keep, o2, Ws, Wo, has_bias, scale = cache
        n, h, tq, d = Q.shape
        tk = K.shape[2]
        e = h * d
        dy2 = dy.reshape(-1, e)
        grads = {"out_proj.weight": dy2.T @ o2}
        if has_bias:
            grads["out_proj.bias"] = dy2.sum(axis=0)
        # with P = u r: dV = P^T do = u^T (r do), and dP' = (r do) V^T = r dP, so the softmax backward
        # P (dP - rowsum(dP P)) is u (dP' - r rowsum(dP' u)): no (Tq, Tk) pass for the normalisation
        dor = np.multiply(_split_heads(dy2 @ Wo, n, tq, h, d), r, order="C")   # (N, H, Tq, d): r do
        if n_in == 1:                                              # dq and dkv: blocks of one (N*T, 3E)
            dqkv = np.empty((n * tq, 3 * e), dtype=dor.dtype)
            dq2, dkv = dqkv[:, :e], dqkv[:, e:]
        else:
            dq2 = np.empty((n * tq, e), dtype=dor.dtype)
            dkv = np.empty((n * tk, 2 * e), dtype=dor.dtype)
        dkv5 = dkv.reshape(n, tk, 2, h, d)
        with small_products(tq * tk * d):
            np.matmul(ud.transpose(0, 1, 3, 2), dor, out=dkv5[:, :, 1].transpose(0, 2, 1, 3))   # dV
            dp = dor @ V.transpose(0, 1, 3, 2)                     # (N, H, Tq, Tk): r dP
            if keep is not None:
                dp *= keep
            c = np.einsum("...i,...i->...", dp, u)[..., None]      # the row sums in one pass
            c *= r
            ds = np.subtract(dp, c, out=dp)
            ds *= u                                                # d loss / d scores
            np.matmul(ds.transpose(0, 1, 3, 2), Q, out=dkv5[:, :, 0].transpose(0, 2, 1, 3))     # dK
            np.matmul(ds, K, out=_split_heads(dq2, n, tq, h, d))  # d loss / d (Q / sqrt d)
        # the query block of dqkv is the gradient of the scaled projection x Ws_q^T + bs_q: the
        # weight and bias gradients take the scale on their (E, E) and (E,) blocks
        if n_in == 1:
            dW = dqkv.T @ xq2
            dW[:e] *= scale
            grads["in_proj_weight"] = dW
            if has_bias:
                db = dqkv.sum(axis=0)
                db[:e] *= scale
                grads["in_proj_bias"] = db
            return [(dqkv @ Ws).reshape(qshape)], grads
        dWq = dq2.T @ xq2
        dWq *= scale
        grads["in_proj_weight"] = np.concatenate([dWq, dkv.T @ xkv2], axis=0)
        if has_bias:
            dbq = dq2.sum(axis=0)
            dbq *= scale
            grads["in_proj_bias"] = np.concatenate([dbq, dkv.sum(axis=0)])
        return [(dq2 @ Ws[:e]).reshape(qshape), (dkv @ Ws[e:]).reshape(kvshape)], grads


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
