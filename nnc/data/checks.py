"""Checks, fitting to the model's input, and the validation split."""
from __future__ import annotations

import math
from dataclasses import replace
import numpy as np
from nnc.errors import NncError, SourceSpan, fmt_shape

from .base import Dataset


def check_dataset(ds: Dataset) -> None:
    """Raise E734 (no rows or no features), E732 (x/y length mismatch) or E733 (NaN/inf)."""
    where = ds.path
    if ds.x.ndim == 0 or ds.x.shape[0] == 0:
        raise NncError.single("E734", f"{ds.name} has no examples", path=where,
                              hint="check the data source: it must hold at least one row")
    if ds.x.size == 0:
        raise NncError.single("E734", f"{ds.name} has no features (x has shape "
                              f"{fmt_shape(ds.x.shape)})", path=where,
                              hint="every example needs at least one input value")
    if ds.y is not None:
        if ds.y.ndim == 0 or ds.y.shape[0] != ds.x.shape[0]:
            ny = ds.y.shape[0] if ds.y.ndim else "a single value"
            raise NncError.single("E732", f"{ds.name}: x has {ds.x.shape[0]} rows but y has {ny}",
                                  path=where, hint="x and y need one row per example each")
    check_finite(ds)


def check_finite(ds: Dataset) -> None:
    """E733 naming the first row (1-based, and its 0-based index) of x or y that holds NaN or
    infinity: training, evaluation and prediction inputs alike."""
    for what, arr in (("x", ds.x), ("y", ds.y)):
        if arr is None or arr.dtype.kind not in "fc" or arr.ndim == 0 or arr.shape[0] == 0:
            continue
        flat = arr.reshape(arr.shape[0], -1)
        finite = np.isfinite(flat).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            row = int(bad[0])
            value = flat[row][~np.isfinite(flat[row])][0]
            more = f" (and {len(bad) - 1} more rows)" if len(bad) > 1 else ""
            raise NncError.single("E733", f"{ds.name}: {what} holds {value} in row {row + 1} "
                                  f"(0-based index {row}){more}", path=ds.path,
                                  hint="replace NaN/infinite values or drop those rows")


def fit_to_input(ds: Dataset, input_shape: tuple[int, ...], input_dtype: str, float_dtype, *,
                 input_name: str | None = None, span: SourceSpan | None = None,
                 spec_path: str | None = None) -> Dataset:
    """x reshaped to (N, *input_shape) and cast to the input's dtype; float y cast to float_dtype.

    The reshape happens when the per-example sizes agree (digits [1, 8, 8] <-> [64]); otherwise
    E731 naming both shapes. ``input_dtype`` "int64" (token ids) needs whole, non-negative values.
    """
    float_dtype = np.dtype(float_dtype)
    input_shape = tuple(input_shape)
    x = ds.x
    n = x.shape[0] if x.ndim else 0
    per_example = tuple(x.shape[1:])
    label = f"model input '{input_name}'" if input_name else "the model input"
    where = dict(span=span, path=spec_path if (span is not None or spec_path) else ds.path)
    fixed = all(isinstance(d, (int, np.integer)) and d > 0 for d in input_shape)
    if per_example != input_shape and not _matches(per_example, input_shape):
        if not fixed or math.prod(per_example) != math.prod(input_shape):
            raise NncError.single(
                "E731", f"{ds.name} has examples of shape {fmt_shape(per_example)} "
                f"({math.prod(per_example)} values) but {label} is {fmt_shape(input_shape)}"
                + (f" ({math.prod(input_shape)} values)" if fixed else ""),
                hint=f"use data whose examples have {math.prod(input_shape) if fixed else 'matching'}"
                     f" values, or declare the input as {fmt_shape(per_example)}", **where)
        x = x.reshape((n,) + input_shape)
    if input_dtype == "int64":
        if x.dtype.kind == "f":
            finite = np.isfinite(x)
            whole = finite & (x == np.round(np.where(finite, x, 0)))
            if not whole.all():
                row = int(np.flatnonzero(~whole.reshape(n, -1).all(axis=1))[0])
                value = x.reshape(n, -1)[row][~whole.reshape(n, -1)[row]][0]
                raise NncError.single("E731", f"{ds.name}: {label} takes integer token ids, but "
                                      f"row {row + 1} holds {value}",
                                      hint="store token ids as whole numbers (int64)", **where)
        elif x.dtype.kind not in "iub":
            raise NncError.single("E731", f"{ds.name}: {label} takes integer token ids, got "
                                  f"{x.dtype}", hint="store token ids as int64", **where)
        x = x.astype(np.int64)
        if x.size and x.min() < 0:
            row = int(np.flatnonzero((x.reshape(n, -1) < 0).any(axis=1))[0])
            raise NncError.single("E731", f"{ds.name}: token ids must be >= 0, row {row + 1} "
                                  f"holds {int(x.reshape(n, -1)[row].min())}",
                                  hint="token ids index the embedding table", **where)
    else:
        if x.dtype.kind not in "biuf":
            raise NncError.single("E731", f"{ds.name}: {label} takes numbers, got {x.dtype}",
                                  hint="store numeric features", **where)
        x = x.astype(float_dtype, copy=False)
    y = ds.y
    if y is not None:
        y = y.astype(np.int64, copy=False) if y.dtype.kind in "iub" else y.astype(float_dtype,
                                                                                  copy=False)
    return replace(ds, x=x, y=y)


def _matches(shape: tuple, pattern: tuple) -> bool:
    """Equal shapes, where None or -1 in ``pattern`` matches any size."""
    return len(shape) == len(pattern) and all(p is None or p == -1 or p == s
                                              for s, p in zip(shape, pattern))


def split_validation(ds: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """(train, validation): round(N * fraction) rows held out (at least 1 when fraction > 0).

    The held-out rows are the first of a permutation from ``np.random.default_rng(seed)``; both
    parts keep the file order of their rows (so ``shuffle=false`` trains in file order).
    ``fraction == 0`` gives (ds, an empty validation set).
    """
    n = len(ds)
    if not (0.0 <= fraction < 1.0):
        raise NncError.single("E734", f"validation fraction {fraction} is outside [0, 1)",
                              hint="hold out e.g. validation = 0.2", path=ds.path)
    n_val = int(round(n * fraction))
    if fraction > 0:
        n_val = max(1, n_val)
    if n_val >= n and n_val > 0:
        raise NncError.single("E734", f"{ds.name} has {n} rows: holding out {n_val} for "
                              f"validation leaves none to train on",
                              hint="use a smaller validation fraction or more data", path=ds.path)
    val_idx, train_idx = split_indices(n, fraction, seed)

    def take(idx: np.ndarray, suffix: str) -> Dataset:
        return replace(ds, x=ds.x[idx], y=None if ds.y is None else ds.y[idx],
                       name=f"{ds.name} ({suffix})")

    return take(train_idx, "training part"), take(val_idx, "validation part")


def split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(validation rows, training rows) of :func:`split_validation` for ``n`` rows, each sorted:
    what a data source that fits something on the training split only (a text vocabulary) needs
    before the split itself is taken."""
    n_val = int(round(n * fraction))
    if fraction > 0:
        n_val = max(1, n_val)
    n_val = min(n_val, n)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[:n_val]), np.sort(perm[n_val:])
