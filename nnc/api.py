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

import csv
import hashlib
import io
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .compiler.errors import NncError
from .compiler.ir import Program
from .runtime import data as D
from .runtime.graph import Graph, check_memory
from .runtime.train import Trainer, TrainState, checkpoint_arrays, history_columns, restore_state
from .runtime.weights import load_weights, read_npz, save_npz
from .util import atomic_write_text


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


def _spec_dir(program: Program) -> Path:
    return Path(program.path).resolve().parent if program.path else Path.cwd()


def _train_spec(program: Program):
    if program.train is None:
        raise NncError.single("E608", f"`{program.path}` has no train block", path=program.path,
                              hint="add `train { data = ... loss = ... }`, or use `--set loss=...` and `--data`")
    return program.train


def load_dataset(program: Program, source: str | None, *, role: str = "data", dtype: str = "float32") -> D.Dataset:
    """The data named by ``--data`` (relative to the working directory) or the train block's
    ``data`` / ``validation`` source (relative to the spec), fitted to the model's input."""
    model = program.model
    if len(model.inputs) != 1:
        raise NncError.single("E763", f"training and evaluation need a model with one input; "
                              f"`{model.name}` has {len(model.inputs)}", path=program.path,
                              hint="export multi-input models with `nnc compile`; train them from Python")
    inp = model.inputs[0]
    if source is not None:
        try:
            kind, args = D.parse_source(source)
        except NncError as err:  # the mistake is on the command line, not in the spec
            for d in err.diagnostics:
                d.path = d.path or "<--data>"
            err.sources = {"<--data>": source}
            raise
        ds = D.load_source(kind, args, Path.cwd(), float_dtype=dtype)
        span = None
    else:
        train = _train_spec(program)
        src = train.data if role == "data" else train.validation
        if src is None:
            raise NncError.single("E607", "no training data: the train block has no `data`", path=program.path,
                                  hint='add `data = dataset("iris")` (or csv(...)/npz(...)), or pass --data')
        span = _source_span(src)
        ds = D.load_source(src.kind, src.args, _spec_dir(program), span=span, spec_path=program.path,
                           float_dtype=dtype)
    D.check_dataset(ds)
    ds = D.fit_to_input(ds, tuple(inp.shape), inp.dtype, dtype, input_name=inp.name, span=span,
                        spec_path=program.path)
    check_token_ids(program, inp.name, ds.x, ds.name, ds.path)
    return ds


def check_token_ids(program: Program, input_name: str, x: np.ndarray, what: str, path: str | None = None) -> None:
    """Token ids must index every embedding that reads them: checked before any training (E731)."""
    for node in program.model.nodes:
        if node.op == "embedding" and node.inputs == [input_name] and x.size:
            bad = np.flatnonzero((x < 0).any(axis=tuple(range(1, x.ndim))) |
                                 (x >= node.attrs["vocab"]).any(axis=tuple(range(1, x.ndim))))
            if bad.size:
                row = int(bad[0])
                ids = x[row][(x[row] < 0) | (x[row] >= node.attrs["vocab"])]
                raise NncError.single(
                    "E731", f"{what}: example {row} has token id {int(ids.flat[0])}, outside [0, {node.attrs['vocab']}) "
                    f"of `{node.id}` ({bad.size} example{'s' if bad.size != 1 else ''} out of range)", path=path,
                    hint=f"raise the embedding's vocab above {int(x.max())}, or fix the token ids")


def _source_span(src):
    from .compiler.errors import SourceSpan
    s = src.span
    return SourceSpan(s.line, s.column, s.end_line, s.end_column) if s else None


# ----------------------------------------------------------------------------------------------
# export (the exporter lives in nnc.export: it needs the compiler and the runtime)

def export_onnx(program: Program, out: Path, *, weights=None, opset: int | None = None, verify: bool = True) -> str:
    from .export import export_onnx as _export
    return _export(program, out, weights=weights, opset=opset, verify=verify)


# ----------------------------------------------------------------------------------------------
# progress

class Progress:
    """A progress bar per epoch on a terminal; plain lines otherwise; nothing with ``quiet``."""

    def __init__(self, quiet: bool = False, stream=None):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) and not quiet
        self.t0 = 0.0
        self.last = 0.0

    def start_epoch(self, epoch: int, epochs: int) -> None:
        self.epoch, self.epochs = epoch, epochs
        self.t0 = self.last = time.perf_counter()

    def batch(self, b: int, n: int, loss: float) -> None:
        if not self.tty:
            return
        now = time.perf_counter()
        if b != n and now - self.last < 0.1:
            return
        self.last = now
        width = 24
        done = int(width * b / n)
        eta = (now - self.t0) / b * (n - b)
        bar = "#" * done + "." * (width - done)
        self.stream.write(f"\repoch {self.epoch}/{self.epochs} [{bar}] {b}/{n} loss {loss:.4f} eta {eta:4.1f}s ")
        self.stream.flush()

    def clear(self) -> None:
        """Erase a half-drawn bar (before an error is printed)."""
        if self.tty:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()

    def end_epoch(self, text: str) -> None:
        if self.quiet:
            return
        self.clear()
        print(text, file=self.stream, flush=True)

    def info(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream, flush=True)


