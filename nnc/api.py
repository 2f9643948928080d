"""The Python API: a compiled spec with weights that fits, predicts, evaluates, saves and exports
(the data layer, the NumPy runtime and the exporter together, for notebooks and scripts).

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
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .errors import NncError
from .compiler.ir import Program
from .dataload import check_labels_fit, check_token_ids, data_info_of, train_spec
from .progress import Progress, format_log
from . import data as D
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
    program = compile_source(data, str(path), overrides=parse_overrides(settings))
    for d in program.warnings:  # what `nnc check` prints as warnings, the API says as Python warnings
        warnings.warn(NncWarning(f"{d.path or path}:{d.span.line if d.span else 1}:"
                                 f"{d.span.column if d.span else 1}: warning[{d.code}]: {d.message}"
                                 + (f" (hint: {d.hint})" if d.hint else "")), stacklevel=3)
    return program


class NncWarning(UserWarning):
    """A compiler warning about a spec (``W...`` codes, docs/errors.md): the spec still compiles."""


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
# export (the exporter lives in nnc.onnx: it needs the compiler and the runtime)

def export_onnx(program: Program, out: Path, *, weights=None, opset: int | None = None, verify: bool = True,
                labels: list[str] | None = None) -> str:
    from .onnx import export_onnx as _export
    return _export(program, out, weights=weights, opset=opset, verify=verify, labels=labels)


# ----------------------------------------------------------------------------------------------
# the Python API

class Model:
    """A compiled spec with weights: fit, predict, evaluate, save, load and export.

    ``x`` arrays are (N, *input_shape) (data are reshaped to the input when sizes agree); ``y`` are
    (N,) class ids, (N,) string labels, or (N, *output_shape) targets; x and y must have the same
    number of rows (E732), and NaN or infinity in x is E733.

    ``labels`` is the id -> label map of string targets (``labels[id] == label``): built by the
    first ``fit`` on string labels (sorted, as ``nnc train`` does), read from the data.json beside
    the weights by ``load_weights``, and reused by every later ``fit``, ``evaluate`` and validation
    set, so a set holding only some classes keeps their ids. A label it lacks is E735. Set it to
    None to start a new map.
    """

    def __init__(self, program: Program, weights: dict[str, np.ndarray] | None = None,
                 labels: list[str] | None = None):
        self.program = program
        train = program.train
        self.dtype = train.dtype if train is not None else "float32"
        self.graph = Graph(program.model, self.dtype)
        self._weights = weights if weights is not None else self.graph.init_weights(program.seed)
        # NOTE: the first fit() of freshly initialised weights fits the state that comes from data
        # (normalize statistics) on its training split; loaded, assigned or trained weights keep theirs
        self.fresh = weights is None
        self.history: list[dict] = []
        self.labels: list[str] | None = list(labels) if labels is not None else None

    @property
    def weights(self) -> dict[str, np.ndarray]:
        """``{"<layer>.<param>": array}``; assigning weights counts as loading them (no refit of
        ``normalize`` statistics by the next ``fit``)."""
        return self._weights

    @weights.setter
    def weights(self, value: dict[str, np.ndarray]) -> None:
        self._weights = value
        self.fresh = False

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
            D.check_finite(ds)
            check_token_ids(self.program, inp.name, ds.x, f"input `{inp.name}`")
            out[inp.name] = ds.x
        return out

    @staticmethod
    def _rows(xs: dict[str, np.ndarray], y: np.ndarray | None, what: str) -> int:
        """The number of examples; E732 unless every input (and y) has that many rows."""
        n = len(next(iter(xs.values())))
        if any(len(v) != n for v in xs.values()):
            sizes = ", ".join(f"`{k}` {len(v)}" for k, v in xs.items())
            raise NncError.single("E732", f"{what}: the inputs have different numbers of examples: {sizes}",
                                  hint="give every input one row per example")
        if y is not None and (y.ndim == 0 or len(y) != n):
            ny = f"{len(y)} rows" if y.ndim else "a single value"
            raise NncError.single("E732", f"{what}: x has {n} rows but y has {ny}",
                                  hint="x and y need one row per example each (the same first dimension)")
        return n

    def _targets(self, y, what: str, labels: list[str] | None, *, build: bool = False
                 ) -> tuple[np.ndarray, list[str] | None]:
        """(targets, label map): string labels become class ids through ``labels`` (built from
        them when ``build`` and there is no map yet); numbers are returned as they are."""
        y = np.asarray(y)
        if y.dtype.kind == "O" and y.size and all(isinstance(v, str) for v in y.reshape(-1)):
            y = y.astype(str)
        if y.dtype.kind not in "US":
            return y, labels
        if labels is None and not build:
            first = y.reshape(-1)[0] if y.size else ""
            raise NncError.single(
                "E735", f'{what} holds labels (e.g. "{first}"), but the model has no label map',
                hint="fit() on string labels first, load_weights() from a run trained on them (its data.json), "
                     "or pass class ids")
        info = D.DataInfo("arrays", "the model's label map", labels=labels) if labels is not None else None
        return D.label_targets(y, what, info)

    def predict(self, x, batch_size: int = 256):
        """Model outputs in inference mode: an array (one output) or {output name: array}."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise NncError.single("E741", f"batch_size must be a positive integer, got {batch_size!r}")
        xs = self._inputs(x)
        n = self._rows(xs, None, "predict()")
        if n == 0:  # no rows in, no rows out: each output's shape with a batch of 0
            outs = {o.name: np.zeros((0, *(d if isinstance(d, int) else 0 for d in o.shape)), dtype=self.dtype)
                    for o in self.program.model.outputs}
            return next(iter(outs.values())) if len(outs) == 1 else outs
        chunks: dict[str, list] = {}
        for s in range(0, n, batch_size):
            outs = self.graph.forward({k: v[s:s + batch_size] for k, v in xs.items()}, self.weights)
            for k, v in outs.items():
                chunks.setdefault(k, []).append(v)
        outs = {k: np.concatenate(v) for k, v in chunks.items()}
        return next(iter(outs.values())) if len(outs) == 1 else outs

    def predict_labels(self, x, batch_size: int = 256) -> list[str]:
        """The predicted label of each example, through ``self.labels`` (the label map of string
        targets): the label of the largest output, or of one sigmoid output thresholded at 0.5 with
        two labels (as ``nnc predict`` writes them). E735 when the model has no label map."""
        from .dataload import predicted_labels
        out = self.predict(x, batch_size)
        names = predicted_labels(out, self.labels) if isinstance(out, np.ndarray) else None
        if names is None:
            raise NncError.single("E735", "the model has no label map that fits its output, so its predictions have "
                                  "no label names", hint="fit() on string labels, or load_weights() of a run trained "
                                  "on them; predict() gives the outputs")
        return names

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
        y, labels = self._targets(y, "fit() y", self.labels, build=True)
        self._rows(xs, y, "fit()")
        check_labels_fit(program, y, labels, "fit() y")
        xv = yv = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise NncError.single("E741", "validation_data must be a pair (x_val, y_val)",
                                      hint="pass validation_data=(x_val, y_val)")
            xv = self._inputs(validation_data[0])
            yv, _ = self._targets(validation_data[1], "validation_data y", labels)
            self._rows(xv, yv, "validation_data")
            check_labels_fit(program, yv, labels, "validation_data y")
        elif spec.validation and isinstance(spec.validation, float):
            (xk, xa), = xs.items()
            tr, va = D.split_validation(D.Dataset(xa, y, "x"), spec.validation, spec.seed)
            xs, y, xv, yv = {xk: tr.x}, tr.y, {xk: va.x}, va.y
        trainer = Trainer(self.graph, spec, xs, y, xv, yv, "the arrays")
        state = trainer.new_state(self.weights, fit_state=self.fresh)
        self.fresh = False
        progress = Progress(quiet=quiet)
        while state.epoch < spec.epochs and not state.stopped_early:
            progress.start_epoch(state.epoch + 1, spec.epochs)
            log = trainer.train_epoch(state, progress.batch)
            progress.end_epoch(format_log(log, spec.epochs, trainer.metric_names))
        self.history = [dict(zip(history_columns(trainer.metric_names, trainer.has_val),
                                 log.row(trainer.metric_names, trainer.has_val))) for log in state.history]
        self.weights = state.final_weights(spec)  # restore_best: the epoch with the lowest val_loss
        self.labels = labels
        return self.history

    def evaluate(self, x, y) -> dict[str, float]:
        """Loss and metrics on (x, y); string labels take the ids of ``self.labels``."""
        spec = train_spec(self.program)
        xs = self._inputs(x)
        y, labels = self._targets(y, "evaluate() y", self.labels)
        self._rows(xs, y, "evaluate()")
        check_labels_fit(self.program, y, labels, "evaluate() y")
        trainer = Trainer(self.graph, spec, xs, y)
        loss, metrics = trainer.evaluate(self.weights, trainer.x, trainer.y)
        return {"loss": loss, **metrics}

    def save_weights(self, path) -> None:
        save_npz(path, self.weights)

    def load_weights(self, path) -> None:
        """Weights from a file; the label map too when a data.json lies beside it (a run directory)."""
        weights = load_weights(path, self.program.model, self.dtype)
        info = data_info_of(path)
        self.weights = weights
        if info is not None:
            self.labels = info.labels

    def export(self, path, *, opset: int | None = None, verify: bool = True) -> str:
        return export_onnx(self.program, Path(path), weights=self.weights, opset=opset, verify=verify,
                           labels=self.labels)


def _recompile(program: Program, settings: dict) -> dict:
    from .compiler.lower import check_source, parse_overrides
    text = {k: v if isinstance(v, str) else _nnspec_literal(v) for k, v in settings.items()}
    return check_source(program.source or "", program.path, overrides=parse_overrides(text))


def load(path, **settings) -> Model:
    """Compile a spec file into a :class:`Model` with freshly initialised weights."""
    return Model(load_program(path, settings or None))


