"""Metrics reported during training and evaluation, computed from the model's final output over a
whole epoch (or a whole evaluation pass), never as averages of per-batch values.

``out`` is what the model returns (after its final softmax / sigmoid / step, if any), shape
(N, ...); ``y`` the targets as given to the loss. A :class:`MetricSet` is fed batch by batch
(:meth:`MetricSet.update`) and gives every metric of everything it was fed (:meth:`MetricSet.result`),
as Python floats computed in float64: counts (a confusion matrix) for the class metrics, sums for
``mae`` / ``mse`` / ``r2``, and the scores themselves for ``auc``. So ``f1`` and ``auc`` are exact,
and an engine (NumPy or torch) only hands NumPy arrays to it.

How the classes of a prediction are read (the *task*):

- **binary**: a single-unit output (last axis 1, or rank 1), whatever the loss: ``out > 0.5``
  against ``y > 0.5`` (sigmoid, step, or a perceptron's linear output trained with mse on 0/1
  targets); every element counts (a per-step output [T, 1] counts T).
- **multi-label**: ``binary_cross_entropy`` on several units: each unit is a binary task of its own.
- **multi-class**: otherwise, the class is the argmax over the last axis; y is class ids
  (``out.shape[:-1]``) or class probabilities / one-hot (``out.shape``, its argmax is the class).
  Every non-class position counts.

The metrics (scikit-learn's definitions; ``zero_division=0``):

- ``accuracy``: the fraction of right predictions (binary and multi-label: of elements).
- ``precision``, ``recall``, ``f1``: binary: of the positive class 1 (``average="binary"``);
  multi-label: the mean over the units (``average="macro"``); multi-class: the mean over the
  classes that occur among the targets or the predictions (``average="macro"`` with scikit-learn's
  default labels). A ratio whose denominator is 0 counts as 0.
- ``auc``: ROC AUC, ``roc_auc_score``: binary: of the scores ``out``; multi-label: the mean over
  the units; multi-class: one-vs-rest, the mean over the classes (``multi_class="ovr"``,
  ``average="macro"``), each class's scores being its output column as given. A class (or unit)
  whose targets are all positive or all negative has no AUC and is left out of the mean
  (scikit-learn refuses such data); with none left the metric is NaN.
- ``mae`` / ``mse``: elementwise mean absolute / squared error. Class ids (cross_entropy targets
  of shape ``out.shape[:-1]``) are compared as one-hot vectors.
- ``r2``: ``r2_score`` with ``multioutput="uniform_average"``: ``1 - SS_res / SS_tot`` per output
  value (the per-example axes flattened), averaged; a constant target gives 1.0 when predicted
  exactly, else 0.0 (scikit-learn's ``force_finite``). Class ids are one-hot, as for ``mae``.

Nothing is fed: every metric is NaN.
"""
from __future__ import annotations

import numpy as np

from nnc import vocab
from nnc.errors import NncError

#: the metric names, as declared in ``nnc.vocab.METRICS``
METRICS: tuple[str, ...] = vocab.METRICS.choices
default_metrics = vocab.default_metrics


# ----------------------------------------------------------------------------------------------
# reading predictions and targets

def task(out: np.ndarray, loss_kind: str) -> str:
    """``binary``, ``multilabel`` or ``multiclass`` (see the module docstring)."""
    if out.ndim == 1 or out.shape[-1] == 1:
        return "binary"
    return "multilabel" if loss_kind == "binary_cross_entropy" else "multiclass"


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


def classes_of(out: np.ndarray, y: np.ndarray, loss_kind: str):
    """(task, scores, truth, predicted) of a batch.

    binary: scores (M,) float64, truth and predicted (M,) bool. multilabel: (M, K) each.
    multiclass: scores (M, K), truth and predicted (M,) int64 class ids.
    """
    kind = task(out, loss_kind)
    if kind == "binary":
        scores = out.astype(np.float64).reshape(-1)
        return kind, scores, (y.astype(np.float64).reshape(-1) > 0.5), scores > 0.5
    k = out.shape[-1]
    scores = out.astype(np.float64).reshape(-1, k)
    if kind == "multilabel":
        return kind, scores, y.astype(np.float64).reshape(-1, k) > 0.5, scores > 0.5
    true = np.argmax(y, axis=-1) if y.shape == out.shape else y.astype(np.int64)
    return kind, scores, true.reshape(-1), np.argmax(scores, axis=-1)


