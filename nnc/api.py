"""What needs several parts at once: data + runtime for training, runtime + exporter for
``model.onnx``, and the Python API for notebooks.

    import nnc
    model = nnc.load("specs/iris_mlp.nnspec")
    history = model.fit(x, y, epochs=50)          # x: (N, 4) float, y: (N,) class ids
    probs = model.predict(x)                       # (N, 3)
    model.save_weights("iris.npz")
    model.export("iris.onnx")
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from .compiler.errors import NncError
from .compiler.ir import Program
from .dataload import check_token_ids, train_spec
from .progress import Progress, format_log
from .runtime import data as D
from .runtime.graph import Graph
from .runtime.train import Trainer, history_columns
from .runtime.weights import load_weights, save_npz


# ----------------------------------------------------------------------------------------------
# loading

def load_program(path: str | Path, settings: dict[str, Any] | list[str] | None = None) -> Program:
    """Compile a spec file, with optional overrides (``{"epochs": 3}`` or ``["epochs=3"]``)."""
    from .compiler.lower import compile_source, parse_overrides
    if isinstance(settings, dict):
        settings = {k: v if isinstance(v, str) else _nnspec_literal(v) for k, v in settings.items()}
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise NncError.single("E002", f"cannot read the file: {exc.strerror or exc}", path=str(path)) from None
    return compile_source(data, str(path), overrides=parse_overrides(settings))


def _nnspec_literal(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_nnspec_literal(x) for x in v) + "]"
    return repr(v)


def fingerprint(program: Program, dtype: str) -> str:
    """Identifies an architecture (spans and source excluded) for checkpoint compatibility."""
    def strip(o):
        if isinstance(o, dict):
            return {k: strip(v) for k, v in o.items() if k != "span"}
        if isinstance(o, list):
            return [strip(v) for v in o]
        return o
    model = strip(program.model.model_dump(exclude={"assertions"}))
    return hashlib.sha256(json.dumps([model, dtype], sort_keys=True).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------
# export (the exporter lives in nnc.export: it needs the compiler and the runtime)

def export_onnx(program: Program, out: Path, *, weights=None, opset: int | None = None, verify: bool = True) -> str:
    from .export import export_onnx as _export
    return _export(program, out, weights=weights, opset=opset, verify=verify)


# ----------------------------------------------------------------------------------------------
# the Python API

class Model:
    """A compiled spec with weights: fit, predict, evaluate, save, load and export.

    ``x`` arrays are (N, *input_shape) (data are reshaped to the input when sizes agree); ``y`` are
    (N,) class ids or (N, *output_shape) targets.
    """

    def __init__(self, program: Program, weights: dict[str, np.ndarray] | None = None):
        self.program = program
        train = program.train
        self.dtype = train.dtype if train is not None else "float32"
        self.graph = Graph(program.model, self.dtype)
        self.weights = weights if weights is not None else self.graph.init_weights(program.seed)
        self.history: list[dict] = []

    @property
    def name(self) -> str:
        return self.program.model.name

    def summary(self) -> str:
        from .compiler.summary import render_summary
        return render_summary(self.program)

    def _inputs(self, x) -> dict[str, np.ndarray]:
        model = self.program.model
        if isinstance(x, dict):
            arrays = x
        else:
            if len(model.inputs) != 1:
                raise NncError.single("E763", f"`{model.name}` has {len(model.inputs)} inputs; pass a dict "
                                      "{input name: array}")
            arrays = {model.inputs[0].name: x}
        out = {}
        for inp in model.inputs:
            if inp.name not in arrays:
                raise NncError.single("E763", f"no array for input `{inp.name}`")
            ds = D.fit_to_input(D.Dataset(np.asarray(arrays[inp.name]), None, f"input `{inp.name}`"),
                                tuple(inp.shape), inp.dtype, self.dtype, input_name=inp.name)
            check_token_ids(self.program, inp.name, ds.x, f"input `{inp.name}`")
            out[inp.name] = ds.x
        return out

    def predict(self, x, batch_size: int = 256):
        """Model outputs in inference mode: an array (one output) or {output name: array}."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise NncError.single("E741", f"batch_size must be a positive integer, got {batch_size!r}")
        xs = self._inputs(x)
        n = len(next(iter(xs.values())))
        if any(len(v) != n for v in xs.values()):
            sizes = ", ".join(f"`{k}` {len(v)}" for k, v in xs.items())
            raise NncError.single("E732", f"the inputs have different numbers of examples: {sizes}")
        chunks: dict[str, list] = {}
        for s in range(0, n, batch_size):
            outs = self.graph.forward({k: v[s:s + batch_size] for k, v in xs.items()}, self.weights)
            for k, v in outs.items():
                chunks.setdefault(k, []).append(v)
        outs = {k: np.concatenate(v) for k, v in chunks.items()}
        return next(iter(outs.values())) if len(outs) == 1 else outs

    def fit(self, x, y, *, validation_data=None, quiet: bool = True, **settings) -> list[dict]:
        """Train on arrays with the spec's train block (``settings`` override its keys, e.g.
        ``epochs=5, optimizer="sgd(lr=0.1)"``). Returns the history as a list of dicts."""
        program = self.program
        if settings:
            program = Program.model_validate(_recompile(program, settings))
            if fingerprint(program, self.dtype) != fingerprint(self.program, self.dtype):
                changed = ", ".join(sorted(k for k in settings if k in self.program.constants))
                raise NncError.single("E763", f"fit() settings change the model's architecture ({changed}); "
                                      "a model's layers are fixed once it is loaded",
                                      hint=f"pass them when loading: nnc.load(path, {changed}=...)")
        spec = train_spec(program)
        xs = self._inputs(x)
        y = np.asarray(y)
        xv = yv = None
        if validation_data is not None:
            xv, yv = self._inputs(validation_data[0]), np.asarray(validation_data[1])
        elif spec.validation and isinstance(spec.validation, float):
            (xk, xa), = xs.items()
            tr, va = D.split_validation(D.Dataset(xa, y, "x"), spec.validation, spec.seed)
            xs, y, xv, yv = {xk: tr.x}, tr.y, {xk: va.x}, va.y
        trainer = Trainer(self.graph, spec, xs, y, xv, yv, "the arrays")
        state = trainer.new_state(self.weights)
        progress = Progress(quiet=quiet)
        while state.epoch < spec.epochs and not state.stopped_early:
            progress.start_epoch(state.epoch + 1, spec.epochs)
            log = trainer.train_epoch(state, progress.batch)
            progress.end_epoch(format_log(log, spec.epochs, trainer.metric_names))
        self.history = [dict(zip(history_columns(trainer.metric_names, trainer.has_val),
                                 log.row(trainer.metric_names, trainer.has_val))) for log in state.history]
        return self.history

    def evaluate(self, x, y) -> dict[str, float]:
        spec = train_spec(self.program)
        trainer = Trainer(self.graph, spec, self._inputs(x), np.asarray(y))
        loss, metrics = trainer.evaluate(self.weights, trainer.x, trainer.y)
        return {"loss": loss, **metrics}

    def save_weights(self, path) -> None:
        save_npz(path, self.weights)

    def load_weights(self, path) -> None:
        self.weights = load_weights(path, self.program.model, self.dtype)

    def export(self, path, *, opset: int | None = None, verify: bool = True) -> str:
        return export_onnx(self.program, Path(path), weights=self.weights, opset=opset, verify=verify)


def _recompile(program: Program, settings: dict) -> dict:
    from .compiler.lower import check_source, parse_overrides
    text = {k: v if isinstance(v, str) else _nnspec_literal(v) for k, v in settings.items()}
    return check_source(program.source or "", program.path, overrides=parse_overrides(text))


def load(path, **settings) -> Model:
    """Compile a spec file into a :class:`Model` with freshly initialised weights."""
    return Model(load_program(path, settings or None))