def _fmt_log(log, epochs: int, metric_names: list[str]) -> str:
    parts = [f"epoch {log.epoch:>{len(str(epochs))}}/{epochs}", f"loss {log.loss:.4f}"]
    parts += [f"{m} {log.metrics[m]:.4f}" for m in metric_names]
    if log.val_loss is not None:
        parts.append(f"val_loss {log.val_loss:.4f}")
        parts += [f"val_{m} {log.val_metrics[m]:.4f}" for m in metric_names]
    parts += [f"lr {log.lr:.3g}", f"{log.seconds:.2f}s"]
    return "  ".join(parts)


def _history_csv(state: TrainState, metric_names: list[str], has_val: bool) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(history_columns(metric_names, has_val))
    for log in state.history:
        w.writerow([_num(v) for v in log.row(metric_names, has_val)])
    return buf.getvalue()


def _num(v):
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else str(v)
    return v


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
        spec = _train_spec(program)
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
            progress.end_epoch(_fmt_log(log, spec.epochs, trainer.metric_names))
        self.history = [dict(zip(history_columns(trainer.metric_names, trainer.has_val),
                                 log.row(trainer.metric_names, trainer.has_val))) for log in state.history]
        return self.history

    def evaluate(self, x, y) -> dict[str, float]:
        spec = _train_spec(self.program)
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


# ----------------------------------------------------------------------------------------------
# CLI verbs

def train_command(program: Program, args) -> int:
    spec = _train_spec(program)
    dtype = spec.dtype
    progress = Progress(quiet=args.quiet)
    graph = Graph(program.model, dtype)
    check_memory(graph, spec.batch_size)
    resume = Path(args.resume) if args.resume else None
    if resume is not None and resume.is_file() and resume.name == "checkpoint.npz":
        resume = resume.parent  # `--resume runs/x/checkpoint.npz` means its run directory
    if resume is not None and args.out and Path(args.out) != resume:
        progress.info(f"note: --out is ignored with --resume; the run continues in {resume}")
    out = resume or Path(args.out or Path("runs") / program.model.name)
    if resume is not None and not (resume / "checkpoint.npz").exists():
        raise NncError.single("E762", f"`{resume}` has no checkpoint.npz to resume from", path=str(resume),
                              hint="resume a directory written by `nnc train`, or start a new run with --out")
    train_ds = load_dataset(program, args.data, dtype=dtype)
    val_ds = None
    if isinstance(spec.validation, float):
        if spec.validation > 0:
            train_ds, val_ds = D.split_validation(train_ds, spec.validation, spec.seed)
    else:
        val_ds = load_dataset(program, None, role="validation", dtype=dtype)
    name = program.model.inputs[0].name
    if args.init:
        weights = load_weights(args.init, program.model, dtype)
    else:
        weights = graph.init_weights(spec.seed)
    trainer = Trainer(graph, spec, {name: train_ds.x}, train_ds.y,
                      {name: val_ds.x} if val_ds is not None else None, val_ds.y if val_ds is not None else None,
                      train_ds.name)
    state = trainer.new_state(weights)
    fp = fingerprint(program, dtype)
    if resume is not None:
        restore_state(state, read_npz(resume / "checkpoint.npz", "checkpoint"), fp, str(resume / "checkpoint.npz"),
                      trainer.metric_names, trainer.has_val)
        if state.epoch >= spec.epochs or state.stopped_early:
            print(f"nothing to do: {out} has already completed {_plural(state.epoch, 'epoch')}"
                  + (" (stopped early)" if state.stopped_early else f" (the spec asks for {spec.epochs})"))
            return 0
        progress.info(f"resuming {out} from epoch {state.epoch}")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".nnc-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise NncError.single("E764", f"cannot write the run directory `{out}`: {exc.strerror or exc}",
                              path=str(out), hint="choose another directory with --out") from None
    if train_ds.labels:
        atomic_write_text(out / "labels.json", json.dumps({"labels": train_ds.labels}, indent=2) + "\n")
    n_train, n_val = len(train_ds.y), (len(val_ds.y) if val_ds is not None else 0)
    progress.info(f"training {program.model.name} ({program.model.params:,} parameters) on {train_ds.name}: "
                  f"{n_train} examples" + (f", {n_val} for validation" if n_val else "")
                  + f"; writing to {out}")
    try:
        while state.epoch < spec.epochs and not state.stopped_early:
            progress.start_epoch(state.epoch + 1, spec.epochs)
            log = trainer.train_epoch(state, progress.batch)
            progress.end_epoch(_fmt_log(log, spec.epochs, trainer.metric_names))
            _write_run_files(out, state, fp, trainer)
    except (NncError, KeyboardInterrupt) as exc:
        progress.clear()
        raise _after_failure(out, created, state, program, exc) from None
    if state.stopped_early:
        progress.info(f"early stopping: validation loss did not improve for {spec.patience} epochs")
    final = state.history[-1] if state.history else None
    try:
        report = export_onnx(program, out / "model.onnx", weights=state.weights, verify=True)
        progress.info(report)
    except ImportError as exc:  # pragma: no cover - onnx is a dependency
        progress.info(f"model.onnx not written: {exc}")
    if final is not None:
        keys = [f"{m} {final.metrics[m]:.4f}" for m in trainer.metric_names]
        if final.val_loss is not None:
            keys += [f"val_{m} {final.val_metrics[m]:.4f}" for m in trainer.metric_names]
        print(f"{program.model.name}: {_plural(state.epoch, 'epoch')}, loss {final.loss:.4f}"
              + (", " + ", ".join(keys) if keys else "") + f"; run in {out}")
    return 0


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _after_failure(out: Path, created: bool, state: TrainState, program: Program, exc: BaseException) -> NncError:
    """The error to report after a failed or interrupted run (Ctrl-C becomes E766: exit 1, as the
    contract asks), saying what is left; a run directory holding nothing of value is removed."""
    if state.epoch == 0 and created:
        for f in out.iterdir():  # only files this run wrote before its first epoch ended
            if f.name in ("labels.json",) or f.name.startswith("."):
                f.unlink()
        try:
            out.rmdir()
        except OSError:
            pass
    done = (f"the checkpoint of epoch {state.epoch} is in {out}: continue with "
            f"`nnc train {program.path} --resume {out}`" if state.epoch else "no epoch finished, so nothing was saved")
    if isinstance(exc, KeyboardInterrupt):
        return NncError.single("E766", f"training interrupted during epoch {state.epoch + 1}", hint=done)
    for d in exc.diagnostics:
        if d.code == "E761":
            d.hint = "lower the learning rate, add `clip_norm = 1.0`, or check the data for extreme values; " + done
    return exc