def confusion_matrix(out: np.ndarray, y: np.ndarray, loss_kind: str) -> np.ndarray | None:
    """Counts [true class, predicted class] (int64): (2, 2) for a binary output (class 0, then 1),
    (K, K) for K classes; None for a multi-label output (one binary matrix per unit would be needed)."""
    out, y = np.asarray(out), np.asarray(y)
    kind, _, true, pred = classes_of(out, y, loss_kind)
    if kind == "multilabel":
        return None
    k = 2 if kind == "binary" else out.shape[-1]
    t, p = true.astype(np.int64), pred.astype(np.int64)
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k)


# ----------------------------------------------------------------------------------------------
# accumulators: update(out, y) per batch, result() at the end


class _Accuracy:
    def __init__(self, loss_kind: str):
        self.loss_kind, self.right, self.count = loss_kind, 0, 0

    def update(self, out, y):
        _, _, true, pred = classes_of(out, y, self.loss_kind)
        self.right += int(np.count_nonzero(true == pred))
        self.count += true.size

    def result(self) -> float:
        return self.right / self.count if self.count else float("nan")


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


class _Counts:
    """True and false positives and false negatives: scalars (binary), per unit (multi-label), or a
    confusion matrix (multi-class), from which precision, recall and f1 are read."""

    def __init__(self, loss_kind: str, which: str):
        self.loss_kind, self.which = loss_kind, which
        self.kind: str | None = None
        self.counts = None

    def update(self, out, y):
        kind, _, true, pred = classes_of(out, y, self.loss_kind)
        self.kind = kind
        if kind == "multiclass":
            k = out.shape[-1]
            add = np.bincount(true * k + pred, minlength=k * k).reshape(k, k)
        else:
            add = np.stack([np.count_nonzero(true & pred, axis=0), np.count_nonzero(~true & pred, axis=0),
                            np.count_nonzero(true & ~pred, axis=0)])  # tp, fp, fn
        self.counts = add if self.counts is None else self.counts + add

    def result(self) -> float:
        if self.counts is None:
            return float("nan")
        if self.kind == "multiclass":
            cm = self.counts
            tp = np.diag(cm)
            fp, fn = cm.sum(axis=0) - tp, cm.sum(axis=1) - tp
            present = (cm.sum(axis=0) + cm.sum(axis=1)) > 0   # scikit-learn's labels: in y_true or y_pred
        else:
            tp, fp, fn = self.counts
            present = np.ones(np.shape(tp), dtype=bool)
        if self.which == "precision":
            per = _ratio(tp, tp + fp)
        elif self.which == "recall":
            per = _ratio(tp, tp + fn)
        else:
            per = _ratio(2 * tp, 2 * tp + fp + fn)
        return float(np.mean(np.atleast_1d(per)[np.atleast_1d(present)])) if np.any(present) else 0.0


def binary_auc(scores: np.ndarray, truth: np.ndarray) -> float:
    """ROC AUC of scores (M,) against truth (M,) bool: the Mann-Whitney statistic with ties counted
    half, which is the trapezoidal area under the ROC curve (``roc_auc_score``). NaN when truth
    holds one class only."""
    pos = int(np.count_nonzero(truth))
    neg = truth.size - pos
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    # average ranks (1-based) of tied scores
    starts = np.flatnonzero(np.concatenate(([True], s[1:] != s[:-1])))
    ends = np.concatenate((starts[1:], [s.size]))
    group_rank = (starts + 1 + ends) / 2.0          # mean of ranks starts+1 .. ends
    ranks = np.empty(s.size, dtype=np.float64)
    ranks[order] = np.repeat(group_rank, ends - starts)
    u = ranks[truth].sum() - pos * (pos + 1) / 2.0
    return float(u / (pos * neg))


class _Auc:
    def __init__(self, loss_kind: str):
        self.loss_kind = loss_kind
        self.kind: str | None = None
        self.scores: list[np.ndarray] = []
        self.truth: list[np.ndarray] = []

    def update(self, out, y):
        kind, scores, true, _ = classes_of(out, y, self.loss_kind)
        self.kind = kind
        self.scores.append(scores)
        self.truth.append(true)

    def result(self) -> float:
        if not self.scores:
            return float("nan")
        scores, truth = np.concatenate(self.scores), np.concatenate(self.truth)
        if self.kind == "binary":
            return binary_auc(scores, truth)
        if self.kind == "multiclass":
            truth = truth[:, None] == np.arange(scores.shape[1])[None, :]
        per = np.array([binary_auc(scores[:, c], truth[:, c]) for c in range(scores.shape[1])])
        per = per[~np.isnan(per)]
        return float(per.mean()) if per.size else float("nan")


