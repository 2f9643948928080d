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


def _cross_entropy(params: dict, z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    eps = params["label_smoothing"]
    classes = z.shape[-1]
    y = np.asarray(y)
    logp, grad = _log_softmax(z)
    logp2 = logp.reshape(-1, classes)  # (M, C), M = all non-class positions
    grad2 = grad.reshape(-1, classes)
    count = logp2.shape[0]
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


def _binary_cross_entropy(params: dict, z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    t = _as_elementwise_target(y, z)
    # NOTE: max(z, 0) - z t + log(1 + exp(-|z|)) never overflows (torch BCEWithLogitsLoss)
    e = np.exp(-np.abs(z))
    elem = np.maximum(z, 0) - z * t + np.log1p(e)
    loss = float(np.mean(elem)) if z.size else float("nan")
    # stable sigmoid: 1 / (1 + e) for z >= 0, e / (1 + e) for z < 0
    grad = np.where(z >= 0, 1.0, e).astype(z.dtype, copy=False)
    grad /= 1.0 + e
    grad -= t
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


def loss_function(kind: str, params: dict | None):
    """``(z, y) -> (loss, dL/dz)`` with the parameters validated once, for a training loop whose
    targets were validated once for the run (:func:`validate_targets`): no per-batch checks."""
    p, fn = loss_params(kind, params), LOSS_FUNCTIONS[kind]
    return lambda z, y: fn(p, z, y)


def loss_and_grad(kind: str, params: dict, z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean loss over the batch and its gradient dL/dz (same shape/dtype as z).

    kind: one of ``LOSSES``; params: the loss's parameters (missing ones take the defaults of its
    signature in ``nnc.vocab``).
    z: the model output (N, ...) -- logits for cross_entropy (class axis last) and
    binary_cross_entropy. y: the targets (see the module docstring). Raises ``NncError`` E740 for
    targets that do not fit z, E741 for bad parameters.
    """
    p = loss_params(kind, params)
    z = np.asarray(z)
    if z.dtype.kind != "f":
        z = z.astype(np.float64)
    validate_targets(kind, z.shape, y)
    return LOSS_FUNCTIONS[kind](p, z, np.asarray(y))
