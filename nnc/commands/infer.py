"""``nnc evaluate`` and ``nnc predict``: trained weights on data."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ..api import Model
from ..compiler.errors import NncError
from ..compiler.ir import Program
from ..dataload import load_dataset, train_spec
from ..runtime import data as D
from ..runtime.weights import load_weights
from ..util import atomic_write_text, atomic_write_with
from .train import plural


def evaluate_command(program: Program, args) -> int:
    spec = train_spec(program)
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
        atomic_write_text(path, text, code="E765")
        print(f"wrote {path} ({plural(len(arr), 'row')})", file=sys.stderr)
        return 0
    else:
        raise NncError.single("E765", f"cannot write predictions to `{path}`: unknown file type",
                              hint="use a .npy, .npz or .csv output file")
    atomic_write_with(path, save, code="E765")
    print(f"wrote {path} ({plural(len(x), 'row')})", file=sys.stderr)
    return 0
