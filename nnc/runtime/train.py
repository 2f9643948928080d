"""The training loop: batches, forward, fused loss, backward, clipping, optimizer and schedule
steps, validation, early stopping, NaN guards and resumable, atomic checkpoints.

One loop for every engine: the forward, backward and optimizer step run on an engine
(``nnc.runtime.engine``: the NumPy runtime by default, or ``nnc.torch.engine.TorchEngine``); the
batches, the loss (nnc's own, on the NumPy arrays the engine returns), NaN guard, metrics,
schedule, early stopping, history and checkpoints are the loop's, so they are the same whichever
engine runs the model.

Determinism: initial weights come from ``default_rng(seed)``; the data order and dropout masks come
from a second generator, ``default_rng([seed, 1])``, whose state is saved in every checkpoint, so
that ``--resume`` continues bit for bit where the run stopped.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import NncError
from ..compiler.ir import TrainSpec
from .alloc import keep_freed_memory
from .datastate import fit_data_state
from .engine import Engine, EngineFactory, NumpyEngine
from .graph import Graph
from .losses import class_weights, loss_function, validate_targets
from .metrics import MetricSet
from .schedules import Schedule, make_schedule

CHECKPOINT_VERSION = 1


@dataclass
class EpochLog:
    epoch: int                      # 1-based
    loss: float
    metrics: dict[str, float]
    val_loss: float | None
    val_metrics: dict[str, float]
    lr: float
    seconds: float

    def row(self, metric_names: list[str], has_val: bool) -> list:
        r = [self.epoch, self.loss, *(self.metrics[m] for m in metric_names)]
        if has_val:
            r += [self.val_loss, *(self.val_metrics[m] for m in metric_names)]
        return r + [self.lr, self.seconds]


def history_columns(metric_names: list[str], has_val: bool) -> list[str]:
    cols = ["epoch", "loss", *metric_names]
    if has_val:
        cols += ["val_loss", *(f"val_{m}" for m in metric_names)]
    return cols + ["lr", "seconds"]


@dataclass
class TrainState:
    """Everything a checkpoint holds: enough to continue bit for bit. The weights and the optimizer
    live in the engine: ``weights`` is the engine's :meth:`~nnc.runtime.engine.Engine.weights` (the
    NumPy engine's live arrays, updated in place by the next step: copy them to keep a snapshot;
    another engine's fresh copies), and ``engine.load_weights`` sets any of them (e.g. state fitted
    on data before the first epoch)."""

    engine: Engine
    schedule: Schedule
    rng: np.random.Generator
    epoch: int = 0                  # epochs completed
    best_val: float = math.inf
    bad_epochs: int = 0
    history: list[EpochLog] = field(default_factory=list)
    stopped_early: bool = False
    best_epoch: int = 0             # the epoch of best_val (restore_best and early stopping)
    best_weights: dict[str, np.ndarray] | None = None   # restore_best: a copy of that epoch's weights

    @property
    def weights(self) -> dict[str, np.ndarray]:
        return self.engine.weights()

    def final_weights(self, spec: TrainSpec) -> dict[str, np.ndarray]:
        """What the run hands over (weights.npz, model.onnx, the Python API's model): the weights of
        the epoch with the lowest val_loss under ``restore_best``, else the last epoch's."""
        return self.best_weights if spec.restore_best and self.best_weights is not None else self.weights


class Trainer:
    """Fits a :class:`Graph` to arrays with the settings of a train block, on the engine that
    ``engine`` makes (``(graph, weights, spec, value_id) -> Engine``; default the NumPy runtime)."""

    def __init__(self, graph: Graph, spec: TrainSpec, x: dict[str, np.ndarray], y: np.ndarray,
                 x_val: dict[str, np.ndarray] | None = None, y_val: np.ndarray | None = None,
                 data_name: str = "the training data", engine: EngineFactory | None = None):
        self.graph, self.spec = graph, spec
        self.make_engine: EngineFactory = engine or NumpyEngine
        self.x, self.y = x, y
        self.x_val, self.y_val = x_val, y_val
        self.has_val = x_val is not None and y_val is not None and len(y_val) > 0
        self.loss_kind = spec.loss["kind"]
        loss_params = {k: v for k, v in spec.loss.items() if k != "kind"}
        # NOTE: parameters and targets are validated here, once per run, not in every batch
        self.eval_loss = loss_function(self.loss_kind, loss_params)
        self.value_id, self.fused = graph.loss_value_id(self.loss_kind)
        self.metric_names = list(spec.metrics)
        out = graph.model.outputs[0]
        for name, yy in (("training", y), ("validation", y_val)):
            if yy is not None and len(yy):
                try:
                    validate_targets(self.loss_kind, (None, *out.shape), yy)
                except NncError as err:
                    for d in err.diagnostics:
                        d.message = f"{name} targets of {data_name}: {d.message}"
                    raise
        self.loss = self.eval_loss          # the training loss: new_state() adds the class weights
        self.class_weights = None

    # ------------------------------------------------------------------------------------------

    def new_state(self, weights: dict[str, np.ndarray], *, fit_state: bool = False) -> TrainState:
        """The state of a run starting from ``weights``. ``fit_state``: the weights were not loaded
        (not --init, --resume or load_weights), so the state that comes from data -- ``normalize``
        statistics -- is fitted on the training split first (``datastate.fit_data_state``)."""
        keep_freed_memory()
        spec = self.spec
        if fit_state:
            fit_data_state(self.graph, weights, self.x)
        # class_weight weights the training loss only (balanced: counted on the training split);
        # validation and evaluation losses are unweighted
        self.class_weights = class_weights(spec.class_weight, self.loss_kind, self.y,
                                           (None, *self.graph.model.outputs[0].shape))
        if self.class_weights is not None:
            self.loss = loss_function(self.loss_kind, {k: v for k, v in spec.loss.items() if k != "kind"},
                                      self.class_weights)
        engine = self.make_engine(self.graph, weights, spec, self.value_id)
        sched_params = {k: v for k, v in spec.schedule.items() if k != "kind"}
        schedule = make_schedule(spec.schedule["kind"], sched_params, spec.optimizer["lr"], spec.epochs)
        return TrainState(engine, schedule, np.random.default_rng([spec.seed, 1]))

    def batches(self, n: int, rng: np.random.Generator | None):
        order = rng.permutation(n) if rng is not None else np.arange(n)
        bs = self.spec.batch_size
        for start in range(0, n, bs):
            yield order[start:start + bs]

    def _take(self, x: dict[str, np.ndarray], idx) -> dict[str, np.ndarray]:
        return {k: v[idx] for k, v in x.items()}

    def train_epoch(self, state: TrainState, on_batch: Callable[[int, int, float], None] | None = None) -> EpochLog:
        spec = self.spec
        epoch = state.epoch + 1
        lr = float(state.schedule.lr(state.epoch))
        n = len(self.y)
        t0 = time.perf_counter()
        total, count = 0.0, 0
        metrics = MetricSet(self.metric_names, self.loss_kind)  # over the whole epoch, not per batch
        n_batches = -(-n // spec.batch_size)
        # NOTE: a diverging run is reported once as E761, not as a stream of NumPy warnings
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for b, idx in enumerate(self.batches(n, state.rng if spec.shuffle else None), 1):
                loss, out, yb = self.train_step(state, idx, lr, epoch, b, n_batches)
                k = len(idx)
                total += loss * k
                count += k
                metrics.update(out, yb)
                if on_batch is not None:
                    on_batch(b, n_batches, total / count)
        seconds = time.perf_counter() - t0
        val_loss, val_metrics = (None, {})
        if self.has_val:
            val_loss, val_metrics = self.evaluate(state.engine, self.x_val, self.y_val)
        log = EpochLog(epoch, total / count, metrics.result(), val_loss, val_metrics, lr, seconds)
        state.schedule.end_epoch(state.epoch, val_loss if val_loss is not None else log.loss)
        state.epoch = epoch
        state.history.append(log)
        if val_loss is not None and (spec.patience is not None or spec.restore_best):
            if val_loss < state.best_val:
                state.best_val, state.bad_epochs, state.best_epoch = val_loss, 0, epoch
                if spec.restore_best:
                    state.best_weights = {k: v.copy() for k, v in state.weights.items()}
            else:
                state.bad_epochs += 1
                if spec.patience is not None and state.bad_epochs >= spec.patience:
                    state.stopped_early = True
        return log

    def train_step(self, state: TrainState, idx, lr: float, epoch: int, b: int, n_batches: int):
        """One optimizer step on the examples ``idx``. Returns (loss, output, targets) of the batch."""
        xb, yb = self._take(self.x, idx), self.y[idx]
        z, out = state.engine.forward(xb, training=True, rng=state.rng)
        loss, dz = self.loss(z, yb)
        if not math.isfinite(loss):
            raise NncError.single(
                "E761", f"the loss became {'NaN' if math.isnan(loss) else 'infinite'} at epoch {epoch}, "
                f"batch {b} of {n_batches}; training stopped",
                hint="lower the learning rate, add `clip_norm = 1.0`, or check the data for extreme values")
        state.engine.backward(dz)
        state.engine.step(lr, self.spec.clip_norm)
        return loss, out, yb

    def evaluate(self, weights: Engine | dict[str, np.ndarray], x: dict[str, np.ndarray],
                 y: np.ndarray) -> tuple[float, dict[str, float]]:
        """Mean loss and metrics over ``x, y`` in inference mode, in batches, on an engine (or on
        the NumPy runtime with a weights dict)."""
        engine = NumpyEngine(self.graph, weights, None, self.value_id) if isinstance(weights, dict) else weights
        total, count = 0.0, 0
        metrics = MetricSet(self.metric_names, self.loss_kind)
        n = len(y)
        for idx in self.batches(n, None):
            xb, yb = self._take(x, idx), y[idx]
            z, out = engine.forward(xb, training=False)
            loss, _ = self.eval_loss(z, yb)
            k = len(idx)
            total += loss * k
            count += k
            metrics.update(out, yb)
        return total / max(count, 1), metrics.result()


def clip_gradients(grads: dict[str, np.ndarray], max_norm: float) -> float:
    """Scale all gradients in place so their global L2 norm is at most ``max_norm`` (torch's
    ``clip_grad_norm_``: coefficient ``max_norm / (norm + 1e-6)``, clamped to 1). Returns the norm."""
    norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))
    coef = max_norm / (norm + 1e-6)
    if coef < 1.0:
        for k in grads:
            grads[k] = grads[k] * np.asarray(coef, dtype=grads[k].dtype)
    return norm


