"""Weight initialisers, named as in the spec's ``init=`` argument, matching ``torch.nn.init``.

=====================  =========================================  ===============================
name (params)          distribution                               torch.nn.init equivalent
=====================  =========================================  ===============================
``zeros``              0                                          zeros_
``ones``               1                                          ones_
``constant(v)``        v                                          constant_(v)
``uniform(low, high)`` U(low, high)                               uniform_(low, high)
``normal(mean, std)``  N(mean, std^2)                             normal_(mean, std)
``glorot_uniform``     U(-a, a), a = sqrt(6 / (fan_in + fan_out))  xavier_uniform_
``glorot_normal``      N(0, 2 / (fan_in + fan_out))               xavier_normal_
``he_uniform``         U(-a, a), a = sqrt(6 / fan_in)             kaiming_uniform_(a=0)
``he_normal``          N(0, 2 / fan_in)                           kaiming_normal_(relu)
``lecun_normal``       N(0, 1 / fan_in)  (not truncated)          normal_(0, 1/sqrt(fan_in))
``orthogonal``         Q of a normal matrix's QR, sign-corrected  orthogonal_(gain=1)
=====================  =========================================  ===============================

fan_in / fan_out are torch's ``_calculate_fan_in_and_fan_out``: for a weight of shape
(out, in, *kernel), fan_in = in * prod(kernel) and fan_out = out * prod(kernel). They need a rank
of at least 2 (as in torch), and so does ``orthogonal`` (it views the weight as
(shape[0], prod(shape[1:]))).

``blocks = k > 1`` splits the first axis into k equal blocks and initialises each independently
(one after the other from the same generator): the recurrent layers' stacked gate weights
(``weight_hh`` of shape (G * units, units)) get one orthogonal / glorot matrix per gate, with
fans computed from the block's shape.

Random numbers are drawn in float64 from ``rng`` (``Generator.uniform`` / ``standard_normal``)
and then cast to ``dtype``, so the values do not depend on the dtype beyond that rounding and a
given generator state always gives the same array.

The parameters, their defaults and ranges are the signatures of ``nnc.vocab.INITIALIZERS``
(bare ``uniform`` is ``uniform(-0.05, 0.05)``); a draw reads them normalised and has none of its own.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from nnc import vocab
from nnc.errors import NncError

E_PARAM = "E741"


def fans(shape: tuple[int, ...], kind: str = "this initialiser") -> tuple[int, int]:
    """(fan_in, fan_out) as torch's ``_calculate_fan_in_and_fan_out``; shape (out, in, *kernel)."""
    if len(shape) < 2:
        raise NncError.single(E_PARAM, f"{kind} needs a weight with at least 2 dimensions, "
                              f"got shape {list(shape)}",
                              hint="use zeros, ones, constant, uniform or normal for it")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _fan_in(shape, kind) -> int:
    fan_in, _ = fans(shape, kind)
    if fan_in == 0:
        raise NncError.single(E_PARAM, f"{kind} cannot initialise a weight with no inputs "
                              f"(shape {list(shape)})")
    return fan_in


def _fan_sum(shape, kind) -> int:
    fan_in, fan_out = fans(shape, kind)
    if fan_in + fan_out == 0:
        raise NncError.single(E_PARAM, f"{kind} cannot initialise an empty weight "
                              f"(shape {list(shape)})")
    return fan_in + fan_out


# each draws one float64 array of `shape` from rng
def _zeros(a, shape, rng):
    return np.zeros(shape)


def _ones(a, shape, rng):
    return np.ones(shape)


def _constant(a, shape, rng):
    return np.full(shape, a["v"], dtype=np.float64)


def _uniform(a, shape, rng):
    return rng.uniform(a["low"], a["high"], size=shape)


def _normal(a, shape, rng):
    return a["mean"] + a["std"] * rng.standard_normal(shape)


def _glorot_uniform(a, shape, rng):
    limit = math.sqrt(6.0 / _fan_sum(shape, "glorot_uniform"))
    return rng.uniform(-limit, limit, size=shape)


def _glorot_normal(a, shape, rng):
    return math.sqrt(2.0 / _fan_sum(shape, "glorot_normal")) * rng.standard_normal(shape)


def _he_uniform(a, shape, rng):
    limit = math.sqrt(6.0 / _fan_in(shape, "he_uniform"))
    return rng.uniform(-limit, limit, size=shape)


def _he_normal(a, shape, rng):
    return math.sqrt(2.0 / _fan_in(shape, "he_normal")) * rng.standard_normal(shape)


def _lecun_normal(a, shape, rng):
    return math.sqrt(1.0 / _fan_in(shape, "lecun_normal")) * rng.standard_normal(shape)


def _orthogonal(a, shape, rng):
    """torch.nn.init.orthogonal_: rows = shape[0], cols = the rest; orthonormal rows or columns."""
    fans(shape, "orthogonal")  # rank check
    rows = shape[0]
    cols = math.prod(shape[1:])
    if rows * cols == 0:
        return np.zeros(shape)
    flat = rng.standard_normal((rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)  # reduced: q (max, min) with orthonormal columns
    # NOTE: scaling by the signs of diag(r) makes Q unique (uniform over orthogonal matrices)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return q.reshape(shape)


#: name -> its implementation, drawing one float64 array of a shape from a generator; every
#: initialiser of ``nnc.vocab.INITIALIZERS``, reading exactly its parameters
DRAWS: dict[str, Callable[[dict, tuple, np.random.Generator], np.ndarray]] = {
    "zeros": _zeros,
    "ones": _ones,
    "constant": _constant,
    "uniform": _uniform,
    "normal": _normal,
    "glorot_uniform": _glorot_uniform,
    "glorot_normal": _glorot_normal,
    "he_uniform": _he_uniform,
    "he_normal": _he_normal,
    "lecun_normal": _lecun_normal,
    "orthogonal": _orthogonal,
}


def initialize(kind: str, args: dict, shape: tuple[int, ...], rng: np.random.Generator, dtype,
               blocks: int = 1) -> np.ndarray:
    """A new C-contiguous array of ``shape`` and ``dtype`` drawn from initialiser ``kind``.

    args: the initialiser's parameters by name (``{"low": -0.05, "high": 0.05}``); missing ones
    take their defaults, and all are checked by the signature in ``nnc.vocab`` (raises E741).
    blocks: split axis 0 into this many equal blocks, each initialised independently in order.
    """
    a = vocab.INITIALIZERS.validate(kind, args)
    shape = tuple(int(d) for d in shape)
    draw = DRAWS[kind]
    if blocks == 1:
        values = draw(a, shape, rng)
    else:
        if blocks < 1 or not shape or shape[0] % blocks:
            raise ValueError(f"cannot split shape {shape} into {blocks} blocks along axis 0")
        block = (shape[0] // blocks,) + shape[1:]
        values = np.concatenate([draw(a, block, rng) for _ in range(blocks)], axis=0)
    return np.ascontiguousarray(values, dtype=dtype)
