"""The kernel interface: :class:`Ctx`, :class:`Kernel`, the registry :data:`KERNELS`."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Ctx:
    """Per-call context passed to every forward.

    training: train mode (dropout active; batchnorm normalises with batch statistics and updates
        its running statistics in place).
    rng: the generator dropout draws its masks from.
    """

    training: bool = False
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))


class Kernel:
    """Forward and backward of one op. Subclasses are registered with :func:`register`."""

    name: str = "?"

    def forward(self, xs: list[np.ndarray], w: dict[str, np.ndarray], a: dict,
                ctx: Ctx) -> tuple[np.ndarray, object]:
        """xs: the op's inputs (batch axis first); w: weights/state by name; a: attrs.

        Returns (y, cache)."""
        raise NotImplementedError

    def backward(self, dy: np.ndarray,
                 cache) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        """dy: gradient of the loss w.r.t. y. Returns (input grads in order, trainable weight grads)."""
        raise NotImplementedError

    def weight_backward(self, dy: np.ndarray, cache) -> dict[str, np.ndarray]:
        """The trainable weights' gradients only, for a node whose inputs need none (they are
        the model's inputs): the graph calls this instead of :meth:`backward` there. Kernels whose
        input gradient is costly (dense, convolutions) skip computing it."""
        return self.backward(dy, cache)[1]

    def __repr__(self) -> str:
        return f"<Kernel {self.name}>"


KERNELS: dict[str, Kernel] = {}


def register(*names: str):
    """Class decorator: instantiate the kernel once and register it under each of ``names``."""
    def deco(cls):
        for name in names:
            inst = cls()
            inst.name = name
            KERNELS[name] = inst
        return cls
    return deco


def _np_axis(axis: int) -> int:
    """A per-example axis (batch excluded) as a NumPy axis."""
    return axis + 1 if axis >= 0 else axis
