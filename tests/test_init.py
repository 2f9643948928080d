"""Weight initialisers: shapes, dtypes, distributions, orthogonality, blocks, determinism."""
from __future__ import annotations

import math

import numpy as np
import pytest

from nnc.errors import NncError
from nnc import vocab
from nnc.runtime.init import DRAWS as INITIALIZERS, fans, initialize

ARGS = {"constant": {"v": 0.25}, "uniform": {"low": -0.05, "high": 0.05},
        "normal": {"mean": 1.0, "std": 0.5}}
SHAPES = [(4, 3), (6, 2, 3, 3), (8, 4, 5), (3, 7)]


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_table():
    assert list(INITIALIZERS) == ["zeros", "ones", "constant", "uniform", "normal",
                                  "glorot_uniform", "glorot_normal", "he_uniform", "he_normal",
                                  "lecun_normal", "orthogonal"]
    assert list(vocab.INITIALIZERS.signatures["uniform"].by_name) == ["low", "high"]


def test_fans_as_torch():
    assert fans((10, 4)) == (4, 10)
    assert fans((16, 3, 5, 5)) == (75, 400)
    assert fans((8, 2, 3)) == (6, 24)
    with pytest.raises(NncError):
        fans((5,))


@pytest.mark.parametrize("kind", list(INITIALIZERS))
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shape_dtype_and_determinism(kind, shape, dtype):
    a = initialize(kind, ARGS.get(kind, {}), shape, _rng(7), dtype)
    b = initialize(kind, ARGS.get(kind, {}), shape, _rng(7), dtype)
    assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous
    np.testing.assert_array_equal(a, b)
    assert np.all(np.isfinite(a))


def test_constants():
    assert np.all(initialize("zeros", {}, (3, 2), _rng(), np.float32) == 0)
    assert np.all(initialize("ones", {}, (5,), _rng(), np.float32) == 1)
    assert np.all(initialize("constant", {"v": -2.5}, (2, 2), _rng(), np.float64) == -2.5)


def test_different_generator_states_differ():
    a = initialize("glorot_uniform", {}, (10, 10), _rng(1), np.float64)
    b = initialize("glorot_uniform", {}, (10, 10), _rng(2), np.float64)
    assert not np.array_equal(a, b)


# empirical checks on large shapes: (fan_in, fan_out) = (400, 600) for (600, 400)
BIG = (600, 400)


def _limit_check(w, limit):
    assert np.abs(w).max() <= limit
    assert np.abs(w).max() > 0.99 * limit
    assert np.std(w) == pytest.approx(limit / math.sqrt(3), rel=0.02)
    assert abs(np.mean(w)) < 0.01 * limit


@pytest.mark.parametrize("kind,limit", [
    ("glorot_uniform", math.sqrt(6 / (400 + 600))),
    ("he_uniform", math.sqrt(6 / 400)),
])
def test_uniform_limits(kind, limit):
    _limit_check(initialize(kind, {}, BIG, _rng(), np.float64), limit)


def test_uniform_low_high():
    w = initialize("uniform", {"low": 1.0, "high": 3.0}, BIG, _rng(), np.float64)
    assert w.min() >= 1.0 and w.max() <= 3.0
    assert w.mean() == pytest.approx(2.0, abs=0.01)


@pytest.mark.parametrize("kind,std", [
    ("glorot_normal", math.sqrt(2 / (400 + 600))),
    ("he_normal", math.sqrt(2 / 400)),
    ("lecun_normal", math.sqrt(1 / 400)),
])
def test_normal_stds(kind, std):
    w = initialize(kind, {}, BIG, _rng(), np.float64)
    assert np.std(w) == pytest.approx(std, rel=0.02)
    assert abs(np.mean(w)) < 0.02 * std


def test_normal_mean_std():
    w = initialize("normal", {"mean": -1.0, "std": 0.1}, BIG, _rng(), np.float64)
    assert np.mean(w) == pytest.approx(-1.0, abs=0.001)
    assert np.std(w) == pytest.approx(0.1, rel=0.02)


def test_conv_fans_used():
    # (filters, C, kh, kw) = (64, 32, 3, 3): fan_in = 288, fan_out = 576
    w = initialize("he_normal", {}, (64, 32, 3, 3), _rng(), np.float64)
    assert np.std(w) == pytest.approx(math.sqrt(2 / 288), rel=0.03)
    w = initialize("glorot_uniform", {}, (64, 32, 3, 3), _rng(), np.float64)
    assert np.abs(w).max() <= math.sqrt(6 / (288 + 576))


@pytest.mark.parametrize("shape", [(5, 5), (3, 8), (8, 3), (4, 2, 3)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_orthogonal(shape, dtype):
    w = initialize("orthogonal", {}, shape, _rng(), dtype)
    flat = w.reshape(shape[0], -1).astype(np.float64)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    if flat.shape[0] <= flat.shape[1]:
        np.testing.assert_allclose(flat @ flat.T, np.eye(flat.shape[0]), atol=tol)
    else:
        np.testing.assert_allclose(flat.T @ flat, np.eye(flat.shape[1]), atol=tol)


def test_orthogonal_is_torch_construction():
    # torch: Q of the QR of a standard normal (rows, cols) matrix, columns scaled by sign(diag R)
    rng = _rng(5)
    a = rng.standard_normal((6, 4))
    q, r = np.linalg.qr(a)
    expected = q * np.sign(np.diag(r))
    np.testing.assert_array_equal(initialize("orthogonal", {}, (6, 4), _rng(5), np.float64), expected)


@pytest.mark.parametrize("blocks", [3, 4])
def test_orthogonal_blocks(blocks):
    units = 16
    w = initialize("orthogonal", {}, (blocks * units, units), _rng(), np.float64, blocks=blocks)
    assert w.shape == (blocks * units, units)
    for k in range(blocks):
        b = w[k * units:(k + 1) * units]
        np.testing.assert_allclose(b @ b.T, np.eye(units), atol=1e-12)
    # the whole stack is not orthogonal (it has more rows than columns), the blocks differ
    assert not np.allclose(w[:units], w[units:2 * units])


def test_blocks_are_drawn_in_order_from_the_generator():
    rng = _rng(9)
    expected = np.concatenate([initialize("glorot_uniform", {}, (4, 5), rng, np.float64)
                               for _ in range(3)])
    got = initialize("glorot_uniform", {}, (12, 5), _rng(9), np.float64, blocks=3)
    np.testing.assert_array_equal(got, expected)
    # fans come from the block's shape: limit sqrt(6 / (5 + 4))
    assert np.abs(got).max() <= math.sqrt(6 / 9)


@pytest.mark.parametrize("kind,args,shape", [
    ("constant", {}, (2, 2)), ("uniform", {"low": 1.0}, (2, 2)), ("uniform", {"low": 1, "high": 0}, (2, 2)),
    ("normal", {"mean": 0, "std": -1}, (2, 2)), ("glorot_uniform", {"gain": 2}, (2, 2)),
    ("glorot_uniform", {}, (5,)), ("orthogonal", {}, (5,)), ("he_normal", {}, (3, 0)),
    ("xavier", {}, (2, 2)), ("constant", {"v": "a"}, (2,)),
])
def test_bad_arguments_raise_e741(kind, args, shape):
    with pytest.raises(NncError) as info:
        initialize(kind, args, shape, _rng(), np.float32)
    assert info.value.diagnostics[0].code == "E741"
