"""Losses (values, gradients, stability, target validation) and metrics."""
from __future__ import annotations

import math

import numpy as np
import pytest

from nnc.errors import NncError
from nnc import vocab
from nnc.runtime.losses import LOSSES, loss_and_grad, validate_targets
from nnc.runtime.metrics import METRICS, default_metrics, metric


def _softmax(row):
    e = [math.exp(v - max(row)) for v in row]
    return [v / sum(e) for v in e]


# ----------------------------------------------------------------------------------------------
# values on hand examples, against the formulas written out with plain Python floats

def test_mse_value():
    z = np.array([[1.0, 2.0], [3.0, -1.0]])
    y = np.array([[0.0, 2.5], [3.0, 1.0]])
    loss, _ = loss_and_grad("mse", {}, z, y)
    assert loss == pytest.approx((1.0 + 0.25 + 0.0 + 4.0) / 4)


def test_mae_value_and_zero_gradient_at_zero():
    z = np.array([[1.0, 2.0], [3.0, -1.0]])
    y = np.array([[0.0, 2.5], [3.0, 1.0]])
    loss, grad = loss_and_grad("mae", {}, z, y)
    assert loss == pytest.approx((1.0 + 0.5 + 0.0 + 2.0) / 4)
    np.testing.assert_allclose(grad, [[0.25, -0.25], [0.0, -0.25]])


@pytest.mark.parametrize("delta", [1.0, 0.5, 2.0])
def test_huber_value_both_regions(delta):
    z = np.array([0.1, -0.3, 1.7, -4.0, 0.0])
    y = np.array([0.0, 0.0, 0.0, 0.0, 0.0])

    def h(d):
        return 0.5 * d * d if abs(d) < delta else delta * (abs(d) - 0.5 * delta)

    loss, grad = loss_and_grad("huber", {"delta": delta}, z, y)
    assert loss == pytest.approx(sum(h(d) for d in z) / 5)
    expected = [max(-delta, min(delta, d)) / 5 for d in z]
    np.testing.assert_allclose(grad, expected)


def test_huber_default_delta_is_one():
    z = np.array([3.0])
    assert loss_and_grad("huber", {}, z, np.zeros(1))[0] == pytest.approx(2.5)


def test_cross_entropy_ids_value():
    z = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, -1.0]])
    y = np.array([0, 2])
    loss, grad = loss_and_grad("cross_entropy", {}, z, y)
    p0, p1 = _softmax(z[0]), _softmax(z[1])
    assert loss == pytest.approx((-math.log(p0[0]) - math.log(p1[2])) / 2)
    expected = [[(p0[c] - (c == 0)) / 2 for c in range(3)],
                [(p1[c] - (c == 2)) / 2 for c in range(3)]]
    np.testing.assert_allclose(grad, expected, rtol=1e-12)


def test_cross_entropy_label_smoothing_value():
    # torch: loss = (1 - eps) * nll + eps / C * sum_c(-log p_c)
    eps = 0.2
    z = np.array([[2.0, 1.0, 0.1, -0.5]])
    y = np.array([1])
    p = _softmax(z[0])
    expected = (1 - eps) * -math.log(p[1]) + eps / 4 * sum(-math.log(v) for v in p)
    loss, grad = loss_and_grad("cross_entropy", {"label_smoothing": eps}, z, y)
    assert loss == pytest.approx(expected)
    target = [eps / 4 + (1 - eps) * (c == 1) for c in range(4)]
    np.testing.assert_allclose(grad[0], [p[c] - target[c] for c in range(4)], rtol=1e-12)


def test_cross_entropy_probability_targets_with_smoothing():
    eps = 0.1
    z = np.array([[0.3, -1.2, 2.0]])
    t = np.array([[0.2, 0.0, 0.8]])
    p = _softmax(z[0])
    smoothed = [v * (1 - eps) + eps / 3 for v in t[0]]
    expected = -sum(s * math.log(q) for s, q in zip(smoothed, p))
    loss, _ = loss_and_grad("cross_entropy", {"label_smoothing": eps}, z, t)
    assert loss == pytest.approx(expected)


