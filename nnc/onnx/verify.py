"""Verification of an exported model, before anything is written:

1. ``onnx.checker.check_model(full_check=True)``;
2. strict shape inference, whose inferred shapes of the graph outputs and of every value that holds
   an IR node's result must equal the IR's (batch axis symbolic ``N``);
3. onnxruntime vs the NumPy runtime (``Graph.forward``, float32, inference) on a seeded random batch,
   ``atol=1e-5, rtol=1e-4``, shapes and dtypes exact.

A failed check is E803, naming the check, the output and the largest difference.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import NncError
from ..compiler.ir import ModelIR, Program

from .emitters import Export

ATOL, RTOL = 1e-5, 1e-4
VERIFY_BATCH = 5


def _fail(message: str, hint: str | None = None) -> NncError:
    return NncError.single("E803", message, hint=hint or "this is a bug in nnc's ONNX exporter; please "
                           "report it with the spec (pass --no-verify to write the model anyway)")


def token_vocab(model: ModelIR, value: str) -> int | None:
    """The smallest ``vocab`` of the embeddings that read the int64 value ``value``, directly or
    through ops that pass the ids on (:meth:`ModelIR.embeddings_reading`); None when none does."""
    return min((int(n.attrs["vocab"]) for n in model.embeddings_reading(value)), default=None)


def random_inputs(model: ModelIR, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A seeded random batch: standard normal floats; token ids uniform in [0, vocab) of the
    smallest embedding that reads the input, directly or through ops that pass the ids on
    unchanged (:func:`token_vocab`), else in [0, 10)."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for inp in model.inputs:
        shape = (batch, *inp.shape)
        if inp.dtype == "int64":
            vocab = token_vocab(model, inp.name)
            out[inp.name] = rng.integers(0, vocab if vocab is not None else 10, size=shape, dtype=np.int64)
        else:
            out[inp.name] = rng.standard_normal(shape).astype(np.float32)
    return out


def reference_outputs(program: Program, weights: dict[str, np.ndarray],
                      inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The NumPy runtime's outputs (float32, inference)."""
    from ..runtime.graph import Graph
    return Graph(program.model, "float32").forward(inputs, weights, training=False)


def compare(name: str, got: np.ndarray, want: np.ndarray, who: str = "onnxruntime",
            atol: float = ATOL, rtol: float = RTOL) -> float:
    """Max |got - want|; E803 if shapes, dtypes or values (beyond atol + rtol * |want|) differ."""
    if got.shape != want.shape:
        raise _fail(f"{who} gives output `{name}` the shape {list(got.shape)}, the NumPy runtime "
                    f"{list(want.shape)}")
    if got.dtype != want.dtype:
        raise _fail(f"{who} gives output `{name}` the dtype {got.dtype}, the NumPy runtime {want.dtype}")
    if got.size == 0:
        return 0.0
    g, w = got.astype(np.float64), want.astype(np.float64)
    diff = np.abs(g - w)
    same_nan = np.isnan(g) & np.isnan(w)
    diff = np.where(same_nan | (g == w), 0.0, diff)      # equal infinities and NaNs agree
    bad = ~(diff <= atol + rtol * np.abs(w))
    if np.any(bad):
        excess = np.where(bad, np.nan_to_num(diff, nan=np.inf), -1.0)
        where = np.unravel_index(int(np.argmax(excess)), diff.shape)
        raise _fail(f"{who} and the NumPy runtime disagree on output `{name}`: max |diff| "
                    f"{float(np.nanmax(np.nan_to_num(diff, nan=np.inf))):.3g} at {list(map(int, where))} "
                    f"({who} {got[where]!r}, NumPy {want[where]!r}); tolerance atol={atol:g}, rtol={rtol:g}")
    return float(diff.max())


def check_shapes(exp: Export, model: ModelIR) -> None:
    """Strict ONNX shape inference must reproduce the IR's shapes: graph outputs and every value
    that holds an IR node's result (E803 otherwise). It runs on ``exp.skeleton``, the model with
    its large arrays left out (shape inference reads only their dims; the small constants whose
    values it needs, such as Reshape's shape, are all there), so a multi-GB model is not copied."""
    import onnx
    try:
        inferred = onnx.shape_inference.infer_shapes(exp.skeleton if exp.skeleton is not None else exp.proto,
                                                     check_type=True, strict_mode=True)
    except Exception as exc:  # noqa: BLE001 - onnx raises several types
        raise _fail(f"ONNX shape inference rejects the exported model: {exc}") from None
    found: dict[str, tuple[int, list]] = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        tt = vi.type.tensor_type
        dims = [d.dim_param if d.HasField("dim_param") else (d.dim_value if d.HasField("dim_value") else None)
                for d in tt.shape.dim] if tt.HasField("shape") else None
        found[vi.name] = (tt.elem_type, dims)
    from .emitters import BATCH, elem_type
    inputs = {i.name for i in model.inputs}
    wanted: dict[str, tuple[str, list, str]] = {}
    for node in model.nodes:
        name = exp.values[node.id]
        if name not in inputs:      # elided nodes (dropout, identity) hold an input's value
            wanted[name] = (node.dtype, [BATCH, *node.shape], node.id)
    for o in model.outputs:
        wanted[o.name] = (o.dtype, [BATCH, *o.shape], f"output `{o.name}`")
    for name, (dtype, shape, what) in wanted.items():
        if name in inputs:
            continue
        if name not in found:
            raise _fail(f"ONNX shape inference found no shape for `{name}` ({what})")
        elem, dims = found[name]
        if elem != elem_type(dtype) or dims != shape:
            raise _fail(f"ONNX shape inference gives `{name}` ({what}) the shape {dims} (elem type {elem}), "
                        f"the IR {shape} ({dtype})")


def run_onnxruntime(model, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run ``model``: a ModelProto, its bytes, or the path of a model file (with its external data
    beside it)."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    if isinstance(model, (str, os.PathLike)):
        source = os.fspath(model)
    else:
        source = model if isinstance(model, bytes) else model.SerializeToString()
    try:
        sess = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        return dict(zip(names, sess.run(names, inputs)))
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise _fail(f"onnxruntime cannot run the exported model: {exc}") from None


def verify_export(exp: Export, program: Program, *, path: Path | None = None, batch: int = VERIFY_BATCH,
                  seed: int = 0) -> Export:
    """Checker, shapes and onnxruntime parity (see the module docstring); records what was checked.

    ``path``: verify the model file written there instead of ``exp.proto`` (required for a model
    with external data: its data file must be beside it, under ``exp.data_location``)."""
    import onnx
    model = os.fspath(path) if path is not None else exp.serialized()
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # noqa: BLE001
        raise _fail(f"onnx.checker rejects the exported model: {exc}") from None
    exp.checks.append("checker")
    check_shapes(exp, program.model)
    exp.checks.append("shapes")
    inputs = random_inputs(program.model, batch, seed)
    want = reference_outputs(program, exp.weights, inputs)
    got = run_onnxruntime(model, inputs)
    exp.max_diff = max((compare(o.name, got[o.name], want[o.name]) for o in program.model.outputs), default=0.0)
    exp.checks.append("onnxruntime")
    return exp
