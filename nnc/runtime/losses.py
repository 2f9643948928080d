"""Training losses: the mean loss over a batch and its gradient with respect to the model output.

Every loss matches the PyTorch module of the same kind with ``reduction="mean"``:

=========================  ==========================================  ===========================
kind                       PyTorch                                     z (model output)
=========================  ==========================================  ===========================
``mse``                    ``nn.MSELoss``                              any values
``mae``                    ``nn.L1Loss``                               any values
``huber(delta=1.0)``       ``nn.HuberLoss(delta=delta)``               any values
``cross_entropy(...)``     ``nn.CrossEntropyLoss(label_smoothing=..)`` LOGITS, class axis LAST
``binary_cross_entropy``   ``nn.BCEWithLogitsLoss``                    LOGITS
=========================  ==========================================  ===========================

Shapes (N is the batch axis, ``...`` any further axes, C the number of classes):

- ``mse`` / ``mae`` / ``huber`` / ``binary_cross_entropy``: z (N, ...), y (N, ...) the same shape.
  As a convenience a target without the trailing unit axis of a single-unit output is accepted
  (y (N,) for z (N, 1)); it is read as ``y[..., None]``. (PyTorch would silently broadcast that
  pair to (N, N), a classic bug; we never broadcast.)
- ``cross_entropy``: z (N, ..., C); y either integer class ids (N, ...) = ``z.shape[:-1]`` (an
  integer dtype, or floats holding whole numbers) or class probabilities (N, ..., C) = z's shape.
  The mean is over all N * ... positions. Note the class axis is LAST (PyTorch puts it at axis 1
  for rank > 2 inputs; the values are otherwise identical).

The gradient returned is d(mean loss)/dz, with z's shape and dtype. Arithmetic stays in z's dtype
(float32 stays float32), like PyTorch.

Errors in the targets (wrong shape, class id out of range, NaN, ...) raise ``NncError`` with code
``E740``; an invalid loss parameter (``huber(delta=-1)``, an unknown kind) raises ``E741``. The
parameters, their defaults and ranges are the signatures of ``nnc.vocab.LOSSES``.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from nnc import vocab
from nnc.errors import NncError, fmt_shape

E_TARGETS = "E740"

#: losses whose output is a class distribution (metrics default to accuracy for these)
CLASSIFICATION_LOSSES = vocab.CLASSIFICATION_LOSSES


# ----------------------------------------------------------------------------------------------
# parameters


def loss_params(kind: str, params: dict | None) -> dict:
    """``params`` normalised by the loss's signature in ``nnc.vocab`` (every parameter present);
    raises E741 for an unknown kind or parameter or a value out of its range."""
    return vocab.LOSSES.validate(kind, params)


# ----------------------------------------------------------------------------------------------
# target validation


def validate_targets(kind: str, z_shape: tuple, y: np.ndarray) -> None:
    """Raise ``NncError`` E740 unless ``y`` is a valid target for output shape ``z_shape``.

    z_shape: the model output's shape INCLUDING the batch axis, (N, ...). ``z_shape[0]`` may be
    None (or -1) to accept any number of rows. y: the targets for those rows.
    Checks: shape (see the module docstring), finite values, class ids integral and in [0, C),
    probabilities and binary targets in [0, 1].
    """
    y = np.asarray(y)
    z_shape = tuple(z_shape)
    if kind not in LOSS_FUNCTIONS:
        loss_params(kind, None)  # raises the unknown-kind error
    if len(z_shape) == 0:
        raise NncError.single(E_TARGETS, "the model output has no batch axis")
    n = z_shape[0]
    if y.ndim == 0:
        raise NncError.single(E_TARGETS, "targets must have a batch axis, got a single number")
    if n is not None and n != -1 and y.shape[0] != n:
        raise NncError.single(E_TARGETS,
                              f"there are {y.shape[0]} targets for {n} examples")
    per_out = z_shape[1:]
    per_y = y.shape[1:]
    if y.dtype.kind not in "biuf":
        raise NncError.single(E_TARGETS, f"targets must be numbers, got dtype {y.dtype}",
                              hint="class names in a csv target column become ids automatically")
    if y.dtype.kind == "f" and y.size and not np.all(np.isfinite(y)):
        raise NncError.single(E_TARGETS, "targets contain NaN or infinity")

    if kind == "cross_entropy":
        if len(per_out) == 0:
            raise NncError.single(E_TARGETS, "cross_entropy needs an output with a class axis")
        classes = per_out[-1]
        if per_y == per_out:  # class probabilities
            if y.size and (y.min() < 0 or y.max() > 1):
                bad = y.min() if y.min() < 0 else y.max()
                raise NncError.single(
                    E_TARGETS, f"class probability {bad:g} is outside [0, 1]",
                    hint="give class ids, or probabilities of the output's shape")
            return
        if per_y != per_out[:-1]:
            hint = ("give one class id per example, e.g. flatten the labels to shape [N]"
                    if per_y == per_out[:-1] + (1,) else
                    f"give class ids of shape {fmt_shape(per_out[:-1])} per example, or class "
                    f"probabilities of shape {fmt_shape(per_out)}")
            raise NncError.single(
                E_TARGETS,
                f"targets of shape {fmt_shape(per_y)} per example do not fit an output of shape "
                f"{fmt_shape(per_out)} with {classes} classes", hint=hint)
        if y.size == 0:
            return
        if y.dtype.kind == "f":
            frac = y != np.floor(y)
            if frac.any():
                raise NncError.single(
                    E_TARGETS, f"class id {y[frac].flat[0]:g} is not a whole number",
                    hint="class ids are integers 0..C-1; give probabilities of the output's "
                         "shape for soft targets")
        lo, hi = y.min(), y.max()
        if lo < 0:
            raise NncError.single(E_TARGETS, f"label {lo:g} is negative; class ids start at 0")
        if hi >= classes:
            raise NncError.single(
                E_TARGETS,
                f"label {hi:g} is out of range for an output of {classes} classes",
                hint=(f"the labels run from 1 to {int(hi)}: class ids start at 0, so subtract 1 from them"
                      if lo == 1 and hi == classes else f"the last layer needs at least {int(hi) + 1} units"))
        return

    # elementwise losses: mse, mae, huber, binary_cross_entropy
    if per_y != per_out and not (per_out[-1:] == (1,) and per_y == per_out[:-1]):
        raise NncError.single(
            E_TARGETS,
            f"targets of shape {fmt_shape(per_y)} per example do not match the output's shape "
            f"{fmt_shape(per_out)}",
            hint="the last layer's size must equal the number of target values")
    if kind == "binary_cross_entropy" and y.size and (y.min() < 0 or y.max() > 1):
        bad = y.min() if y.min() < 0 else y.max()
        raise NncError.single(E_TARGETS,
                              f"binary_cross_entropy target {bad:g} is outside [0, 1]",
                              hint="binary targets are 0 or 1 (or probabilities)")


def _as_elementwise_target(y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """y with z's shape and dtype (adds the unit axis of a single-unit output if missing)."""
    y = np.asarray(y)
    if y.shape != z.shape:
        y = y.reshape(z.shape)
    return y.astype(z.dtype, copy=False)


