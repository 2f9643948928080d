"""The built-in data sets (``dataset("NAME")``): no network, generated sets use fixed seeds."""
from __future__ import annotations

import functools
import gzip
from importlib import resources
import numpy as np

from .base import Dataset


def _resource_bytes(name: str) -> bytes:
    return resources.files("nnc.data").joinpath("datasets", name).read_bytes()


@functools.lru_cache(maxsize=None)
def _iris_raw() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    # NOTE: scikit-learn's iris.csv starts with "150,4,setosa,versicolor,virginica": the row and
    # feature counts, then the class names; every other row is 4 features and the class id.
    text = _resource_bytes("iris.csv").decode("ascii")
    rows = [line.split(",") for line in text.splitlines() if line.strip()]
    n, f = int(rows[0][0]), int(rows[0][1])
    names = tuple(rows[0][2:])
    data = np.array([[float(v) for v in r] for r in rows[1:]], dtype=np.float64)
    assert data.shape == (n, f + 1), "corrupt built-in iris.csv"
    return data[:, :f], data[:, f].astype(np.int64), names


@functools.lru_cache(maxsize=None)
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    text = gzip.decompress(_resource_bytes("digits.csv.gz")).decode("ascii")
    data = np.array([[int(v) for v in line.split(",")] for line in text.splitlines() if line.strip()],
                    dtype=np.int64)
    assert data.shape == (1797, 65), "corrupt built-in digits.csv.gz"
    return data[:, :64], data[:, 64]


def _truth_table(fn) -> tuple[np.ndarray, np.ndarray]:
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
    y = np.array([fn(int(a), int(b)) for a, b in x], dtype=np.int64)
    return x, y


def _spirals(points: int = 100, classes: int = 3, seed: int = 231) -> tuple[np.ndarray, np.ndarray]:
    """CS231n's spirals: x (points*classes, 2), y (points*classes,) int64."""
    rng = np.random.default_rng(seed)
    x = np.zeros((points * classes, 2))
    y = np.zeros(points * classes, dtype=np.int64)
    for k in range(classes):
        rows = slice(points * k, points * (k + 1))
        r = np.linspace(0.0, 1.0, points)
        t = np.linspace(k * 4.0, (k + 1) * 4.0, points) + rng.standard_normal(points) * 0.2
        x[rows] = np.c_[r * np.sin(t), r * np.cos(t)]
        y[rows] = k
    return x, y


def _sine(n: int = 1000, steps: int = 20, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Sine sequences: x (n, steps, 1) = sin(w*t + phase) for t < steps, y (n, 1) at t = steps."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.1, 0.5, size=(n, 1))
    phase = rng.uniform(0.0, 2.0 * np.pi, size=(n, 1))
    t = np.arange(steps + 1)[None, :]
    wave = np.sin(w * t + phase)
    return wave[:, :steps, None], wave[:, steps:]


def _builtin(name: str, float_dtype) -> Dataset:
    labels = None
    if name == "and":
        x, y = _truth_table(lambda a, b: a & b)
    elif name == "or":
        x, y = _truth_table(lambda a, b: a | b)
    elif name == "xor":
        x, y = _truth_table(lambda a, b: a ^ b)
    elif name == "iris":
        x, y, names = _iris_raw()
        labels = list(names)
    elif name == "digits":
        pixels, y = _digits_raw()
        x = (pixels / 16.0).reshape(-1, 1, 8, 8)
    elif name == "spirals":
        x, y = _spirals()
    elif name == "sine":
        x, y = _sine()
    else:  # pragma: no cover - guarded by the caller
        raise KeyError(name)
    if y.dtype.kind == "f":
        y = y.astype(float_dtype)
    return Dataset(x.astype(float_dtype), y.copy(), f'dataset("{name}")', labels, kind="dataset",
                   source=f'dataset("{name}")')
