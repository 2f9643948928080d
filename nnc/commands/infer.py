"""``nnc evaluate`` and ``nnc predict``: trained weights on data.

Both read the run's ``data.json`` from the folder of the weights file when it is there (contract
5.3), so the data are read as the model was trained on them: CSV feature columns by name, string
labels through the training source's label map. Without it (weights from elsewhere) CSV columns are
taken by position and labels get ids per file, as a note on standard error says.
"""
from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import numpy as np

from ..api import Model
from ..errors import NncError, plural
from ..compiler.ir import Program
from ..dataload import (DATA_JSON, data_info_of, image_defaults, load_dataset, needs_vocabulary, predicted_labels,
                        source_span, train_spec)
from .. import data as D
from ..runtime.metrics import confusion_matrix
from ..runtime.weights import load_weights
from ..vocab import CLASSIFICATION_LOSSES
from ..util import atomic_write_text, atomic_write_with


def _run_info(weights: str) -> D.DataInfo | None:
    info = data_info_of(weights)
    folder = Path(weights).expanduser().parent
    if info is None and (folder / "labels.json").is_file():
        _note(f"{folder / 'labels.json'} is from an older nnc and is not read (no {DATA_JSON} beside the "
              f"weights): labels get ids per file; train the run again to record its data")
    return info


def _note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)


def _positional_note(kind: str, info: D.DataInfo | None, weights: str) -> None:
    if kind == "csv" and info is None:
        _note(f"no {DATA_JSON} beside {weights}: the CSV's columns are taken by position")


def evaluate_command(program: Program, args) -> int:
    spec = train_spec(program)
    weights = load_weights(args.weights, program.model, spec.dtype)
    info = _run_info(args.weights)
    ds = load_dataset(program, args.data, dtype=spec.dtype, info=info)
    for note in ds.notes:
        _note(note)
    _positional_note(ds.kind, info, args.weights)
    model = Model(program, weights, labels=ds.labels)
    result = model.evaluate(ds.x, ds.y)
    print(f"{program.model.name} on {ds.name} ({len(ds.y)} examples): "
          + ", ".join(f"{k} {v:.4f}" for k, v in result.items()))
    if spec.loss["kind"] in CLASSIFICATION_LOSSES:
        matrix = confusion_matrix(model.predict(ds.x), ds.y, spec.loss["kind"])
        if matrix is not None:
            sys.stdout.write(render_confusion(matrix, model.labels))
    return 0


def render_confusion(matrix: np.ndarray, labels: list[str] | None) -> str:
    """The confusion matrix as a table: a row per true class, a column per predicted class, each
    named by its label (or class id)."""
    k = len(matrix)
    names = list(labels) if labels is not None and len(labels) == k else [str(i) for i in range(k)]
    width = max([len(n) for n in names] + [len(str(int(matrix.max()))) if matrix.size else 1, 4])
    head = max(len(n) for n in names + ["true"])
    lines = ["confusion matrix (rows: true class, columns: predicted class):",
             " " * head + "  " + "  ".join(n.rjust(width) for n in names)]
    for name, row in zip(names, matrix):
        lines.append(name.ljust(head) + "  " + "  ".join(str(int(v)).rjust(width) for v in row))
    return "\n".join(lines) + "\n"




def predict_command(program: Program, args) -> int:
    dtype = program.train.dtype if program.train is not None else "float32"
    weights = load_weights(args.weights, program.model, dtype)
    info = _run_info(args.weights)
    data = program.train.data if program.train is not None else None
    if data is not None:  # a text model reads raw text only through the run's vocabulary (E716)
        needs_vocabulary(data.kind, data.args, info, False, "the spec's data", source_span(data), program.path)
    try:
        ds = D.load_inputs(args.input, info, image_options=image_defaults(program))
    except NncError as err:  # a malformed --input 'npz(...)' is a mistake on the command line
        if any(d.path is None for d in err.diagnostics):
            for d in err.diagnostics:
                d.path = d.path or "<--input>"
            err.sources["<--input>"] = args.input
        raise
    for note in ds.notes:
        _note(note)
    _positional_note(ds.kind, info, args.weights)
    model = Model(program, weights, labels=info.labels if info is not None else None)
    outs = model.predict(ds.x)
    outs = outs if isinstance(outs, dict) else {program.model.outputs[0].name: outs}
    names = predicted_labels(next(iter(outs.values())), model.labels) if len(outs) == 1 else None
    files = ds.files
    dest = args.output
    if dest is None or dest == "-":
        for name, arr in outs.items():
            if len(outs) > 1:
                print(f"# {name}")
            sys.stdout.write(_rows_text(arr, names, "%.6g", files))
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
        width = int(np.prod(arr.shape[1:], dtype=np.int64))
        header = ((["file"] if files is not None else []) + [f"out_{i}" for i in range(width)]
                  + (["label"] if names is not None else []))
        atomic_write_text(path, _csv_line(header) + _rows_text(arr, names, "%.9g", files), code="E765")
        print(f"wrote {path} ({plural(len(arr), 'row')})", file=sys.stderr)
        return 0
    else:
        raise NncError.single("E765", f"cannot write predictions to `{path}`: unknown file type",
                              hint="use a .npy, .npz or .csv output file")
    atomic_write_with(path, save, code="E765")
    print(f"wrote {path} ({plural(len(ds), 'row')})", file=sys.stderr)
    return 0


def _rows_text(arr: np.ndarray, names: list[str] | None, fmt: str, files: list[str] | None = None) -> str:
    """One CSV line per example: the image file it came from (image inputs), the outputs flattened,
    then the predicted label when there is one (quoted as CSV needs)."""
    flat = arr.reshape(len(arr), int(np.prod(arr.shape[1:], dtype=np.int64)))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for i, row in enumerate(flat):
        w.writerow(([files[i]] if files is not None else []) + [fmt % v for v in row]
                   + ([names[i]] if names is not None else []))
    return buf.getvalue()


def _csv_line(fields: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(fields)
    return buf.getvalue()
