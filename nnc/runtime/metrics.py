"""Metrics reported during training and evaluation, computed from the model's final output.

``out`` is what the model returns (after its final softmax / sigmoid / step, if any), shape
(N, ...); ``y`` the targets as given to the loss. Every metric is a mean over the batch, returned
as a Python float computed in float64.

- ``accuracy``:
  * multi-class outputs (last axis > 1, loss not binary_cross_entropy): the predicted class is the
    argmax over the last axis; y is class ids (``out.shape[:-1]``) or class probabilities / one-hot
    (``out.shape``, its argmax is the true class). Mean over all non-class positions.
  * single-unit outputs (last axis 1, or rank 1) and every ``binary_cross_entropy`` output
    (multi-label): elementwise ``out > 0.5`` against ``y > 0.5`` (sigmoid, step, or a perceptron's
    linear output trained with mse on 0/1 targets).
- ``mae`` / ``mse``: elementwise mean absolute / squared error. Class ids (cross_entropy targets
  of shape ``out.shape[:-1]``) are compared as one-hot vectors.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from nnc import vocab
from nnc.errors import NncError

#: the metric names, as declared in ``nnc.vocab.METRICS``
METRICS: tuple[str, ...] = vocab.METRICS.choices
default_metrics = vocab.default_metrics


def _is_ids(out: np.ndarray, y: np.ndarray, loss_kind: str) -> bool:
    return loss_kind == "cross_entropy" and out.ndim >= 1 and y.shape == out.shape[:-1]


def _elementwise_target(out: np.ndarray, y: np.ndarray, loss_kind: str) -> np.ndarray:
    """y as float64 with out's shape (one-hot for class ids, unit axis added if missing)."""
    if _is_ids(out, y, loss_kind) and out.shape[-1] > 1:
        ids = y.astype(np.int64)
        onehot = np.zeros(out.shape, dtype=np.float64)
        np.put_along_axis(onehot, ids[..., None], 1.0, axis=-1)
        return onehot
    return y.astype(np.float64).reshape(out.shape)


def _accuracy(out: np.ndarray, y: np.ndarray, loss_kind: str) -> float:
    single = out.ndim == 1 or out.shape[-1] == 1
    if single or loss_kind == "binary_cross_entropy":
        pred = out > 0.5
        true = y.reshape(out.shape) > 0.5
        return float(np.mean(pred == true))
    pred = np.argmax(out, axis=-1)
    true = np.argmax(y, axis=-1) if y.shape == out.shape else y.astype(np.int64)
    return float(np.mean(pred == true.reshape(pred.shape)))


def _mae(out: np.ndarray, y: np.ndarray, loss_kind: str) -> float:
    return float(np.mean(np.abs(out.astype(np.float64) - _elementwise_target(out, y, loss_kind))))


def _mse(out: np.ndarray, y: np.ndarray, loss_kind: str) -> float:
    d = out.astype(np.float64) - _elementwise_target(out, y, loss_kind)
    return float(np.mean(d * d))


#: name -> its implementation; every metric of ``nnc.vocab.METRICS``
METRIC_FUNCTIONS: dict[str, Callable[[np.ndarray, np.ndarray, str], float]] = {
    "accuracy": _accuracy,
    "mae": _mae,
    "mse": _mse,
}

def metric(name: str, out: np.ndarray, y: np.ndarray, loss_kind: str) -> float:
    """The metric ``name`` of the model output ``out`` (N, ...) against targets ``y``.

    The targets are assumed validated by ``losses.validate_targets`` (same shapes rules).
    An empty batch gives NaN.
    """
    if name not in METRIC_FUNCTIONS:
        raise NncError.single("E741", f"unknown metric `{name}`",
                              hint="choose from " + ", ".join(METRICS))
    out = np.asarray(out)
    y = np.asarray(y)
    if out.size == 0:
        return float("nan")
    return METRIC_FUNCTIONS[name](out, y, loss_kind)
