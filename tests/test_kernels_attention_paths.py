"""The fast multihead_attention kernel against the general formulas, forward and backward.

The kernel folds 1/sqrt(d) into Q, keeps the softmax unnormalised (P = u * r with r = 1 / rowsum(u))
and applies r to the (Tq, d) products instead of the (Tq, Tk) probabilities, writes the heads
straight into the merged (N*T, E) layouts, and runs the per-head products on one BLAS thread. The
reference here is the textbook computation: explicit P = softmax(Q K^T / sqrt(d)), P (dP - rowsum(dP P))
for the softmax backward, heads split and merged by reshapes, in float64.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from nnc.runtime.kernels import KERNELS, Ctx


def reference(q, kv, w, a, keep=None, dy=None):
    """y (N, Tq, E) and, with dy, the gradients ([dq] or [dq, dkv], {weight: grad}), float64."""
    n, tq, e = q.shape
    tk = kv.shape[1]
    h, d = a["heads"], a["head_dim"]
    W = w["in_proj_weight"]
    b = w["in_proj_bias"] if a["bias"] else np.zeros(3 * e)
    Wo = w["out_proj.weight"]
    bo = w["out_proj.bias"] if a["bias"] else np.zeros(e)

    def split(z, t):
        return z.reshape(n, t, h, d).transpose(0, 2, 1, 3)

    def merge(z):
        return z.transpose(0, 2, 1, 3).reshape(-1, h * d)

    q2, kv2 = q.reshape(-1, e), kv.reshape(-1, e)
    Q, K, V = split(q2 @ W[:e].T + b[:e], tq), split(kv2 @ W[e:2 * e].T + b[e:2 * e], tk), \
        split(kv2 @ W[2 * e:].T + b[2 * e:], tk)
    s = Q @ K.transpose(0, 1, 3, 2) / math.sqrt(d)
    if a["causal"]:
        s = np.where(np.triu(np.ones((tq, tk), bool), 1), -np.inf, s)
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    p = p / p.sum(axis=-1, keepdims=True)
    pd = p if keep is None else p * keep
    o2 = merge(pd @ V)
    y = (o2 @ Wo.T + bo).reshape(n, tq, e)
    if dy is None:
        return y
    dy2 = dy.reshape(-1, e)
    g = {"out_proj.weight": dy2.T @ o2, "out_proj.bias": dy2.sum(axis=0)}
    do = split(dy2 @ Wo, tq)
    dV = pd.transpose(0, 1, 3, 2) @ do
    dpd = do @ V.transpose(0, 1, 3, 2)
    dp = dpd if keep is None else dpd * keep
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True)) / math.sqrt(d)
    dQ, dK = ds @ K, ds.transpose(0, 1, 3, 2) @ Q
    dq2, dk2, dv2 = merge(dQ), merge(dK), merge(dV)
    g["in_proj_weight"] = np.concatenate([dq2.T @ q2, dk2.T @ kv2, dv2.T @ kv2])
    g["in_proj_bias"] = np.concatenate([dq2.sum(0), dk2.sum(0), dv2.sum(0)])
    dq = dq2 @ W[:e]
    dkv = dk2 @ W[e:2 * e] + dv2 @ W[2 * e:]
    if not a["bias"]:
        del g["out_proj.bias"], g["in_proj_bias"]
    return y, g, dq.reshape(q.shape), dkv.reshape(kv.shape)


CASES = [  # n, tq, tk (None: self-attention), e, heads, causal, dropout, bias
    (2, 5, None, 8, 2, False, 0.0, True),
    (3, 7, None, 12, 3, True, 0.0, True),
    (2, 6, None, 8, 4, True, 0.3, False),
    (2, 4, 9, 6, 3, False, 0.0, True),
    (1, 6, 3, 8, 2, True, 0.0, False),      # causal cross-attention: Tq > Tk
    (2, 3, 5, 8, 1, False, 0.25, True),
    (4, 16, None, 32, 4, False, 0.1, True),
]


def _setup(n, tq, tk, e, heads, causal, dropout, bias, dtype, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n, tq, e))
    kv = rng.standard_normal((n, tk, e)) if tk else q
    w = {"in_proj_weight": rng.standard_normal((3 * e, e)) * 0.4, "out_proj.weight": rng.standard_normal((e, e)) * 0.4}
    if bias:
        w["in_proj_bias"] = rng.standard_normal(3 * e) * 0.4
        w["out_proj.bias"] = rng.standard_normal(e) * 0.4
    a = dict(heads=heads, head_dim=e // heads, causal=causal, dropout=dropout, bias=bias)
    dy = rng.standard_normal((n, tq, e))
    keep = None
    if dropout:
        keep = (np.random.default_rng(seed + 100).random((n, heads, tq, tk or tq)) >= dropout) / (1 - dropout)
    cast = {k: v.astype(dtype) for k, v in w.items()}
    xs = [q.astype(dtype)] + ([kv.astype(dtype)] if tk else [])
    return q, kv, w, a, dy, keep, xs, cast


@pytest.mark.parametrize("case", CASES)
def test_attention_forward_and_backward_match_the_reference_float64(case):
    q, kv, w, a, dy, keep, xs, wc = _setup(*case, np.float64)
    k = KERNELS["multihead_attention"]
    y, cache = k.forward(xs, wc, a, Ctx(training=True, rng=np.random.default_rng(100)))
    dxs, dws = k.backward(dy, cache)
    ry, rg, rdq, rdkv = reference(q, kv, w, a, keep, dy)
    np.testing.assert_allclose(y, ry, rtol=1e-12, atol=1e-12)
    if len(xs) == 1:
        np.testing.assert_allclose(dxs[0], rdq + rdkv, rtol=1e-11, atol=1e-11)
    else:
        np.testing.assert_allclose(dxs[0], rdq, rtol=1e-11, atol=1e-11)
        np.testing.assert_allclose(dxs[1], rdkv, rtol=1e-11, atol=1e-11)
    assert set(dws) == set(rg)
    for name, g in rg.items():
        np.testing.assert_allclose(dws[name], g, rtol=1e-11, atol=1e-11, err_msg=name)


@pytest.mark.parametrize("case", CASES)
def test_attention_float32_stays_float32_and_near_the_float64_reference(case):
    q, kv, w, a, dy, keep, xs, wc = _setup(*case, np.float32)
    k = KERNELS["multihead_attention"]
    y, cache = k.forward(xs, wc, a, Ctx(training=True, rng=np.random.default_rng(100)))
    dxs, dws = k.backward(dy.astype(np.float32), cache)
    assert y.dtype == np.float32 and all(d.dtype == np.float32 for d in dxs)
    assert all(g.dtype == np.float32 for g in dws.values())
    # the reference on the float32-rounded inputs
    q64, kv64 = (x.astype(np.float64) for x in (xs[0], xs[-1]))
    ry, rg, rdq, rdkv = reference(q64, kv64, {n: v.astype(np.float64) for n, v in wc.items()}, a, keep,
                                  dy.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(y, ry, rtol=2e-4, atol=2e-5)
    ref_dx = [rdq + rdkv] if len(xs) == 1 else [rdq, rdkv]
    for got, want in zip(dxs, ref_dx):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=5e-5)
    for name, g in rg.items():
        np.testing.assert_allclose(dws[name], g, rtol=2e-4, atol=5e-5, err_msg=name)


def test_attention_backward_leaves_its_cache_intact():
    """A second backward from the same cache gives the same gradients (the in-place passes work
    on fresh buffers, never on the cached ones), and the cache shares no memory with y."""
    q, kv, w, a, dy, keep, xs, wc = _setup(2, 5, None, 8, 2, True, 0.0, True, np.float64)
    k = KERNELS["multihead_attention"]
    y, cache = k.forward(xs, wc, a, Ctx())
    first = k.backward(dy, cache)
    y[...] = 1e6
    again = k.backward(dy, cache)
    np.testing.assert_array_equal(first[0][0], again[0][0])
    for name in first[1]:
        np.testing.assert_array_equal(first[1][name], again[1][name])


def test_attention_eval_is_deterministic_and_draws_nothing():
    q, kv, w, a, dy, keep, xs, wc = _setup(2, 6, None, 8, 2, False, 0.5, True, np.float32)
    k = KERNELS["multihead_attention"]
    gen = np.random.default_rng(3)
    state = gen.bit_generator.state
    y1, _ = k.forward(xs, wc, a, Ctx(training=False, rng=gen))
    y2, _ = k.forward(xs, wc, a, Ctx(training=False, rng=gen))
    assert gen.bit_generator.state == state
    np.testing.assert_array_equal(y1, y2)


# ----------------------------------------------------------------------------------------------
# the feed-forward's gelu: float32 runs its erf passes in blocks of GELU_BLOCK elements

@pytest.mark.parametrize("shape, transpose", [((3, 70001), False), ((2, 300, 257), True), ((5, 7), False)])
def test_gelu_float32_blocks_are_bitwise_the_whole_array_formula(shape, transpose):
    from nnc.runtime.kernels import activations
    from nnc.runtime.kernels.special import erf_float32
    rng = np.random.default_rng(6)
    x = (3 * rng.standard_normal(shape)).astype(np.float32)
    if transpose:
        x = x.transpose(0, 2, 1)                                   # not contiguous
    assert x.size <= activations.GELU_BLOCK or x.size % activations.GELU_BLOCK
    cdf = erf_float32(x * np.float32(1 / math.sqrt(2)))
    cdf *= np.float32(0.5)
    cdf += np.float32(0.5)
    k = KERNELS["gelu"]
    y, saved = k.forward([x], {}, {}, Ctx())
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_array_equal(y, x * cdf)
    np.testing.assert_array_equal(saved[1], cdf)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    (dx,), _ = k.backward(dy, saved)
    want = np.exp(-0.5 * x * x, dtype=np.float32) * np.float32(1 / math.sqrt(2 * math.pi)) * x + cdf
    np.testing.assert_allclose(dx, want * dy, rtol=1e-6, atol=1e-6)