def _write_run_files(out: Path, state: TrainState, fp: str, trainer: Trainer) -> None:
    """The checkpoint, weights and history of the epoch just finished, each written atomically."""
    files = [("checkpoint.npz", lambda p: save_npz(p, checkpoint_arrays(state, fp, trainer.metric_names,
                                                                         trainer.has_val))),
             ("weights.npz", lambda p: save_npz(p, state.weights)),
             ("history.csv", lambda p: atomic_write_text(p, _history_csv(state, trainer.metric_names,
                                                                         trainer.has_val)))]
    for name, write in files:
        try:
            write(out / name)
        except OSError as exc:
            raise NncError.single("E764", f"cannot write `{out / name}`: {exc.strerror or exc}", path=str(out / name),
                                  hint="free some disk space or choose another directory with --out; "
                                  "the previous checkpoint is intact") from None


def evaluate_command(program: Program, args) -> int:
    spec = _train_spec(program)
    weights = load_weights(args.weights, program.model, spec.dtype)
    ds = load_dataset(program, args.data, dtype=spec.dtype)
    model = Model(program, weights)
    result = model.evaluate(ds.x, ds.y)
    print(f"{program.model.name} on {ds.name} ({len(ds.y)} examples): "
          + ", ".join(f"{k} {v:.4f}" for k, v in result.items()))
    return 0


def predict_command(program: Program, args) -> int:
    dtype = program.train.dtype if program.train is not None else "float32"
    weights = load_weights(args.weights, program.model, dtype)
    model = Model(program, weights)
    x = D.load_inputs(Path(args.input))
    outs = model.predict(x)
    outs = outs if isinstance(outs, dict) else {program.model.outputs[0].name: outs}
    dest = args.output
    if dest is None or dest == "-":
        for name, arr in outs.items():
            if len(outs) > 1:
                print(f"# {name}")
            np.savetxt(sys.stdout, arr.reshape(len(arr), -1), fmt="%.6g", delimiter=",")
        return 0
    path = Path(dest)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if len(outs) != 1:
            raise NncError.single("E765", "the model has several outputs; write them to an .npz file",
                                  hint=f"use -o {path.with_suffix('.npz')}")
        save = lambda fh: np.save(fh, next(iter(outs.values())), allow_pickle=False)  # noqa: E731
    elif suffix == ".npz":
        def save(fh):
            np.savez(fh, **outs)
    elif suffix == ".csv":
        if len(outs) != 1:
            raise NncError.single("E765", "the model has several outputs; write them to an .npz file",
                                  hint=f"use -o {path.with_suffix('.npz')}")
        arr = next(iter(outs.values()))
        flat = arr.reshape(len(arr), -1)
        text = ",".join(f"out_{i}" for i in range(flat.shape[1])) + "\n"
        text += "\n".join(",".join(f"{v:.9g}" for v in row) for row in flat) + "\n"
        atomic_write_text(path, text)
        print(f"wrote {path} ({_plural(len(arr), 'row')})", file=sys.stderr)
        return 0
    else:
        raise NncError.single("E765", f"cannot write predictions to `{path}`: unknown file type",
                              hint="use a .npy, .npz or .csv output file")
    from .util import atomic_write_with
    try:
        atomic_write_with(path, save)
    except OSError as exc:
        raise NncError.single("E765", f"cannot write `{path}`: {exc.strerror or exc}", path=str(path)) from None
    print(f"wrote {path} ({_plural(len(x), 'row')})", file=sys.stderr)
    return 0
