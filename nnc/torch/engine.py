"""The torch engine of the training loop (``nnc.runtime.engine``'s interface) on one device or as
one of several data-parallel processes.

Per batch (the loop gives every process the whole batch, drawn from nnc's generator):

1. this process takes its contiguous share of the rows (``distributed.share``) and runs the
   GraphModule on them (wrapped in ``DistributedDataParallel`` when there are several processes);
   dropout masks are drawn for the whole batch from nnc's generator and this share's rows taken,
   batchnorm reduces its statistics over every process;
2. the loss's input ``z`` and the output are gathered from every process (``all_gather``) and
   returned to the loop as NumPy arrays of the whole batch, so the loss (nnc's own), the NaN
   guard and the metrics are computed exactly as for the NumPy engine, on every process alike;
3. ``backward(dz)`` seeds this share's rows of the full batch's dL/dz, times the number of
   processes: DDP averages the gradients over the processes, so the average is the full batch's
   gradient, whatever the shares' sizes (an uneven or an empty share included), and for any loss
   (a weighted one too) since the loss itself saw the whole batch;
4. ``step``: ``clip_grad_norm_`` (torch's rule, which nnc's clipping follows) and one step of the
   ``torch.optim`` optimizer whose update rule nnc's own optimizers reproduce operation by
   operation (``nnc.runtime.optimizers``; torch's single-tensor path on the CPU), at the schedule's
   learning rate; the state is converted to and from nnc's checkpoint format.
"""
from __future__ import annotations

import inspect
import warnings

import numpy as np
import torch
import torch.distributed as dist

from ..compiler.ir import ModelIR, TrainSpec
from ..runtime.graph import Graph
from ..runtime.optimizers import make_optimizer
from .distributed import World, share
from .module import build_module, tensors_by_key

TORCH_DTYPE = {"float32": torch.float32, "float64": torch.float64}
NUMPY_DTYPE = {torch.float32: np.float32, torch.float64: np.float64}


def torch_optimizer(kind: str, hyper: dict, params: list[torch.Tensor]) -> torch.optim.Optimizer:
    """The ``torch.optim`` optimizer that nnc's ``kind`` reproduces (``nnc.runtime.optimizers``'
    table), with nnc's validated hyper-parameters."""
    h = hyper
    if kind == "sgd":
        return torch.optim.SGD(params, lr=h["lr"], momentum=h["momentum"], dampening=0,
                               weight_decay=h["weight_decay"], nesterov=bool(h["nesterov"]) and h["momentum"] > 0)
    if kind in ("adam", "adamw"):
        cls = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
        return cls(params, lr=h["lr"], betas=(h["beta1"], h["beta2"]), eps=h["eps"], weight_decay=h["weight_decay"],
                   amsgrad=False)
    if kind == "rmsprop":
        return torch.optim.RMSprop(params, lr=h["lr"], alpha=h["rho"], eps=h["eps"], momentum=h["momentum"],
                                   centered=False, weight_decay=0)
    if kind == "adagrad":
        return torch.optim.Adagrad(params, lr=h["lr"], lr_decay=0, weight_decay=0, initial_accumulator_value=0,
                                   eps=1e-10)
    raise NotImplementedError(f"optimizer {kind} has no torch counterpart")  # pragma: no cover - vocab is closed


def _reaching(model: ModelIR, value: str) -> set[str]:
    """Ids of the nodes that ``value`` depends on (itself included): those whose weights get gradients."""
    by_id = {n.id: n for n in model.nodes}
    seen, todo = set(), [value]
    while todo:
        v = todo.pop()
        if v in seen or v not in by_id:
            continue
        seen.add(v)
        todo.extend(by_id[v].inputs)
    return seen