# ----------------------------------------------------------------------------------------------
# the losses: (params, z, y) -> (mean loss, dL/dz); y already validated


def _mse(params: dict, z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    diff = z - _as_elementwise_target(y, z)
    loss = float(np.mean(diff * diff)) if diff.size else float("nan")
    diff *= 2.0 / max(diff.size, 1)
    return loss, diff


def _mae(params: dict, z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    diff = z - _as_elementwise_target(y, z)
    loss = float(np.mean(np.abs(diff))) if diff.size else float("nan")
    grad = np.sign(diff)  # NOTE: sign(0) = 0, as torch's L1Loss gradient
    grad *= 1.0 / max(diff.size, 1)
    return loss, grad


def _huber(params: dict, z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    delta = params["delta"]
    diff = z - _as_elementwise_target(y, z)
    absd = np.abs(diff)
    quadratic = absd < delta  # torch: |d| < delta -> 0.5 d^2, else delta (|d| - delta/2)
    elem = np.where(quadratic, 0.5 * diff * diff, delta * (absd - 0.5 * delta))
    loss = float(np.mean(elem)) if diff.size else float("nan")
    grad = np.clip(diff, -delta, delta)
    grad *= 1.0 / max(diff.size, 1)
    return loss, grad


def _log_softmax(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log_softmax(z), softmax(z)) along the last axis, via the max-shifted log-sum-exp."""
    shifted = z - z.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    s = e.sum(axis=-1, keepdims=True)
    logp = shifted - np.log(s)
    e /= s
    return logp, e


def _cross_entropy(params: dict, z: np.ndarray, y: np.ndarray,
                   weight: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    eps = params["label_smoothing"]
    classes = z.shape[-1]
    y = np.asarray(y)
    logp, grad = _log_softmax(z)
    logp2 = logp.reshape(-1, classes)  # (M, C), M = all non-class positions
    grad2 = grad.reshape(-1, classes)
    count = logp2.shape[0]
    if weight is not None:
        return _weighted_cross_entropy(eps, logp2, grad, grad2, y, z, weight.astype(z.dtype, copy=False))
    if y.shape == z.shape:
        # probability targets; torch smooths them as t (1 - eps) + eps / C
        t = y.astype(z.dtype, copy=False).reshape(-1, classes)
        if eps:
            t = t * (1.0 - eps) + eps / classes
        per = -(t * logp2).sum(axis=-1)
        # d/dz of -sum_c t_c log p_c = p * sum(t) - t  (= p - t when the targets sum to 1)
        grad2 *= t.sum(axis=-1, keepdims=True)
        grad2 -= t
    else:
        ids = y.reshape(-1).astype(np.int64, copy=False)
        rows = np.arange(count)
        picked = logp2[rows, ids]
        if eps:
            # torch: (1 - eps) * nll + eps * mean_c(-log p_c)
            per = (1.0 - eps) * -picked + (eps / classes) * -logp2.sum(axis=-1)
            grad2 -= eps / classes
        else:
            per = -picked
        grad2[rows, ids] -= 1.0 - eps
    loss = float(np.mean(per)) if count else float("nan")
    grad *= 1.0 / max(count, 1)
    return loss, grad


def _weighted_cross_entropy(eps, logp2, grad, grad2, y, z, w):
    """``CrossEntropyLoss(weight=w, label_smoothing=eps)``: every position's loss is
    ``-sum_c a_c log p_c`` with ``a = (1 - eps) w_y onehot(y) + (eps / C) w`` (class ids) or
    ``a = w * t`` (probabilities t, smoothed); the mean divides by ``sum w_y`` over the positions
    for class ids and by the number of positions for probabilities, as PyTorch does. The
    gradient of ``-sum_c a_c log p_c`` is ``p * sum(a) - a``."""
    classes = logp2.shape[1]
    count = logp2.shape[0]
    if y.shape == z.shape:
        t = y.astype(z.dtype, copy=False).reshape(-1, classes)
        if eps:
            t = t * (1.0 - eps) + eps / classes
        a = t * w
        denom = float(count)
    else:
        ids = y.reshape(-1).astype(np.int64, copy=False)
        a = np.zeros_like(logp2)
        a[np.arange(count), ids] = (1.0 - eps) * w[ids]
        if eps:
            a += (eps / classes) * w
        denom = float(w[ids].sum())
    per = -(a * logp2).sum(axis=-1)
    grad2 *= a.sum(axis=-1, keepdims=True)
    grad2 -= a
    if not count:
        return float("nan"), grad
    loss = float(per.sum() / denom)
    grad *= 1.0 / denom
    return loss, grad


def _binary_cross_entropy(params: dict, z: np.ndarray, y: np.ndarray,
                          weight: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    t = _as_elementwise_target(y, z)
    # NOTE: max(z, 0) - z t + log(1 + exp(-|z|)) never overflows (torch BCEWithLogitsLoss)
    e = np.exp(-np.abs(z))
    elem = np.maximum(z, 0) - z * t + np.log1p(e)
    # stable sigmoid: 1 / (1 + e) for z >= 0, e / (1 + e) for z < 0
    grad = np.where(z >= 0, 1.0, e).astype(z.dtype, copy=False)
    grad /= 1.0 + e
    grad -= t
    if weight is not None:
        # class_weight: each element weighted by its class (target > 0.5 is class 1), normalised as
        # PyTorch's `weight=` of cross_entropy is: sum w * loss / sum w
        w = weight.astype(z.dtype, copy=False)[(t > 0.5).astype(np.int64)]
        denom = float(w.sum())
        if not z.size:
            return float("nan"), grad
        grad *= w
        grad *= 1.0 / denom
        return float((w * elem).sum() / denom), grad
    loss = float(np.mean(elem)) if z.size else float("nan")
    grad *= 1.0 / max(z.size, 1)
    return loss, grad


#: kind -> its implementation; every loss of ``nnc.vocab.LOSSES``, reading exactly its parameters
LOSS_FUNCTIONS: dict[str, Callable[[dict, np.ndarray, np.ndarray], tuple[float, np.ndarray]]] = {
    "mse": _mse,
    "mae": _mae,
    "huber": _huber,
    "cross_entropy": _cross_entropy,
    "binary_cross_entropy": _binary_cross_entropy,
}

#: the loss kinds this runtime implements (``nnc.vocab.LOSSES``'s, in its order)
LOSSES: tuple[str, ...] = tuple(LOSS_FUNCTIONS)


def loss_function(kind: str, params: dict | None, weight: np.ndarray | None = None):
    """``(z, y) -> (loss, dL/dz)`` with the parameters validated once, for a training loop whose
    targets were validated once for the run (:func:`validate_targets`): no per-batch checks.
    ``weight``: per-class weights (C,) from :func:`class_weights`, or None."""
    p, fn = loss_params(kind, params), LOSS_FUNCTIONS[kind]
    if weight is None:
        return lambda z, y: fn(p, z, y)
    return lambda z, y: fn(p, z, y, weight)


def loss_and_grad(kind: str, params: dict, z: np.ndarray, y: np.ndarray,
                  weight=None) -> tuple[float, np.ndarray]:
    """Mean loss over the batch and its gradient dL/dz (same shape/dtype as z).

    kind: one of ``LOSSES``; params: the loss's parameters (missing ones take the defaults of its
    signature in ``nnc.vocab``).
    z: the model output (N, ...) -- logits for cross_entropy (class axis last) and
    binary_cross_entropy. y: the targets (see the module docstring). ``weight``: a train block's
    ``class_weight`` -- ``"balanced"`` (computed from these targets) or one weight per class -- for
    the classification losses. Raises ``NncError`` E740 for targets that do not fit z, E741 for bad
    parameters.
    """
    p = loss_params(kind, params)
    z = np.asarray(z)
    if z.dtype.kind != "f":
        z = z.astype(np.float64)
    validate_targets(kind, z.shape, y)
    w = class_weights(weight, kind, np.asarray(y), z.shape)
    if w is not None:
        return LOSS_FUNCTIONS[kind](p, z, np.asarray(y), w)
    return LOSS_FUNCTIONS[kind](p, z, np.asarray(y))


# ----------------------------------------------------------------------------------------------
# class weights


def class_counts(kind: str, y: np.ndarray, z_shape: tuple) -> np.ndarray:
    """How many targets each class has, float64 (C,): class ids counted over every position,
    class probabilities summed, binary targets (binary_cross_entropy) above 0.5 as class 1."""
    y = np.asarray(y)
    if kind == "binary_cross_entropy":
        ones = float(np.count_nonzero(y.reshape(-1) > 0.5))
        return np.array([y.size - ones, ones], dtype=np.float64)
    classes = z_shape[-1]
    if y.shape[1:] == tuple(z_shape[1:]):
        return y.reshape(-1, classes).astype(np.float64).sum(axis=0)
    return np.bincount(y.reshape(-1).astype(np.int64), minlength=classes).astype(np.float64)


def class_weights(setting, kind: str, y: np.ndarray, z_shape: tuple) -> np.ndarray | None:
    """The weights (C,) float64 of a train block's ``class_weight`` for targets ``y`` of an output of
    shape ``z_shape`` (batch axis included): None for None; ``"balanced"`` is scikit-learn's
    ``n / (classes * count_c)`` over ``y`` (the training split); a list is taken as given.
    C is the output's last axis for cross_entropy, 2 (classes 0 and 1) for binary_cross_entropy.
    E741 for a setting that does not fit, E717 for a class without examples under `balanced`."""
    if setting is None:
        return None
    if kind not in CLASSIFICATION_LOSSES:
        raise NncError.single("E741", f"`class_weight` weights the classes of a classification loss; `{kind}` "
                              "has none", hint="use cross_entropy or binary_cross_entropy")
    classes = 2 if kind == "binary_cross_entropy" else int(z_shape[-1])
    if isinstance(setting, str):
        if setting != "balanced":
            raise NncError.single("E741", f"unknown class_weight `{setting}`",
                                  hint="use `balanced` or a list of weights, one per class")
        counts = class_counts(kind, y, z_shape)
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            raise NncError.single(
                "E717", f"class_weight = balanced: class {int(empty[0])} has no examples in the training data"
                + (f" (nor {', '.join(str(int(c)) for c in empty[1:6])})" if empty.size > 1 else ""),
                hint="balanced weights are n / (classes * count); give the weights as a list, one per class, "
                     "or train on data that holds every class")
        return counts.sum() / (classes * counts)
    w = np.asarray(setting, dtype=np.float64).reshape(-1)
    if w.size != classes:
        raise NncError.single("E741", f"class_weight has {w.size} weights for {classes} classes",
                              hint="give one weight per class, in class-id order")
    if not (np.all(np.isfinite(w)) and np.all(w > 0)):
        raise NncError.single("E741", "class weights must be finite numbers > 0", hint="e.g. class_weight = [1, 3]")
    return w
