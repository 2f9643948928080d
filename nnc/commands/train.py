"""``nnc train``: a run directory with checkpoint, weights, history and a verified ``model.onnx``."""
from __future__ import annotations

import csv
import io
import math
import os
import sys
from pathlib import Path

from ..api import export_onnx, fingerprint
from ..errors import NncError, plural
from ..compiler.ir import Program
from ..dataload import load_dataset, train_spec, write_data_info
from .. import data as D
from ..runtime.graph import Graph, check_memory
from ..runtime.train import Trainer, TrainState, checkpoint_arrays, history_columns, restore_state
from ..runtime.weights import load_weights, read_npz, save_npz
from ..util import atomic_write_text
from ..progress import Progress, format_log


def train_command(program: Program, args) -> int:
    spec = train_spec(program)
    make_engine, world, launch = _engine_setup(args)
    try:
        code = _train(program, args, spec, make_engine, world, launch)
    except NncError as err:
        if not world.main:   # every process reports its own failure; say which one it was
            for d in err.diagnostics:
                d.message = f"[rank {world.rank}] {d.message}"
        raise   # NOTE: no teardown: torchrun stops the other processes when this one fails
    if world.size > 1:
        # NOTE: every process waits for rank 0's export before the group is torn down together:
        # gloo aborts a process that leaves while a peer still holds the group
        from ..torch.distributed import barrier, shutdown
        barrier(world)
        shutdown(world)
    return code


def _engine_setup(args):
    """(engine factory or None for the NumPy engine, this process' World, whether to launch
    ``--nproc`` processes from here). Under torchrun (RANK / WORLD_SIZE set) the torch engine joins
    the process group; the NumPy engine runs in one process only."""
    from ..torch.distributed import World, world_from_env        # (no torch imported by these two)
    joined = world_from_env()
    if getattr(args, "engine", "numpy") != "torch":
        if joined is not None and joined.size > 1:
            raise NncError.single("E782", f"the NumPy engine trains in one process, but this one was started as "
                                  f"process {joined.rank} of {joined.size} (RANK and WORLD_SIZE are set)",
                                  hint="train data-parallel with `--engine torch` (torchrun, or `--nproc N`)")
        return None, World(), False
    from ..torch import require_torch
    require_torch()
    from ..torch.distributed import init_process_group, resolve_device
    from ..torch.engine import engine_factory
    if joined is None and args.nproc > 1:
        last = World(args.nproc - 1, args.nproc, args.nproc - 1)
        resolve_device(args.device, last)            # E781 here, once, rather than in every process
        return None, World(), True
    world = joined or World()
    device = resolve_device(args.device, world)
    init_process_group(world, device)
    return engine_factory(device, world), world, False