# ----------------------------------------------------------------------------------------------
# checkpoints

def checkpoint_arrays(state: TrainState, fingerprint: str, metric_names: list[str], has_val: bool) -> dict:
    """A checkpoint as flat npz arrays (no pickles): weights/, optimizer/, schedule/ and meta."""
    arrays: dict[str, np.ndarray] = {}
    for k, v in state.weights.items():
        arrays[f"weights/{k}"] = v
    for k, v in state.engine.optimizer_state().items():
        arrays[f"optimizer/{k}"] = np.asarray(v)
    for k, v in state.schedule.state_dict().items():
        arrays[f"schedule/{k}"] = np.asarray(v)
    for k, v in (state.best_weights or {}).items():   # restore_best: the best epoch's weights so far
        arrays[f"best/{k}"] = v
    meta = {
        "version": CHECKPOINT_VERSION,
        "fingerprint": fingerprint,
        "epoch": state.epoch,
        "best_val": state.best_val if math.isfinite(state.best_val) else None,
        "bad_epochs": state.bad_epochs,
        "stopped_early": state.stopped_early,
        "best_epoch": state.best_epoch,
        "rng": state.rng.bit_generator.state,
        "history": [log.__dict__ for log in state.history],
        "metric_names": metric_names,
        "has_val": has_val,
    }
    arrays["meta"] = np.array(json.dumps(meta, default=_json_default))
    return arrays


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