class _Errors:
    """Sums of absolute (mae) or squared (mse) errors over every element."""

    def __init__(self, loss_kind: str, squared: bool):
        self.loss_kind, self.squared = loss_kind, squared
        self.total, self.count = 0.0, 0

    def update(self, out, y):
        d = out.astype(np.float64) - _elementwise_target(out, y, self.loss_kind)
        self.total += float(np.sum(d * d) if self.squared else np.sum(np.abs(d)))
        self.count += d.size

    def result(self) -> float:
        return self.total / self.count if self.count else float("nan")


class _R2:
    """Per output value: the target's count, mean and sum of squared deviations (merged batch by
    batch with Chan et al.'s rule, so no cancellation), and the residual sum of squares."""

    def __init__(self, loss_kind: str):
        self.loss_kind = loss_kind
        self.n = 0
        self.mean = self.m2 = self.ss_res = None

    def update(self, out, y):
        t = _elementwise_target(out, y, self.loss_kind).reshape(len(out), -1)
        p = out.astype(np.float64).reshape(len(out), -1)
        n_b = t.shape[0]
        if n_b == 0:
            return
        mean_b = t.mean(axis=0)
        m2_b = ((t - mean_b) ** 2).sum(axis=0)
        res_b = ((t - p) ** 2).sum(axis=0)
        if self.n == 0:
            self.n, self.mean, self.m2, self.ss_res = n_b, mean_b, m2_b, res_b
            return
        n = self.n + n_b
        delta = mean_b - self.mean
        self.m2 = self.m2 + m2_b + delta * delta * (self.n * n_b / n)
        self.mean = self.mean + delta * (n_b / n)
        self.ss_res = self.ss_res + res_b
        self.n = n

    def result(self) -> float:
        if self.n == 0:
            return float("nan")
        ok = self.m2 != 0
        per = np.where(ok, 1.0 - self.ss_res / np.where(ok, self.m2, 1.0), np.where(self.ss_res == 0, 1.0, 0.0))
        return float(per.mean())


#: name -> its accumulator, built with the loss kind; every metric of ``nnc.vocab.METRICS``
METRIC_FUNCTIONS = {
    "accuracy": _Accuracy,
    "mae": lambda loss_kind: _Errors(loss_kind, squared=False),
    "mse": lambda loss_kind: _Errors(loss_kind, squared=True),
    "precision": lambda loss_kind: _Counts(loss_kind, "precision"),
    "recall": lambda loss_kind: _Counts(loss_kind, "recall"),
    "f1": lambda loss_kind: _Counts(loss_kind, "f1"),
    "auc": _Auc,
    "r2": _R2,
}


def _unknown(name: str) -> NncError:
    return NncError.single("E741", f"unknown metric `{name}`", hint="choose from " + ", ".join(METRICS))


class MetricSet:
    """The metrics ``names`` of the batches fed to it: ``update(out, y)`` per batch (the targets
    validated by ``losses.validate_targets``), ``result()`` -> ``{name: value}`` over all of them."""

    def __init__(self, names, loss_kind: str):
        self.names = list(names)
        for name in self.names:
            if name not in METRIC_FUNCTIONS:
                raise _unknown(name)
        self.loss_kind = loss_kind
        self.parts = {name: METRIC_FUNCTIONS[name](loss_kind) for name in self.names}

    def update(self, out, y) -> None:
        out, y = np.asarray(out), np.asarray(y)
        if out.size == 0:
            return
        for part in self.parts.values():
            part.update(out, y)

    def result(self) -> dict[str, float]:
        return {name: part.result() for name, part in self.parts.items()}


def metric(name: str, out: np.ndarray, y: np.ndarray, loss_kind: str) -> float:
    """The metric ``name`` of the model output ``out`` (N, ...) against targets ``y`` (one pass).

    The targets are assumed validated by ``losses.validate_targets`` (same shapes rules).
    An empty batch gives NaN.
    """
    if name not in METRIC_FUNCTIONS:
        raise _unknown(name)
    metrics = MetricSet([name], loss_kind)
    metrics.update(out, y)
    return metrics.result()[name]