def _train(program: Program, args, spec, make_engine, world, launch: bool) -> int:
    dtype = spec.dtype
    progress = Progress(quiet=args.quiet or not world.main)
    graph = Graph(program.model, dtype)
    resume = Path(args.resume) if args.resume else None
    if resume is not None and resume.is_file() and resume.name == "checkpoint.npz":
        resume = resume.parent  # `--resume runs/x/checkpoint.npz` means its run directory
    if resume is not None and args.out and Path(args.out) != resume:
        progress.info(f"note: --out is ignored with --resume; the run continues in {resume}")
    if resume is not None and not (resume / "checkpoint.npz").exists():
        raise NncError.single("E762", f"`{resume}` has no checkpoint.npz to resume from", path=str(resume),
                              hint="resume a directory written by `nnc train`, or start a new run with --out")
    out = resume or _run_directory(program, args)
    if world.size > 1:   # every process has looked at `out` before the first one writes there
        from ..torch.distributed import barrier
        barrier(world)
    train_ds = load_dataset(program, args.data, dtype=dtype, training=True)
    val_ds = None
    if isinstance(spec.validation, float):
        if spec.validation > 0:
            train_ds, val_ds = D.split_validation(train_ds, spec.validation, spec.seed)
    else:
        val_ds = load_dataset(program, None, role="validation", dtype=dtype, info=D.DataInfo.of(train_ds))
    for note in train_ds.notes + (val_ds.notes if val_ds is not None else []):
        progress.info(f"note: {note}")
    check_memory(graph, min(spec.batch_size, len(train_ds)))
    if launch:   # the data and the run directory are fine: start the processes, which do the rest
        from ..torch.distributed import launch as launch_processes
        return launch_processes(_worker_argv(program, args, out, resume is not None), args.nproc)
    name = program.model.inputs[0].name
    if args.init:
        weights = load_weights(args.init, program.model, dtype)
    else:
        weights = graph.init_weights(spec.seed)
    trainer = Trainer(graph, spec, {name: train_ds.x}, train_ds.y,
                      {name: val_ds.x} if val_ds is not None else None, val_ds.y if val_ds is not None else None,
                      train_ds.name, engine=make_engine)
    state = trainer.new_state(weights, fit_state=not args.init and resume is None)
    fp = fingerprint(program, dtype)
    if resume is not None:
        restore_state(state, read_npz(resume / "checkpoint.npz", "checkpoint"), fp, str(resume / "checkpoint.npz"),
                      trainer.metric_names, trainer.has_val)
        if state.epoch >= spec.epochs or state.stopped_early:
            if not world.main:
                return 0
            print(f"nothing to do: {out} has already completed {plural(state.epoch, 'epoch')}"
                  + (" (stopped early)" if state.stopped_early else f" (the spec asks for {spec.epochs})"))
            return 0
        progress.info(f"resuming {out} from epoch {state.epoch}")
    created = False
    if world.main:   # only the first process writes (and prints)
        created = _prepare_run_directory(out, overwrite=bool(args.overwrite), resume=resume is not None,
                                         progress=progress)
        write_data_info(out, train_ds)  # always: a run's data.json is never one of an older run
    n_train, n_val = len(train_ds.y), (len(val_ds.y) if val_ds is not None else 0)
    progress.info(f"training {program.model.name} ({program.model.params:,} parameters) on {train_ds.name}: "
                  f"{n_train} examples" + (f", {n_val} for validation" if n_val else "")
                  + f"; writing to {out}" + _engine_note(args, state, world))
    try:
        while state.epoch < spec.epochs and not state.stopped_early:
            progress.start_epoch(state.epoch + 1, spec.epochs)
            log = trainer.train_epoch(state, progress.batch)
            progress.end_epoch(format_log(log, spec.epochs, trainer.metric_names))
            if world.main:
                _write_run_files(out, state, fp, trainer)
    except (NncError, KeyboardInterrupt) as exc:
        progress.clear()
        raise _after_failure(out, created, state, program, exc) from None
    if not world.main:
        return 0
    if state.stopped_early:
        progress.info(f"early stopping: validation loss did not improve for {spec.patience} epochs")
    if spec.restore_best and state.best_weights is not None:
        progress.info(f"restore_best: weights.npz and model.onnx hold epoch {state.best_epoch} "
                      f"(val_loss {state.best_val:.4f}); checkpoint.npz holds epoch {state.epoch}")
    final = state.history[-1] if state.history else None
    restored = spec.restore_best and state.best_weights is not None and 0 < state.best_epoch <= len(state.history)
    if restored:
        final = state.history[state.best_epoch - 1]  # the metrics of the weights handed over
    try:
        report = export_onnx(program, out / "model.onnx", weights=state.final_weights(spec), verify=True,
                             labels=train_ds.labels)
        progress.info(report)
    except ImportError as exc:  # pragma: no cover - onnx is a dependency
        progress.info(f"model.onnx not written: {exc}")
    from .plot import write_curves_quietly  # NOTE: matplotlib, when installed, is imported only now
    write_curves_quietly(out, lambda message: print(message, file=sys.stderr))
    if final is not None:
        keys = [f"{m} {final.metrics[m]:.4f}" for m in trainer.metric_names]
        if final.val_loss is not None:
            keys += [f"val_{m} {final.val_metrics[m]:.4f}" for m in trainer.metric_names]
        print(f"{program.model.name}: {plural(state.epoch, 'epoch')}"
              + (f" (weights of epoch {final.epoch}, the lowest val_loss)" if restored else "")
              + f", loss {final.loss:.4f}"
              + (", " + ", ".join(keys) if keys else "") + f"; run in {out}")
    return 0


