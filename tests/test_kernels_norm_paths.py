"""The batchnorm and layernorm kernels against the textbook formulas, forward and backward.

batchnorm runs x as (N, C, L) with per-row einsum reductions (partial sums over N in float64), a
two-pass variance, the backward's reductions without product arrays, and eval as y = x k + c.
layernorm takes its row sums as einsum passes and the backward's row means without the BLAS. The
references here are the formulas written directly with NumPy's means over the axes, in float64.
"""
from __future__ import annotations

import numpy as np
import pytest

from nnc.runtime.kernels import KERNELS, Ctx


def bn_reference(x, w, eps, training, dy):
    """(y, dx, dweight, dbias, batch mean, biased batch var) of BatchNorm over axis 1, float64."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    if training:
        mean = x.mean(axis=axes)
        var = ((x - mean.reshape(shape)) ** 2).mean(axis=axes)
    else:
        mean, var = w["running_mean"], w["running_var"]
    inv = 1 / np.sqrt(var + eps)
    xhat = (x - mean.reshape(shape)) * inv.reshape(shape)
    y = xhat * w["weight"].reshape(shape) + w["bias"].reshape(shape)
    g = dy * w["weight"].reshape(shape)                       # d loss / d xhat
    if training:
        dx = inv.reshape(shape) * (g - g.mean(axis=axes, keepdims=True)
                                   - xhat * (g * xhat).mean(axis=axes, keepdims=True))
    else:
        dx = g * inv.reshape(shape)
    return y, dx, (dy * xhat).sum(axis=axes), dy.sum(axis=axes), mean, var


def bn_weights(c, rng, dtype=np.float64):
    return {"weight": rng.uniform(0.5, 1.5, c).astype(dtype), "bias": rng.standard_normal(c).astype(dtype),
            "running_mean": rng.standard_normal(c).astype(dtype), "running_var": rng.uniform(0.5, 2, c).astype(dtype)}


SHAPES = [(7, 3), (5, 4, 9), (3, 2, 5, 6), (1, 4), (1, 3, 1), (2, 3, 1, 1), (64, 5, 3, 3)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_matches_the_formulas_float64(shape, training):
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape) * 2 + 0.5
    dy = rng.standard_normal(shape)
    w = bn_weights(shape[1], rng)
    before = {k: w[k].copy() for k in ("running_mean", "running_var")}
    a = dict(momentum=0.9, eps=1e-5)
    k = KERNELS["batchnorm"]
    y, cache = k.forward([x], w, a, Ctx(training=training))
    (dx,), g = k.backward(dy, cache)
    ry, rdx, rdw, rdb, mean, var = bn_reference(x, before | {k_: w[k_] for k_ in ("weight", "bias")}, 1e-5,
                                                training, dy)
    np.testing.assert_allclose(y, ry, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, rdx, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g["weight"], rdw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g["bias"], rdb, rtol=1e-12, atol=1e-12)
    assert set(g) == {"weight", "bias"}
    if training:
        m = x.size // shape[1]
        unbiased = var * m / (m - 1) if m > 1 else var
        np.testing.assert_allclose(w["running_mean"], 0.9 * before["running_mean"] + 0.1 * mean, rtol=1e-13)
        np.testing.assert_allclose(w["running_var"], 0.9 * before["running_var"] + 0.1 * unbiased, rtol=1e-13)
    else:
        for name in before:
            np.testing.assert_array_equal(w[name], before[name])


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_float32_large_mean_stays_accurate(training):
    """float32 in, float32 out; a large mean does not cancel the variance (two-pass statistics)."""
    rng = np.random.default_rng(3)
    x = (1000 + rng.standard_normal((16, 4, 8, 8))).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    w = bn_weights(4, rng, np.float32)
    w["running_mean"][:] = 1000
    w64 = {k: v.astype(np.float64) for k, v in w.items()}
    k = KERNELS["batchnorm"]
    y, cache = k.forward([x], w, dict(momentum=0.9, eps=1e-5), Ctx(training=training))
    (dx,), g = k.backward(dy, cache)
    assert y.dtype == dx.dtype == g["weight"].dtype == g["bias"].dtype == np.float32
    ry, rdx, rdw, rdb, _, _ = bn_reference(x.astype(np.float64), w64, 1e-5, training, dy.astype(np.float64))
    # xhat = (x - mean) / std with x ~ 1000: float32 rounding of x itself (6e-5) bounds the error
    np.testing.assert_allclose(y, ry, rtol=0, atol=3e-4)
    np.testing.assert_allclose(dx, rdx, rtol=0, atol=5e-4)
    np.testing.assert_allclose(g["weight"], rdw, rtol=1e-4, atol=5e-3)
    np.testing.assert_allclose(g["bias"], rdb, rtol=1e-5, atol=1e-4)


def test_batchnorm_non_contiguous_input():
    rng = np.random.default_rng(4)
    base = rng.standard_normal((3, 6, 5, 4))
    x = base.transpose(0, 1, 3, 2)                            # (3, 6, 4, 5), not contiguous
    dy = rng.standard_normal(x.shape)
    w = bn_weights(6, rng)
    k = KERNELS["batchnorm"]
    y, cache = k.forward([x], dict(w), dict(momentum=0.9, eps=1e-5), Ctx(training=True))
    (dx,), g = k.backward(dy, cache)
    ry, rdx, rdw, rdb, _, _ = bn_reference(np.ascontiguousarray(x), w, 1e-5, True, dy)
    np.testing.assert_allclose(y, ry, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, rdx, rtol=1e-10, atol=1e-12)


def ln_reference(x, w, eps, dy):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    inv = 1 / np.sqrt(var + eps)
    xhat = (x - mean) * inv
    g = dy * w["weight"]
    dx = inv * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    axes = tuple(range(x.ndim - 1))
    return xhat * w["weight"] + w["bias"], dx, (dy * xhat).sum(axis=axes), dy.sum(axis=axes)


@pytest.mark.parametrize("shape", [(4, 6), (2, 3, 5), (3, 16, 128), (1, 1, 1), (2, 7, 1)])
def test_layernorm_matches_the_formulas_float64(shape):
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape) * 3 + 1
    dy = rng.standard_normal(shape)
    d = shape[-1]
    w = {"weight": rng.uniform(0.5, 1.5, d), "bias": rng.standard_normal(d)}
    k = KERNELS["layernorm"]
    y, cache = k.forward([x], w, dict(eps=1e-5), Ctx(training=True))
    (dx,), g = k.backward(dy, cache)
    ry, rdx, rdw, rdb = ln_reference(x, w, 1e-5, dy)
    np.testing.assert_allclose(y, ry, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, rdx, rtol=1e-10, atol=1e-11)
    np.testing.assert_allclose(g["weight"], rdw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g["bias"], rdb, rtol=1e-12, atol=1e-12)


def test_layernorm_float32_stays_float32_and_near_float64():
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((8, 32, 128)) * 2 + 5).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    w = {"weight": rng.uniform(0.5, 1.5, 128).astype(np.float32), "bias": rng.standard_normal(128).astype(np.float32)}
    k = KERNELS["layernorm"]
    y, cache = k.forward([x], w, dict(eps=1e-5), Ctx())
    (dx,), g = k.backward(dy, cache)
    assert y.dtype == dx.dtype == g["weight"].dtype == g["bias"].dtype == np.float32
    ry, rdx, rdw, rdb = ln_reference(x.astype(np.float64), {n: v.astype(np.float64) for n, v in w.items()}, 1e-5,
                                     dy.astype(np.float64))
    np.testing.assert_allclose(y, ry, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, rdx, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(g["weight"], rdw, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(g["bias"], rdb, rtol=1e-5, atol=1e-4)
