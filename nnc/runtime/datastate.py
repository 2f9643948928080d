"""State that comes from data rather than from training: the statistics of ``normalize`` layers.

Before the first epoch of a run whose weights were not loaded (``--init``, ``--resume``,
``load_weights``), every ``normalize`` layer gets the mean and the population variance of the values
that reach it over the training split (after the validation split is taken), per index of its
``axis``, accumulated in float64 (contract 4.2). The exported model then takes raw features.

A ``normalize`` right after the input sees the data itself. One deeper in the model sees the
previous layers' outputs at the initial weights, in inference mode (no dropout; batchnorm with its
initial running statistics), and layers are fitted in model order, so a ``normalize`` after another
sees that one's fitted output. Training never changes the statistics afterwards (they are state,
not parameters).

Engine-agnostic: the statistics are computed with the NumPy graph and written into the weights
dict by key (``<layer>.mean``, ``<layer>.var``), which is what any engine starts from.
"""
from __future__ import annotations

import numpy as np

from .graph import Graph, weight_key
from .kernels import Ctx

#: examples per forward pass while fitting (memory only: the statistics do not depend on it)
FIT_BATCH = 1024


def _moments(v: np.ndarray, axis: int) -> tuple[int, np.ndarray, np.ndarray]:
    """(count, mean, sum of squared deviations) per index of ``axis`` of v, in float64."""
    v = np.moveaxis(v.astype(np.float64, copy=False), axis, -1)
    v = v.reshape(-1, v.shape[-1])
    mean = v.mean(axis=0)
    return v.shape[0], mean, ((v - mean) ** 2).sum(axis=0)


def _merge(a, b):
    """Chan et al.'s pairwise update of (count, mean, M2): exact up to rounding, no cancellation."""
    if a is None:
        return b
    (na, ma, qa), (nb, mb, qb) = a, b
    n = na + nb
    delta = mb - ma
    return n, ma + delta * (nb / n), qa + qb + delta * delta * (na * nb / n)


def _value_before(graph: Graph, weights: dict, inputs: dict[str, np.ndarray], index: int) -> np.ndarray:
    """The value node ``index`` reads (its first input), running the nodes before it in inference mode."""
    ctx = Ctx(training=False, rng=np.random.default_rng(0))
    values: dict[str, np.ndarray] = dict(inputs)
    target = graph.nodes[index].inputs[0]
    for node, kernel, keys in zip(graph.nodes[:index], graph.kernels[:index], graph.keys[:index]):
        if target in values:
            break
        xs = [values[k] for k in node.inputs]
        values[node.id], _ = kernel.forward(xs, {name: weights[key] for name, key in keys}, node.attrs, ctx)
    return values[target]


def fit_data_state(graph: Graph, weights: dict[str, np.ndarray], inputs: dict[str, np.ndarray]) -> list[str]:
    """Fit every ``normalize`` layer's ``mean`` and ``var`` on ``inputs`` (input name -> (N, ...),
    the training split), in place in ``weights``. Returns the layers fitted, in model order.

    mean, var: (K,) for K the size of the layer's axis, the mean and population variance (divided
    by the count, not count - 1) over every example and every other position, cast to the weights'
    dtype after accumulating in float64.
    """
    fitted = []
    n = len(next(iter(inputs.values()))) if inputs else 0
    for index, node in enumerate(graph.nodes):
        if node.op != "normalize" or n == 0:
            continue
        axis = int(node.attrs["axis"]) + 1  # the per-example axis, after the batch axis
        acc = None
        for start in range(0, n, FIT_BATCH):
            batch = {k: v[start:start + FIT_BATCH] for k, v in inputs.items()}
            acc = _merge(acc, _moments(_value_before(graph, weights, batch, index), axis))
        count, mean, m2 = acc
        for name, value in (("mean", mean), ("var", m2 / count)):
            key = weight_key(node, name)
            weights[key] = value.astype(weights[key].dtype)
        fitted.append(node.id)
    return fitted