class TorchEngine:
    """The model as a torch module on ``device``; this process is ``world.rank`` of ``world.size``."""

    name = "torch"

    def __init__(self, graph: Graph, weights: dict[str, np.ndarray], spec: TrainSpec | None, value_id: str, *,
                 device: torch.device, world: World = World()):
        model = graph.model
        self.model, self.device, self.world = model, device, world
        self.dtype = TORCH_DTYPE[str(graph.dtype)]
        self.inputs = [i.name for i in model.inputs]
        fused = value_id != model.outputs[0].source
        extra = (value_id,) if fused else ()
        self.z_index = len(model.outputs) if fused else 0           # where z is in the module's outputs
        module, self.keys, self.ctx = build_module(model, weights, extra_outputs=extra)
        self.ctx.world = world.size
        self.module = module.to(device)
        self.tensors = tensors_by_key(self.module, self.keys)          # contract key -> live tensor
        self.trainable = {k: t for k, t in self.tensors.items() if isinstance(t, torch.nn.Parameter)}
        self.runner = self.module
        if world.size > 1:
            from torch.nn.parallel import DistributedDataParallel
            reached = _reaching(model, value_id)
            unused = any(n.id not in reached and any(w.trainable for w in n.weights) for n in model.nodes)
            # NOTE: buffers need no syncing: batchnorm's running statistics are the global batch's on
            # every process already (torch 2.13 renames broadcast_buffers to forward_sync_buffers)
            sync = ("forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                    else "broadcast_buffers")
            self.runner = DistributedDataParallel(self.module, device_ids=[device.index] if device.type == "cuda" else None,
                                                  find_unused_parameters=unused, **{sync: False})
        self.optimizer = None
        if spec is not None:
            self.kind = spec.optimizer["kind"]
            self.hyper = {k: v for k, v in spec.optimizer.items() if k != "kind"}
            self.optimizer = torch_optimizer(self.kind, self.hyper, list(self.trainable.values()))
            self.steps = {k: 0 for k in self.trainable}     # nnc counts steps per parameter (torch's SGD does not)
        self._z: torch.Tensor | None = None
        self._rows = (0, 0)
        self._training: bool | None = None
        self._lr: float | None = None
        if device.type == "cuda":   # NOTE: recurrent weights are separate tensors, not cuDNN's one flat buffer
            warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous chunk")

    # ------------------------------------------------------------------------------------------

    def forward(self, x, *, training, rng=None):
        n = len(next(iter(x.values())))
        start, end = share(n, self.world)
        self._rows = (start, end)
        xs = [torch.from_numpy(np.ascontiguousarray(x[name][start:end])).to(self.device) for name in self.inputs]
        self.ctx.rng, self.ctx.batch, self.ctx.offset = rng, n, start
        if self._training is not training:
            self.module.train(training)
            self._training = training
        if training:
            outs = self.runner(*xs)
        else:
            with torch.no_grad():
                outs = self.module(*xs)
        out_t, z_t = outs[0], outs[self.z_index]
        self._z = z_t if training else None
        z = self._gather(z_t.detach(), n)
        return z, (z if z_t is out_t else self._gather(out_t.detach(), n))

    def _gather(self, t: torch.Tensor, n: int) -> np.ndarray:
        """(n_local, ...) on every process -> (n, ...) NumPy, the shares in rank order."""
        if self.world.size == 1:
            return t.cpu().numpy()
        sizes = [share(n, World(r, self.world.size)) for r in range(self.world.size)]
        rows = max(e - s for s, e in sizes)
        padded = t.new_zeros((rows, *t.shape[1:]))
        padded[:t.shape[0]] = t
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        return torch.cat([p[:e - s] for p, (s, e) in zip(parts, sizes)]).cpu().numpy()

    def backward(self, dz):
        start, end = self._rows
        seed = torch.from_numpy(np.ascontiguousarray(dz[start:end])).to(self.device)
        if self.world.size > 1:
            seed = seed * self.world.size        # DDP averages over the processes: the mean is the sum of shares
        self._z.backward(seed)
        self._z = None

    def step(self, lr, clip_norm):
        stepped = [k for k, p in self.trainable.items() if p.grad is not None]
        if clip_norm is not None and stepped:
            torch.nn.utils.clip_grad_norm_([self.trainable[k] for k in stepped], clip_norm)
        lr = float(lr)
        if lr != self._lr:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self._lr = lr
        for k in stepped:
            self.steps[k] += 1
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    # ------------------------------------------------------------------------------------------
    # weights and optimizer state as nnc's NumPy dicts

    def weights(self):
        return {k: t.detach().cpu().numpy().copy() for k, t in self.tensors.items()}

    def load_weights(self, arrays):
        with torch.no_grad():
            for k, v in arrays.items():
                t = self.tensors[k]
                t.copy_(torch.from_numpy(np.asarray(v, dtype=NUMPY_DTYPE[t.dtype])))

    def _buffer_names(self) -> tuple[str, ...]:
        # NOTE: the buffers nnc's optimizer keeps for these hyper-parameters (torch's names)
        return make_optimizer(self.kind, {}, self.hyper)._buffer_names()

    def optimizer_state(self):
        out: dict[str, np.ndarray] = {}
        for k in self.trainable:
            out[f"{self.kind}.step.{k}"] = np.array(self.steps[k], dtype=np.int64)
        for buf in self._buffer_names():
            for k, p in self.trainable.items():
                t = self.optimizer.state.get(p, {}).get(buf)
                out[f"{self.kind}.{buf}.{k}"] = (t.detach().cpu().numpy().copy() if t is not None else
                                                  np.zeros(tuple(p.shape), dtype=NUMPY_DTYPE[p.dtype]))
        return out

    def load_optimizer_state(self, state):
        # NOTE: nnc's optimizer validates the state (E742 naming the key) and holds it in its format
        shadow = make_optimizer(self.kind, {k: np.zeros(tuple(p.shape), dtype=NUMPY_DTYPE[p.dtype])
                                            for k, p in self.trainable.items()}, self.hyper)
        shadow.load_state_dict(state)
        self.optimizer.state.clear()
        for k, p in self.trainable.items():
            step = shadow.steps[k]
            self.steps[k] = step
            if step == 0:
                continue                          # never stepped: torch creates its state lazily
            entry = {buf: torch.from_numpy(shadow.buffers[buf][k].copy()).to(p.device) for buf in shadow.buffers}
            if self.kind != "sgd":
                entry["step"] = torch.tensor(float(step), dtype=torch.float64 if torch.get_default_dtype()
                                             == torch.float64 else torch.float32)    # torch.optim's choice
            self.optimizer.state[p] = entry


def engine_factory(device: torch.device, world: World = World()):
    """The ``(graph, weights, spec, value_id) -> TorchEngine`` factory the Trainer takes."""
    def make(graph, weights, spec, value_id):
        return TorchEngine(graph, weights, spec, value_id, device=device, world=world)
    return make