def _worker_argv(program: Program, args, out: Path, resume: bool) -> list[str]:
    """The command line of each ``--nproc`` worker, spelled out in full (torchrun's own parser reads
    it too, and would take an abbreviated flag for one of its own): the run directory decided
    here, and no ``--nproc`` (a worker sees RANK and joins)."""
    argv = ["train", program.path, "--engine", "torch", "--resume" if resume else "--out", str(out)]
    for flag, value in (("--data", args.data), ("--init", args.init), ("--device", args.device)):
        if value is not None:
            argv += [flag, value]
    for setting in args.set or []:
        argv += ["--set", setting]
    return argv + (["--overwrite"] if args.overwrite else []) + (["--quiet"] if args.quiet else [])


def _engine_note(args, state, world) -> str:
    """`` (torch engine on cpu, 2 processes)`` for the first line of a torch run."""
    if getattr(args, "engine", "numpy") != "torch":
        return ""
    device = state.engine.device
    return f" (torch engine on {device.type if world.size > 1 else device}" + \
        (f", {world.size} processes)" if world.size > 1 else ")")


# the files a run consists of: `--overwrite` removes exactly these, and any of them marks a run
RUN_FILES = ("checkpoint.npz", "weights.npz", "history.csv", "model.onnx", "model.onnx.data", "data.json",
             "labels.json", "curves.png")
# what a continued run makes stale until it writes them again at its end
_EXPORTS = ("model.onnx", "model.onnx.data", "curves.png")


def holds_run(directory: Path) -> bool:
    """True if ``directory`` holds any file of an nnc run (finished or not)."""
    return directory.is_dir() and any(os.path.lexists(directory / f) for f in RUN_FILES)


def _run_directory(program: Program, args) -> Path:
    """``--out`` (refused if it holds a run, unless ``--overwrite``), else the first of
    ``runs/<model>``, ``runs/<model>-2``, ... that holds no run (contract 6.3)."""
    if args.out:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise NncError.single("E764", f"cannot use `{out}` as the run directory: it is a file", path=str(out),
                                  hint="choose a directory with --out")
        if holds_run(out) and not args.overwrite:
            raise NncError.single(
                "E767", f"`{out}` already holds a run", path=str(out),
                hint=f"continue it with `nnc train {program.path} --resume {out}`, replace it with "
                     f"--overwrite (which removes nnc's files there first), or choose another --out")
        return out
    base = Path("runs") / program.model.name
    k = 1
    while True:
        out = base if k == 1 else base.with_name(f"{base.name}-{k}")
        if not (out.exists() and (holds_run(out) or not out.is_dir())):
            return out
        k += 1


def _prepare_run_directory(out: Path, *, overwrite: bool, resume: bool, progress: Progress) -> bool:
    """Create ``out`` (and its parents), clear an old run for ``--overwrite``, and make sure it can be
    written. Returns whether the directory was created. Runs after the data loaded, so a mistake in
    the data never costs the old run."""
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        removed = []
        for f in RUN_FILES if overwrite else _EXPORTS if resume else ():
            if os.path.lexists(out / f):
                (out / f).unlink()
                removed.append(f)
        if overwrite and removed:
            progress.info(f"--overwrite: removed {', '.join(removed)} from {out}")
        probe = out / ".nnc-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except NotADirectoryError:
        raise NncError.single("E764", f"cannot create the run directory `{out}`: a parent is a file", path=str(out),
                              hint="choose another directory with --out") from None
    except OSError as exc:
        raise NncError.single("E764", f"cannot write the run directory `{out}`: {exc.strerror or exc}",
                              path=str(out), hint="choose another directory with --out") from None
    return created


def _after_failure(out: Path, created: bool, state: TrainState, program: Program, exc: BaseException) -> NncError:
    """The error to report after a failed or interrupted run (Ctrl-C becomes E766: exit 1, as the
    contract asks), saying what is left; a run directory holding nothing of value is removed."""
    if state.epoch == 0 and created:
        for f in out.iterdir():  # only files this run wrote before its first epoch ended
            if f.name in RUN_FILES or f.name.startswith("."):
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
             ("weights.npz", lambda p: save_npz(p, state.final_weights(trainer.spec))),
             ("history.csv", lambda p: atomic_write_text(p, _history_csv(state, trainer.metric_names,
                                                                         trainer.has_val)))]
    for name, write in files:
        try:
            write(out / name)
        except OSError as exc:
            raise NncError.single("E764", f"cannot write `{out / name}`: {exc.strerror or exc}", path=str(out / name),
                                  hint="free some disk space or choose another directory with --out; "
                                  "the previous checkpoint is intact") from None


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
