"""Engines: what the training loop (:class:`nnc.runtime.train.Trainer`) needs of whatever runs the
model, and the NumPy runtime's engine.

The loop is engine-agnostic: it takes the batches (from nnc's generator), computes the loss and its
gradient with nnc's own losses (``nnc.runtime.losses``, on NumPy arrays), checks for NaN, computes
the metrics, steps the schedule, stops early, writes checkpoints. An engine holds the weights and
the optimizer and does the rest on its own arrays:

    z, out = engine.forward(x, training=True, rng=rng)   # NumPy (N, ...) arrays of the WHOLE batch
    loss, dz = loss_function(z, y)                        # in the loop, on NumPy arrays
    engine.backward(dz)                                   # dz: (N, ...) like z
    engine.step(lr, clip_norm)                            # clip the global norm, one optimizer step

``z`` is the value the loss reads (the logits before a fused final softmax/sigmoid, else the
output) and ``out`` the model's output (what the metrics read). Dropout masks are drawn from
``rng`` (nnc's generator, advanced exactly as the NumPy kernels advance it). Weights cross the
interface as NumPy arrays keyed ``<layer>.<param>`` (the weights contract), optimizer state as
``nnc.runtime.optimizers``' flat dict, so checkpoints are the same whichever engine wrote them.

Implementations: :class:`NumpyEngine` here, ``nnc.torch.engine.TorchEngine`` (PyTorch, one GPU or
many processes). A factory ``(graph, weights, spec, value_id) -> engine`` is what the Trainer takes.
"""
from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

from ..compiler.ir import TrainSpec
from .graph import Graph
from .optimizers import make_optimizer


class Engine(Protocol):
    """The interface of an engine (see the module docstring)."""

    name: str

    def forward(self, x: dict[str, np.ndarray], *, training: bool,
                rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """x: input name -> (N, *shape) of the whole batch. Returns (z, out), both (N, ...)."""

    def backward(self, dz: np.ndarray) -> None:
        """Gradients of the weights from dL/dz of the last training forward."""

    def step(self, lr: float, clip_norm: float | None) -> None:
        """Clip the gradients' global norm to ``clip_norm`` (torch's rule), then one optimizer step."""

    def weights(self) -> dict[str, np.ndarray]:
        """Every weight and state array by contract key (the NumPy engine's live arrays; others copy)."""

    def load_weights(self, arrays: dict[str, np.ndarray]) -> None:
        """Overwrite the weights named in ``arrays`` (any subset; shapes as the contract's)."""

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """The optimizer's state in ``nnc.runtime.optimizers``' format."""

    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore :meth:`optimizer_state` (E742 if it does not fit)."""


EngineFactory = Callable[[Graph, dict, TrainSpec | None, str], Engine]


class NumpyEngine:
    """The NumPy runtime: :class:`Graph` forward/backward and nnc's optimizers, in place on the
    weights dict it is given. Without a spec it can only run forwards (evaluation)."""

    name = "numpy"

    def __init__(self, graph: Graph, weights: dict[str, np.ndarray], spec: TrainSpec | None, value_id: str):
        self.graph, self.value_id = graph, value_id
        self._weights = weights
        self.output = graph.model.outputs[0].name
        self.optimizer = None
        if spec is not None:
            hyper = {k: v for k, v in spec.optimizer.items() if k != "kind"}
            self.optimizer = make_optimizer(spec.optimizer["kind"],
                                            {k: weights[k] for k in graph.trainable_keys()}, hyper)
        self._tape = None
        self._grads: dict[str, np.ndarray] | None = None

    def forward(self, x, *, training, rng=None):
        outs, tape = self.graph.forward(x, self._weights, training=training, rng=rng, keep=True)
        self._tape = tape if training else None
        return tape[0][self.value_id], outs[self.output]

    def backward(self, dz):
        self._grads = self.graph.backward(self._tape, {self.value_id: dz})
        self._tape = None

    def step(self, lr, clip_norm):
        from .train import clip_gradients
        if clip_norm is not None:
            clip_gradients(self._grads, clip_norm)
        self.optimizer.step(self._grads, lr)
        self._grads = None

    def weights(self):
        return self._weights

    def load_weights(self, arrays):
        for k, v in arrays.items():
            self._weights[k][...] = v

    def optimizer_state(self):
        return self.optimizer.state_dict()

    def load_optimizer_state(self, state):
        self.optimizer.load_state_dict(state)