def test_cross_entropy_rank3_means_over_positions():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2, 3, 4))
    y = rng.integers(0, 4, size=(2, 3))
    total = 0.0
    for i in range(2):
        for j in range(3):
            total += -math.log(_softmax(z[i, j])[y[i, j]])
    assert loss_and_grad("cross_entropy", {}, z, y)[0] == pytest.approx(total / 6)


def test_cross_entropy_float_ids_accepted():
    z = np.array([[2.0, 1.0], [0.0, 3.0]])
    a = loss_and_grad("cross_entropy", {}, z, np.array([1, 0]))
    b = loss_and_grad("cross_entropy", {}, z, np.array([1.0, 0.0]))
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])


def test_binary_cross_entropy_value():
    z = np.array([[0.5], [-1.5], [3.0]])
    y = np.array([[1.0], [0.0], [0.25]])

    def sig(v):
        return 1 / (1 + math.exp(-v))

    expected = sum(-(t * math.log(sig(v)) + (1 - t) * math.log(1 - sig(v)))
                   for v, t in zip(z[:, 0], y[:, 0])) / 3
    loss, grad = loss_and_grad("binary_cross_entropy", {}, z, y)
    assert loss == pytest.approx(expected)
    np.testing.assert_allclose(grad[:, 0], [(sig(v) - t) / 3 for v, t in zip(z[:, 0], y[:, 0])])


def test_single_unit_target_without_unit_axis():
    z = np.array([[0.5], [-1.5], [3.0]])
    for kind in ("mse", "mae", "huber", "binary_cross_entropy"):
        a = loss_and_grad(kind, {}, z, np.array([[1.0], [0.0], [1.0]]))
        b = loss_and_grad(kind, {}, z, np.array([1.0, 0.0, 1.0]))
        assert a[0] == b[0], kind
        np.testing.assert_array_equal(a[1], b[1])
        assert b[1].shape == z.shape


# ----------------------------------------------------------------------------------------------
# gradients: float64 central differences

def _numeric_grad(f, z, eps=1e-6):
    g = np.zeros_like(z)
    for i in np.ndindex(z.shape):
        old = z[i]
        z[i] = old + eps
        up = f(z)
        z[i] = old - eps
        down = f(z)
        z[i] = old
        g[i] = (up - down) / (2 * eps)
    return g


def _cases():
    rng = np.random.default_rng(1)
    # keep |z - y| away from the kinks of mae (0) and huber (delta)
    z = rng.normal(size=(4, 3))
    y = z + rng.choice([-1, 1], size=z.shape) * rng.uniform(0.2, 0.8, size=z.shape)
    y_far = z + rng.choice([-1, 1], size=z.shape) * rng.uniform(1.2, 2.0, size=z.shape)
    probs = rng.dirichlet(np.ones(5), size=(3, 2))
    yield "mse", {}, z, y
    yield "mae", {}, z, y
    yield "huber", {}, z, y
    yield "huber", {}, z, y_far
    yield "huber", {"delta": 0.5}, z, np.concatenate([y[:2], y_far[2:]])
    for ls in (0.0, 0.15):
        yield "cross_entropy", {"label_smoothing": ls}, rng.normal(size=(5, 4)), rng.integers(0, 4, 5)
        yield "cross_entropy", {"label_smoothing": ls}, rng.normal(size=(3, 2, 5)), probs
        yield "cross_entropy", {"label_smoothing": ls}, rng.normal(size=(2, 3, 4)), \
            rng.integers(0, 4, (2, 3))
    # probability targets that do not sum to one: gradient is p * sum(t) - t
    yield "cross_entropy", {}, rng.normal(size=(3, 4)), rng.uniform(0, 1, (3, 4))
    yield "binary_cross_entropy", {}, rng.normal(size=(6, 2)) * 3, rng.uniform(0, 1, (6, 2))
    yield "binary_cross_entropy", {}, rng.normal(size=(5, 1)), rng.integers(0, 2, (5, 1)).astype(float)