def restore_state(state: TrainState, arrays: dict[str, np.ndarray], fingerprint: str, path: str,
                  metric_names: list[str] | None = None, has_val: bool | None = None) -> None:
    """Load a checkpoint into a fresh :class:`TrainState` (E762 if it belongs to another run, or
    if the metrics or validation data differ: the history could not continue in the same columns)."""
    try:
        meta = json.loads(str(arrays["meta"]))
    except (KeyError, ValueError):
        raise NncError.single("E762", f"`{path}` is not an nnc checkpoint (no metadata)", path=path,
                              hint="resume from a run directory written by `nnc train`") from None
    if meta.get("fingerprint") != fingerprint:
        raise NncError.single("E762", f"the checkpoint in `{path}` was written for a different model or data type",
                              path=path, hint="resume with the same spec (architecture and dtype) that started the run")
    if metric_names is not None and meta.get("metric_names") != metric_names:
        raise NncError.single("E762", f"the run in `{path}` tracked metrics {meta.get('metric_names')}, "
                              f"not {metric_names}", path=path,
                              hint="resume with the run's metrics, or start a new run with --out")
    if has_val is not None and meta.get("has_val") != has_val:
        raise NncError.single("E762", f"the run in `{path}` was {'' if meta.get('has_val') else 'not '}"
                              "validated; resuming must keep the same validation data", path=path,
                              hint="resume with the run's `validation`, or start a new run with --out")
    weights = {}
    for k, current in state.weights.items():
        src = arrays.get(f"weights/{k}")
        if src is None or src.shape != current.shape:
            raise NncError.single("E762", f"the checkpoint in `{path}` lacks a matching `{k}`", path=path)
        weights[k] = src
    state.engine.load_weights(weights)
    state.engine.load_optimizer_state({k[len("optimizer/"):]: v for k, v in arrays.items()
                                       if k.startswith("optimizer/")})
    state.schedule.load_state_dict({k[len("schedule/"):]: v for k, v in arrays.items() if k.startswith("schedule/")})
    state.epoch = int(meta["epoch"])
    state.best_val = math.inf if meta["best_val"] is None else float(meta["best_val"])
    state.bad_epochs = int(meta["bad_epochs"])
    state.stopped_early = bool(meta.get("stopped_early", False))
    state.best_epoch = int(meta.get("best_epoch", 0))
    best = {k[len("best/"):]: v for k, v in arrays.items() if k.startswith("best/")}
    if best:
        if set(best) != set(state.weights) or any(best[k].shape != state.weights[k].shape for k in best):
            raise NncError.single("E762", f"the checkpoint in `{path}` holds best-epoch weights that do not fit "
                                  "the model", path=path, hint="start a new run with --out")
        state.best_weights = {k: np.array(v, dtype=state.weights[k].dtype) for k, v in best.items()}
    state.rng.bit_generator.state = meta["rng"]
    state.history = [EpochLog(**h) for h in meta["history"]]
