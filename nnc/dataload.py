"""Loading the data a spec names for training, evaluation and prediction: the layer above the data
sources (``nnc.runtime.data``) that knows the program (its train block, its input, its spec's folder).
Used by the Python API and the CLI verbs alike.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .compiler.errors import NncError
from .compiler.ir import Program
from .runtime import data as D


def spec_dir(program: Program) -> Path:
    return Path(program.path).resolve().parent if program.path else Path.cwd()


def train_spec(program: Program):
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
        train = train_spec(program)
        src = train.data if role == "data" else train.validation
        if src is None:
            raise NncError.single("E607", "no training data: the train block has no `data`", path=program.path,
                                  hint='add `data = dataset("iris")` (or csv(...)/npz(...)), or pass --data')
        span = _source_span(src)
        ds = D.load_source(src.kind, src.args, spec_dir(program), span=span, spec_path=program.path,
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