@pytest.mark.parametrize("kind,params,z,y", list(_cases()))
def test_gradient_matches_central_differences(kind, params, z, y):
    loss, grad = loss_and_grad(kind, params, z, y)
    assert grad.shape == z.shape and grad.dtype == z.dtype
    numeric = _numeric_grad(lambda zz: loss_and_grad(kind, params, zz, y)[0], z.copy())
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9,
                               err_msg=f"backward of {kind} {params}")


# ----------------------------------------------------------------------------------------------
# stability, dtype

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_stable_for_huge_logits(dtype):
    z = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 999.0]], dtype=dtype)
    for y in (np.array([1, 0]), np.array([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5]])):
        for ls in (0.0, 0.1):
            loss, grad = loss_and_grad("cross_entropy", {"label_smoothing": ls}, z, y)
            assert math.isfinite(loss) and np.all(np.isfinite(grad))
            assert grad.dtype == dtype
    loss, _ = loss_and_grad("cross_entropy", {}, z, np.array([1, 0]))
    # row 0: 1000 - (-1000); row 1: 1000 + log(1 + e^-1) - (-1000)
    assert loss == pytest.approx((4000.0 + math.log1p(math.exp(-1.0))) / 2, rel=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_cross_entropy_stable_for_huge_logits(dtype):
    z = np.array([[1000.0], [-1000.0], [1000.0], [-1000.0]], dtype=dtype)
    y = np.array([[1.0], [0.0], [0.0], [1.0]])
    loss, grad = loss_and_grad("binary_cross_entropy", {}, z, y)
    assert math.isfinite(loss) and np.all(np.isfinite(grad)) and grad.dtype == dtype
    assert loss == pytest.approx(500.0)  # two right (0), two wrong (1000 each), mean of 4
    np.testing.assert_allclose(grad[:, 0], [0, 0, 0.25, -0.25], atol=1e-7)


@pytest.mark.parametrize("kind", LOSSES)
def test_float32_stays_float32(kind):
    z = np.random.default_rng(2).normal(size=(4, 3)).astype(np.float32)
    y = np.array([0, 1, 2, 1]) if kind == "cross_entropy" else np.full((4, 3), 0.5)
    _, grad = loss_and_grad(kind, {}, z, y)
    assert grad.dtype == np.float32


def test_inputs_not_modified():
    z = np.array([[1.0, 2.0, 3.0]])
    y = np.array([[0.2, 0.3, 0.5]])
    for kind in LOSSES:
        z0, y0 = z.copy(), y.copy()
        loss_and_grad(kind, {}, z, y)
        np.testing.assert_array_equal(z, z0)
        np.testing.assert_array_equal(y, y0)


# ----------------------------------------------------------------------------------------------
# target validation (E740) and bad parameters (E741)

BAD_TARGETS = [
    ("cross_entropy", (4, 10), np.array([1, 12, 3, 0]), "label 12 is out of range for an output of 10 classes"),
    ("cross_entropy", (4, 10), np.array([1, -1, 3, 0]), "label -1 is negative"),
    ("cross_entropy", (2, 3), np.array([1.5, 0.0]), "class id 1.5 is not a whole number"),
    ("cross_entropy", (2, 3), np.array([[1], [0]]), "targets of shape [1] per example do not fit"),
    ("cross_entropy", (2, 3), np.array([[0.5, 0.5], [1.0, 0.0]]), "do not fit an output of shape [3]"),
    ("cross_entropy", (2, 3), np.array([[1.5, -0.5, 0.0], [1.0, 0.0, 0.0]]), "outside [0, 1]"),
    ("cross_entropy", (3, 3), np.array([0, 1]), "there are 2 targets for 3 examples"),
    ("mse", (2, 1), np.array([[1.0, 2.0], [0.0, 1.0]]), "do not match the output's shape [1]"),
    ("mse", (2, 2), np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN or infinity"),
    ("binary_cross_entropy", (2, 1), np.array([[2.0], [0.0]]), "target 2 is outside [0, 1]"),
    ("mae", (2, 3), np.array(["a", "b"]), "must be numbers"),
]


@pytest.mark.parametrize("kind,shape,y,message", BAD_TARGETS)
def test_bad_targets_raise_e740(kind, shape, y, message):
    with pytest.raises(NncError) as info:
        validate_targets(kind, shape, y)
    d = info.value.diagnostics[0]
    assert d.code == "E740"
    assert message in d.message
    # the loss itself checks too
    if y.dtype.kind in "f" or y.dtype.kind in "iu":
        z = np.zeros(shape)
        with pytest.raises(NncError):
            loss_and_grad(kind, {}, z, y)


def test_validate_targets_any_batch_size():
    validate_targets("cross_entropy", (None, 10), np.array([1, 2, 3]))
    validate_targets("mse", (None, 1), np.zeros(7))


@pytest.mark.parametrize("kind,params", [
    ("huber", {"delta": 0}), ("huber", {"delta": -1.0}), ("cross_entropy", {"label_smoothing": 1.5}),
    ("mse", {"delta": 1.0}), ("hinge", {}),
])
def test_bad_loss_params_raise_e741(kind, params):
    with pytest.raises(NncError) as info:
        loss_and_grad(kind, params, np.zeros((1, 2)), np.zeros((1, 2)))
    assert info.value.diagnostics[0].code == "E741"


def test_loss_tables_agree():
    LOSS_PARAMS = vocab.LOSSES.defaults()
    assert tuple(LOSS_PARAMS) == LOSSES


# ----------------------------------------------------------------------------------------------
# metrics

def test_metric_names():
    assert METRICS == ("accuracy", "mae", "mse", "precision", "recall", "f1", "auc", "r2")
    assert default_metrics("cross_entropy") == ["accuracy"]
    assert default_metrics("mse") == ["mae"]


def test_accuracy_multiclass_ids_and_probabilities():
    out = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [0.4, 0.4, 0.2]])
    ids = np.array([0, 2, 0, 1])  # argmax 0, 2, 1, 0 (first max) -> 2 of 4 right
    assert metric("accuracy", out, ids, "cross_entropy") == 0.5
    onehot = np.eye(3)[ids]
    assert metric("accuracy", out, onehot, "cross_entropy") == 0.5


