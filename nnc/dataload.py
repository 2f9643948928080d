"""Loading the data a spec names for training, evaluation and prediction: the layer above the data
sources (``nnc.data``) that knows the program (its train block, its input, its spec's folder).
Used by the Python API and the CLI verbs alike.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .compiler.datasource import parse_source
from .errors import NncError
from .compiler.ir import Program
from . import data as D
from .util import atomic_write_text


def spec_dir(program: Program) -> Path:
    return Path(program.path).resolve().parent if program.path else Path.cwd()


def train_spec(program: Program):
    if program.train is None:
        raise NncError.single("E608", f"`{program.path}` has no train block", path=program.path,
                              hint="add `train { data = ... loss = ... }`, or use `--set loss=...` and `--data`")
    return program.train


def load_dataset(program: Program, source: str | None, *, role: str = "data", dtype: str = "float32",
                 info: D.DataInfo | None = None, training: bool = False) -> D.Dataset:
    """The data named by ``--data`` (relative to the working directory) or the train block's
    ``data`` / ``validation`` source (relative to the spec), fitted to the model's input.

    ``info`` is what the model was trained on (the training source for the validation source, a
    run's data.json for ``evaluate``): CSV columns are matched by name and labels take its ids, a
    text column takes its vocabulary, an image folder its size and color. ``training``: this is the
    training source of a run (a text vocabulary is fitted on the rows the validation split leaves);
    otherwise a text source needs ``info`` (E716). String labels are checked against the model's
    output (E740 naming the label)."""
    model = program.model
    if len(model.inputs) != 1:
        raise NncError.single("E763", f"training and evaluation need a model with one input; "
                              f"`{model.name}` has {len(model.inputs)}", path=program.path,
                              hint="export multi-input models with `nnc compile`; train them from Python")
    inp = model.inputs[0]
    if source is not None:
        try:
            kind, args = parse_source(source)
        except NncError as err:  # the mistake is on the command line, not in the spec
            for d in err.diagnostics:
                d.path = d.path or "<--data>"
            err.sources["<--data>"] = source
            raise
        needs_vocabulary(kind, args, info, training, "--data", None, None)
        if kind == "images" and args.get("size") is None and (info is None or info.images is None):
            args = {**(image_defaults(program) or {}), **{k: v for k, v in args.items() if v is not None}}
        ds = D.load_source(kind, args, Path.cwd(), float_dtype=dtype, info=info,
                           fit_rows=_training_rows(program) if training else None)
        span = None
    else:
        train = train_spec(program)
        src = train.data if role == "data" else train.validation
        if src is None:
            raise NncError.single("E607", "no training data: the train block has no `data`", path=program.path,
                                  hint='add `data = dataset("iris")` (or csv(...)/npz(...)), or pass --data')
        span = source_span(src)
        needs_vocabulary(src.kind, src.args, info, training or role != "data", "the spec's data", span,
                          program.path)
        ds = D.load_source(src.kind, src.args, spec_dir(program), span=span, spec_path=program.path,
                           float_dtype=dtype, info=info,
                           fit_rows=_training_rows(program) if training and role == "data" else None)
    D.check_dataset(ds)
    ds = D.fit_to_input(ds, tuple(inp.shape), inp.dtype, dtype, input_name=inp.name, span=span,
                        spec_path=program.path)
    check_token_ids(program, inp.name, ds.x, ds.name, ds.path)
    check_labels_fit(program, ds.y, ds.labels, ds.name, ds.path)
    return ds


def image_defaults(program: Program) -> dict | None:
    """The size and color of images read without a run's data.json (``--data 'images("f")'``,
    ``predict --input``): the spec's images() source, else the model's input when it is
    [1, H, W] or [3, H, W]; None otherwise."""
    train = program.train
    if train is not None and train.data is not None and train.data.kind == "images":
        return {"size": list(train.data.args["size"]), "color": train.data.args["color"]}
    shape = program.model.inputs[0].shape if len(program.model.inputs) == 1 else []
    if len(shape) == 3 and shape[0] in (1, 3) and program.model.inputs[0].dtype == "float32":
        return {"size": list(shape[1:]), "color": "grayscale" if shape[0] == 1 else "rgb"}
    return None


def _training_rows(program: Program):
    """``n -> the rows of the training split`` under the train block's validation fraction (what a
    text vocabulary is fitted on), or None when there is no split (every row trains)."""
    train = program.train
    if train is None or not isinstance(train.validation, float) or train.validation <= 0:
        return None
    fraction, seed = train.validation, train.seed
    return lambda n: D.split_indices(n, fraction, seed)[1]


def needs_vocabulary(kind: str, args: dict, info, training: bool, what: str, span, spec_path) -> None:
    """E716: evaluating a text model needs the vocabulary it was trained with (the run's data.json):
    fitting one on the evaluation data would give its words other ids."""
    if training or kind != "csv" or args.get("text") is None or (info is not None and info.text is not None):
        return
    where = dict(span=span, path=spec_path) if span is not None else {}
    raise NncError.single(
        "E716", f"{what} is text (csv(text=\"{args['text']}\")), but there is no vocabulary of the run: no "
        f"{DATA_JSON} beside the weights", **where,
        hint=f"use the weights inside the run directory, where `nnc train` wrote {DATA_JSON} with the vocabulary, "
             "or train again")


def check_labels_fit(program: Program, y, labels: list[str] | None, what: str, path: str | None = None) -> None:
    """Class ids that came from string labels must fit the model's output and loss: E740 that names
    the label the user wrote (the runtime's own check can only name the id it became)."""
    train = program.train
    if not labels or y is None or train is None or len(program.model.outputs) != 1:
        return
    y = np.asarray(y)
    if y.dtype.kind not in "iu" or not y.size:
        return
    kind = train.loss["kind"]
    shape = tuple(program.model.outputs[0].shape)
    if kind == "cross_entropy" and shape and isinstance(shape[-1], int):
        classes = shape[-1]
        if int(y.max()) >= classes:
            ids = [int(i) for i in np.unique(y[y >= classes]) if i < len(labels)]
            which = (f'label "{labels[ids[0]]}" (class id {ids[0]}) has' if len(ids) == 1 else
                     f"labels {D.quoted_list([labels[i] for i in ids], 5)} (class ids {ids[0]}..{ids[-1]}) have")
            raise NncError.single(
                "E740", f"{what}: {len(labels)} labels, but the output has {classes} classes: {which} no "
                f"output unit", path=path,
                hint=f"the last layer needs {len(labels)} units, one per label: {D.quoted_list(labels)}")
    elif kind == "binary_cross_entropy" and int(y.max()) > 1:
        raise NncError.single(
            "E740", f"{what}: binary_cross_entropy takes two classes, but the targets have {len(labels)} labels: "
            f"{D.quoted_list(labels)}", path=path,
            hint=f'with two labels the first in sorted order ("{labels[0]}") is 0 and the second 1; for more '
                 f"classes use cross_entropy with a last layer of {len(labels)} units")


DATA_JSON = "data.json"


def data_info_of(weights: str | Path) -> D.DataInfo | None:
    """The data.json beside a weights file (what the run was trained on), or None if there is none.
    A data.json that cannot be read or does not parse is E738."""
    p = Path(weights).expanduser().parent / DATA_JSON
    if not p.is_file():
        return None
    shown = str(p)
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise NncError.single("E738", f"cannot read {shown}: {getattr(exc, 'strerror', None) or exc}", path=shown,
                              hint="it is written by `nnc train`; delete it (columns are then taken by position "
                                   "and labels per file) or train the run again") from None
    return D.DataInfo.from_dict(obj, shown)


def write_data_info(out_dir: Path, ds: D.Dataset) -> D.DataInfo:
    """Write ``out_dir/data.json`` for a run trained on ``ds`` (always, so it is never stale)."""
    info = D.DataInfo.of(ds)
    atomic_write_text(Path(out_dir) / DATA_JSON, json.dumps(info.to_dict(), indent=2) + "\n", code="E764")
    return info


def predicted_labels(out: np.ndarray, labels: list[str] | None) -> list[str] | None:
    """The label of each row of a classifier's output: argmax of one unit per label, or one sigmoid
    unit thresholded at 0.5 with two labels (as the metrics do). None when the output is not that."""
    if not labels or out.ndim < 1:
        return None
    flat = out.reshape(len(out), int(np.prod(out.shape[1:], dtype=np.int64)))
    if flat.shape[1] == len(labels) and len(labels) > 1:
        return [labels[i] for i in flat.argmax(axis=1)]
    if flat.shape[1] == 1 and len(labels) == 2:
        return [labels[int(v > 0.5)] for v in flat[:, 0]]
    return None


def check_token_ids(program: Program, input_name: str, x: np.ndarray, what: str, path: str | None = None) -> None:
    """Token ids must index every embedding that reads them: checked before any training (E731)."""
    for node in program.model.embeddings_reading(input_name):  # directly or through identity & co.
        if x.size:
            bad = np.flatnonzero((x < 0).any(axis=tuple(range(1, x.ndim))) |
                                 (x >= node.attrs["vocab"]).any(axis=tuple(range(1, x.ndim))))
            if bad.size:
                row = int(bad[0])
                ids = x[row][(x[row] < 0) | (x[row] >= node.attrs["vocab"])]
                raise NncError.single(
                    "E731", f"{what}: example {row} has token id {int(ids.flat[0])}, outside [0, {node.attrs['vocab']}) "
                    f"of `{node.id}` ({bad.size} example{'s' if bad.size != 1 else ''} out of range)", path=path,
                    hint=f"raise the embedding's vocab above {int(x.max())}, or fix the token ids")


def source_span(src):
    from .errors import SourceSpan
    s = src.span
    return SourceSpan(s.line, s.column, s.end_line, s.end_column) if s else None


