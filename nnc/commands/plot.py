"""``nnc plot RUN_DIR [-o curves.png]``: a run's training curves from its ``history.csv``.

One panel for the loss and one per metric, each with the training curve and, when the run had
validation data, the validation curve (``val_<name>``); a last panel for the learning rate (on a
log scale when it spans more than a factor of ten). ``nnc train`` writes the same picture into its
run as ``curves.png`` when matplotlib is installed (:func:`write_curves_quietly`).

matplotlib (an optional extra, ``pip install 'nnc[plot]'``) is imported here only, when a picture
is drawn, and only its object-oriented API with the Agg canvas: no pyplot, no display, no global
state (a process that uses matplotlib for something else is not affected).
"""
from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

from ..errors import NncError, plural
from ..util import atomic_write_with

FORMATS = (".png", ".svg", ".pdf")
FIXED = ("epoch", "lr", "seconds")


def read_history(path: Path) -> dict[str, list[float]]:
    """The columns of a ``history.csv`` as lists of floats (an empty cell is NaN); E905 when the file
    is missing, unreadable or not a history."""
    shown = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NncError.single("E905", f"`{path.parent}` has no history.csv", path=shown,
                              hint="give the directory of a run that `nnc train` wrote (it writes history.csv "
                                   "after every epoch)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise NncError.single("E905", f"cannot read `{shown}`: {getattr(exc, 'strerror', None) or exc}",
                              path=shown, hint="check the file's permissions") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows or rows[0][:2] != ["epoch", "loss"] or "lr" not in rows[0]:
        raise NncError.single("E905", f"`{shown}` is not a training history (its header should start "
                              "with `epoch,loss` and hold `lr`)", path=shown,
                              hint="give the directory of a run that `nnc train` wrote")
    header = rows[0]
    columns: dict[str, list[float]] = {h: [] for h in header}
    for k, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise NncError.single("E905", f"`{shown}` line {k} has {len(row)} values for {len(header)} columns",
                                  path=shown, hint="the file was changed by hand or cut short; "
                                  "`nnc train --resume` rewrites it")
        for h, cell in zip(header, row):
            try:
                columns[h].append(float(cell) if cell.strip() else math.nan)
            except ValueError:
                raise NncError.single("E905", f"`{shown}` line {k}: `{cell}` in column `{h}` is not a number",
                                      path=shown, hint="`nnc train --resume` rewrites the file") from None
    if not columns["epoch"]:
        raise NncError.single("E905", f"`{shown}` holds no epoch yet", path=shown,
                              hint="plot the run after its first epoch has finished")
    return columns


def panels(columns: dict[str, list[float]]) -> list[tuple[str, list[str]]]:
    """``[(title, [column, ...]), ...]``: the loss, each metric (training, then validation), the lr."""
    names = [h for h in columns if h not in FIXED and not h.startswith("val_")]
    out = [(n, [n] + ([f"val_{n}"] if f"val_{n}" in columns else [])) for n in names]
    out += [(h[4:], [h]) for h in columns if h.startswith("val_") and h[4:] not in names]
    out.append(("learning rate", ["lr"]))
    return out


def draw(columns: dict[str, list[float]], title: str, fmt: str = "png") -> bytes:
    """The curves as an image in ``fmt`` (png, svg, pdf); ImportError without matplotlib."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    plots = panels(columns)
    cols = min(3, len(plots))
    rows = math.ceil(len(plots) / cols)
    # NOTE: fixed margins (in inches) rather than a layout engine: `nnc train` draws this after every
    # run, and constrained layout would double the time
    width, height = 4.2 * cols, 3.0 * rows + 0.45
    fig = Figure(figsize=(width, height), dpi=100)
    fig.subplots_adjust(left=0.7 / width, right=1 - 0.2 / width, bottom=0.5 / height, top=1 - 0.75 / height,
                        wspace=0.7 / 4.2 * cols / max(1, cols - 1) if cols > 1 else 0.2,
                        hspace=0.9 / 3.0 * rows / max(1, rows - 1) if rows > 1 else 0.2)
    FigureCanvasAgg(fig)
    epochs = columns["epoch"]
    for k, (name, series) in enumerate(plots):
        ax = fig.add_subplot(rows, cols, k + 1)
        for col in series:
            label = "validation" if col.startswith("val_") else "learning rate" if col == "lr" else "training"
            style = "--" if col.startswith("val_") else "-"
            ax.plot(epochs, columns[col], style, marker="o" if len(epochs) <= 30 else None, markersize=3,
                    label=label, color="#d62728" if col.startswith("val_") else "#1f77b4")
        lr = [v for v in columns["lr"] if v > 0 and math.isfinite(v)] if name == "learning rate" else []
        if lr and max(lr) > 10 * min(lr):
            ax.set_yscale("log")
        elif lr and max(lr) == min(lr):
            ax.set_ylim(0, 1.5 * lr[0])  # a constant rate: a flat line from 0, not a zoom on rounding
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        if len(epochs) < 12:
            ax.set_xticks([int(e) for e in epochs])
        if len(series) > 1:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt)
    return buf.getvalue()


def write_curves(run_dir: Path, out: Path, title: str | None = None) -> int:
    """Plot ``run_dir/history.csv`` into ``out`` (atomically); the number of epochs plotted."""
    columns = read_history(run_dir / "history.csv")
    fmt = out.suffix.lower().lstrip(".") or "png"
    try:
        data = draw(columns, title or f"{run_dir.name}: {plural(len(columns['epoch']), 'epoch')}", fmt)
    except ImportError:
        raise NncError.single("E904", "plotting needs matplotlib, which is not installed", path=str(run_dir),
                              hint="install the plotting extra: pip install 'nnc[plot]'") from None
    atomic_write_with(out, lambda fh: fh.write(data), code="E903")
    return len(columns["epoch"])


def write_curves_quietly(run_dir: Path, warn) -> None:
    """``nnc train``'s ``curves.png``: written when matplotlib is installed, silently skipped when it
    is not; any failure is a warning (``warn(message)``), never a failed run."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    try:
        write_curves(run_dir, run_dir / "curves.png")
    except NncError as err:
        warn(f"warning: curves.png not written: {err.diagnostics[0].message}")
    except Exception as exc:  # noqa: BLE001 - a picture must never fail a training run
        warn(f"warning: curves.png not written: {type(exc).__name__}: {exc}")


def plot_command(args) -> int:
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise NncError.single("E905", f"`{run_dir}` is not a run directory", path=str(run_dir),
                              hint="give the directory `nnc train` wrote (e.g. runs/<model>)")
    out = Path(args.output) if args.output else run_dir / "curves.png"
    n = write_curves(run_dir, out)
    print(f"wrote {out} ({plural(n, 'epoch')})", file=sys.stderr)
    return 0