def test_accuracy_rank3_multiclass():
    out = np.zeros((2, 3, 4))
    out[..., 1] = 1.0
    y = np.array([[1, 1, 0], [1, 2, 3]])
    assert metric("accuracy", out, y, "cross_entropy") == pytest.approx(3 / 6)


def test_accuracy_single_unit_thresholds_at_half():
    out = np.array([[0.9], [0.4], [0.51], [0.0]])
    assert metric("accuracy", out, np.array([1, 0, 0, 0]), "binary_cross_entropy") == 0.75
    assert metric("accuracy", out, np.array([[1.0], [1.0], [1.0], [0.0]]), "mse") == 0.75
    # perceptron: step output (0/1) with mse
    step = np.array([[1.0], [0.0], [1.0], [1.0]])
    assert metric("accuracy", step, np.array([1, 0, 1, 0]), "mse") == 0.75


def test_accuracy_multilabel_binary_cross_entropy():
    out = np.array([[0.9, 0.2], [0.6, 0.7]])
    y = np.array([[1, 1], [1, 1]])
    assert metric("accuracy", out, y, "binary_cross_entropy") == 0.75


def test_mae_mse_metrics():
    out = np.array([[1.0, 2.0], [3.0, 5.0]], dtype=np.float32)
    y = np.array([[1.5, 2.0], [2.0, 5.0]])
    assert metric("mae", out, y, "mse") == pytest.approx(0.375)
    assert metric("mse", out, y, "mse") == pytest.approx((0.25 + 1.0) / 4)
    # single-unit output with targets of shape (N,)
    assert metric("mae", np.array([[1.0], [2.0]]), np.array([0.0, 2.0]), "mae") == 0.5


def test_mse_metric_against_class_ids_uses_one_hot():
    out = np.array([[0.5, 0.5], [1.0, 0.0]])
    assert metric("mse", out, np.array([0, 0]), "cross_entropy") == pytest.approx(0.125)


def test_unknown_metric():
    with pytest.raises(NncError):
        metric("f2", np.zeros((1, 2)), np.zeros(1), "cross_entropy")
