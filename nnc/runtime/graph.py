"""The graph executor: runs a model's IR with the NumPy kernels.

Forward visits the nodes in order (the IR lists them topologically: source order after ``repeat``
expansion); backward visits them in reverse, summing the gradients of values used more than once.
Weights live in one flat dict keyed ``<layer>.<param>`` (the weights contract), so optimizers,
checkpoints and the ONNX exporter all share one layout.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import NncError
from ..vocab import FUSED_ACTIVATION
from ..compiler.ir import ModelIR, Node
from . import fusion
from .init import initialize
from .kernels import KERNELS, Ctx

# final activation -> the loss that is computed from its input (the logits), for stability
FUSED = {act: loss for loss, act in FUSED_ACTIVATION.items()}   # final activation -> the loss it fuses with


def weight_key(node: Node, name: str) -> str:
    return f"{node.id}.{name}"


def weight_shapes(model: ModelIR) -> dict[str, tuple[tuple[int, ...], bool]]:
    """``{"dense_1.weight": ((units, F), trainable), ...}`` in contract order: what a weights file
    of ``model`` holds (the IR alone decides it; no Graph needed)."""
    return {weight_key(n, w.name): (tuple(w.shape), w.trainable) for n in model.nodes for w in n.weights}


class Graph:
    """A model ready to run: ``forward`` for inference, ``forward`` + ``backward`` for training."""

    def __init__(self, model: ModelIR, dtype: str = "float32"):
        self.model = model
        self.dtype = np.dtype(dtype)
        self.nodes = list(model.nodes)
        self.kernels = [KERNELS[n.op] for n in self.nodes]
        self.input_names = [i.name for i in model.inputs]
        self.input_set = set(self.input_names)
        # per node: (contract name, flat key) of every weight it owns
        self.keys = [[(w.name, weight_key(n, w.name)) for w in n.weights] for n in self.nodes]
        self.by_id = {n.id: n for n in self.nodes}
        # per node: whether any input is an intermediate value (else no input gradient is needed),
        # and whether it has trainable weights; a node with neither is skipped by the backward
        self.needs_dx = [any(src not in self.input_set for src in n.inputs) for n in self.nodes]
        self.has_trainable = [any(w.trainable for w in n.weights) for n in self.nodes]
        # chains of nodes run as one step (nnc.runtime.fusion): same values, same gradients
        self.fused = fusion.plan(self)

    # ------------------------------------------------------------------------------------------
    # weights

    def weight_shapes(self) -> dict[str, tuple[tuple[int, ...], bool]]:
        """See :func:`weight_shapes`."""
        return weight_shapes(self.model)

    def weight_count(self) -> int:
        """Numbers held by all weights and state (exact: Python integers never overflow)."""
        return sum(math.prod(s) for s, _ in self.weight_shapes().values())

    def trainable_keys(self) -> list[str]:
        return [k for k, (_, trainable) in self.weight_shapes().items() if trainable]

    def init_weights(self, seed: int) -> dict[str, np.ndarray]:
        """Fresh weights from each layer's initialisers, drawn in contract order from ``seed``."""
        params = self.weight_count()
        avail = _available_memory()
        if avail is not None and params * self.dtype.itemsize > avail:
            raise NncError.single(
                "E760", f"the model's {params:,} parameters need {params * self.dtype.itemsize / 2**30:.1f} GiB, "
                f"but only {avail / 2**30:.1f} GiB of memory is available", hint="use a smaller model")
        rng = np.random.default_rng(seed)
        out: dict[str, np.ndarray] = {}
        for n in self.nodes:
            for w in n.weights:
                kind = w.init["kind"]
                args = {k: v for k, v in w.init.items() if k != "kind"}
                if kind == "lstm_forget_bias":  # NOTE: bias_ih's forget block (2nd of 4) starts at one
                    arr = np.zeros(w.shape, self.dtype)
                    u = w.shape[0] // 4
                    arr[u:2 * u] = 1
                else:
                    arr = initialize(kind, args, tuple(w.shape), rng, self.dtype, blocks=w.blocks)
                out[weight_key(n, w.name)] = arr
        return out

    # ------------------------------------------------------------------------------------------
    # forward / backward

    def forward(self, inputs: dict[str, np.ndarray], weights: dict[str, np.ndarray], *,
                training: bool = False, rng: np.random.Generator | None = None,
                keep: bool = False):
        """Run the model. inputs: name -> (N, *input_shape). Returns output name -> (N, *shape).

        With ``keep=True`` also returns the tape ``(values, caches)`` that :meth:`backward` reads.
        """
        ctx = Ctx(training=training, rng=rng if rng is not None else np.random.default_rng(0))
        values: dict[str, np.ndarray] = dict(inputs)
        caches: list = [None] * len(self.nodes)
        fused = self.fused
        for i, (node, kernel, keys) in enumerate(zip(self.nodes, self.kernels, self.keys)):
            if i in fused:
                step = fused[i]
                if step is None:                      # run by the fused step of a later node
                    continue
                y, cache = step.forward([values[k] for k in step.inputs], weights, ctx)
                values[node.id] = y
                if keep:
                    caches[i] = cache
                continue
            xs = [values[k] for k in node.inputs]
            w = {name: weights[key] for name, key in keys}
            y, cache = kernel.forward(xs, w, node.attrs, ctx)
            values[node.id] = y
            if keep:
                caches[i] = cache
        outs = {o.name: values[o.source] for o in self.model.outputs}
        if keep:
            return outs, (values, caches)
        return outs

    def backward(self, tape, seeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Gradients of every trainable weight, from ``seeds``: value id -> dL/dvalue.

        A seed may be placed on any node's value (e.g. the logits before a fused softmax); nodes
        after it contribute nothing.
        """
        _, caches = tape
        pending: dict[str, np.ndarray] = dict(seeds)
        grads: dict[str, np.ndarray] = {}
        for i in range(len(self.nodes) - 1, -1, -1):
            node = self.nodes[i]
            dy = pending.pop(node.id, None)
            if dy is None:
                continue
            step = self.fused.get(i)
            if step is not None:
                dxs, dws = step.backward(dy, caches[i], any(src not in self.input_set for src in step.inputs))
                grads.update(dws)
                inputs = step.inputs
            elif not self.needs_dx[i]:
                # every input is a model input: only the weight gradients are needed
                if self.has_trainable[i]:
                    for name, g in self.kernels[i].weight_backward(dy, caches[i]).items():
                        grads[weight_key(node, name)] = g
                continue
            else:
                dxs, dws = self.kernels[i].backward(dy, caches[i])
                for name, g in dws.items():
                    grads[weight_key(node, name)] = g
                inputs = node.inputs
            for src, dx in zip(inputs, dxs):
                if dx is None or src in self.input_set:
                    continue
                prev = pending.get(src)
                # NOTE: never accumulate in place: kernels may return views of dy or of each other
                pending[src] = dx if prev is None else prev + dx
        return grads

    # ------------------------------------------------------------------------------------------
    # training helpers

    def loss_value_id(self, loss_kind: str) -> tuple[str, bool]:
        """The value the loss reads, and whether it is fused with a final softmax/sigmoid.

        When the output ends in ``softmax`` over the last axis (cross_entropy) or ``sigmoid``
        (binary_cross_entropy) the loss is computed from that node's input, the logits.
        """
        out = self.model.outputs[0]
        node = self.by_id.get(out.source)
        if node is not None and FUSED.get(node.op) == loss_kind:
            if node.op == "sigmoid" or node.attrs.get("axis") == len(node.shape) - 1:
                return node.inputs[0], True
        return out.source, False

    def activation_bytes(self, batch: int) -> int:
        """A rough upper bound of the memory one training step needs for activations."""
        per_example = sum(math.prod(n.shape) for n in self.nodes)
        # forward values + caches (a convolution's im2col can be k*k times its input) + gradients
        conv = sum(math.prod(n.shape) * math.prod(n.attrs["kernel"]) for n in self.nodes if "kernel" in n.attrs)
        return (3 * per_example + conv) * batch * self.dtype.itemsize


def check_memory(graph: Graph, batch: int, what: str = "training") -> None:
    """Refuse, with the numbers, a model that cannot fit in this machine's memory."""
    params = graph.weight_count()
    need = params * graph.dtype.itemsize * 4 + graph.activation_bytes(batch)  # weights, grads, 2 moments
    avail = _available_memory()
    if avail is not None and need > avail:
        raise NncError.single(
            "E760", f"{what} this model needs about {need / 2**30:,.1f} GiB "
            f"({params:,} parameters and activations for a batch of {batch}), "
            f"but only {avail / 2**30:.1f} GiB of memory is available",
            hint="use a smaller model or `batch_size`")


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import os
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
