"""ONNX export with verification: the layer above the compiler (which emits the graph,
``nnc.compiler.onnx_export``) and the runtime (which supplies weights and the reference outputs).

    report = export_onnx(program, "digits_cnn.onnx")            # seeded weights, newest opset
    report = export_onnx(program, "m.onnx", weights="w.npz", opset=17)

Steps: weights (``None``: initialised from the spec's seed; a path: ``load_weights``, whose E750-E754
errors pass through; a dict: validated the same way) -> opset (default: the newest that both onnx and
the installed onnxruntime support) -> ModelProto -> verification (unless ``verify=False``) -> an
atomic write. Verification, all before the file is written:

1. ``onnx.checker.check_model(full_check=True)``;
2. strict shape inference, whose inferred shapes of the graph outputs and of every value that holds
   an IR node's result must equal the IR's (batch axis symbolic ``N``);
3. onnxruntime vs the NumPy runtime (``Graph.forward``, float32, inference) on a seeded random batch,
   ``atol=1e-5, rtol=1e-4``, shapes and dtypes exact.

Error codes: E801 an op the opset cannot express, E802 an opset outside the supported range, E803 a
failed verification (names the check, the output and the largest difference), E804 the output path
cannot be written, E805 a model too large for one ONNX file (protobuf's 2 GiB limit).
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .compiler.errors import NncError
from .compiler.ir import ModelIR, Program

ATOL, RTOL = 1e-5, 1e-4
VERIFY_BATCH = 5
_PROTOBUF_LIMIT = 2**31 - 1


# ----------------------------------------------------------------------------------------------
# opsets

@functools.lru_cache(maxsize=1)
def max_supported_opset() -> int:
    """The newest ai.onnx opset that both the onnx package and the installed onnxruntime accept.

    onnx may know opsets that onnxruntime does not (yet): probe onnxruntime with a one-node model,
    newest first. Cached for the process.
    """
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from .compiler.onnx_export import MIN_OPSET, max_known_opset
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    for opset in range(max_known_opset(), MIN_OPSET - 1, -1):
        graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
        ids = [helper.make_opsetid("", opset)]
        m = helper.make_model(graph, opset_imports=ids, ir_version=helper.find_min_ir_version_for(ids))
        try:
            ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        except Exception:  # noqa: BLE001 - any refusal means "not this opset"
            continue
        return opset
    return MIN_OPSET  # pragma: no cover - onnxruntime older than opset 11


def supported_opsets() -> range:
    """Every opset ``export_onnx`` accepts: MIN_OPSET ... the newest onnxruntime supports."""
    from .compiler.onnx_export import MIN_OPSET
    return range(MIN_OPSET, max_supported_opset() + 1)


def resolve_opset(model: ModelIR, opset: int | None) -> int:
    """``opset`` checked against the supported range and the model's ops (E801 / E802)."""
    import onnxruntime as ort

    from .compiler.onnx_export import check_opset
    top = max_supported_opset()
    chosen = top if opset is None else int(opset)
    check_opset(model, chosen, top, why_max=f" (the newest that onnxruntime {ort.__version__} supports)")
    return chosen


# ----------------------------------------------------------------------------------------------
# weights

def resolve_weights(program: Program, weights: Any = None) -> dict[str, np.ndarray]:
    """float32 weights for ``program.model``: seeded initialisation, an ``.npz`` path, or a dict."""
    from .runtime.graph import Graph
    from .runtime.weights import load_weights, validate_weights
    model = program.model
    if weights is None:
        return Graph(model, "float32").init_weights(program.seed)
    if isinstance(weights, (str, os.PathLike)):
        return load_weights(weights, model, "float32")
    if isinstance(weights, dict):
        return validate_weights(dict(weights), Graph(model, "float32").weight_shapes(), "weights",
                                np.dtype("float32"))
    raise TypeError(f"weights must be None, a path or a dict, not {type(weights).__name__}")


# ----------------------------------------------------------------------------------------------
# building

@dataclass
class Export:
    """An exported model in memory, before it is written."""

    proto: Any                          # onnx.ModelProto
    opset: int
    weights: dict[str, np.ndarray]
    values: dict[str, str]              # IR value (input name / node id) -> ONNX value name
    checks: list[str] = field(default_factory=list)
    max_diff: float | None = None

    @property
    def node_count(self) -> int:
        return len(self.proto.graph.node)


def build(program: Program, weights: Any = None, opset: int | None = None) -> Export:
    """The ONNX model of ``program`` in memory (not verified, not written)."""
    from .compiler.onnx_export import build_model
    w = resolve_weights(program, weights)
    try:
        chosen = resolve_opset(program.model, opset)
        proto, values = build_model(program, w, chosen, max_opset=max_supported_opset())
    except NncError as err:
        raise err.with_path(program.path, program.source) from None
    return Export(proto, chosen, w, values)


# ----------------------------------------------------------------------------------------------
# verification

def _fail(message: str, hint: str | None = None) -> NncError:
    return NncError.single("E803", message, hint=hint or "this is a bug in nnc's ONNX exporter; please "
                           "report it with the spec (pass --no-verify to write the model anyway)")


def random_inputs(model: ModelIR, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A seeded random batch: standard normal floats; token ids uniform in [0, vocab) of the
    smallest embedding that reads the input (or [0, 10))."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for inp in model.inputs:
        shape = (batch, *inp.shape)
        if inp.dtype == "int64":
            vocabs = [int(n.attrs["vocab"]) for n in model.nodes if n.op == "embedding" and inp.name in n.inputs]
            out[inp.name] = rng.integers(0, min(vocabs) if vocabs else 10, size=shape, dtype=np.int64)
        else:
            out[inp.name] = rng.standard_normal(shape).astype(np.float32)
    return out


def reference_outputs(program: Program, weights: dict[str, np.ndarray],
                      inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The NumPy runtime's outputs (float32, inference)."""
    from .runtime.graph import Graph
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
    that holds an IR node's result (E803 otherwise)."""
    import onnx
    try:
        inferred = onnx.shape_inference.infer_shapes(exp.proto, check_type=True, strict_mode=True)
    except Exception as exc:  # noqa: BLE001 - onnx raises several types
        raise _fail(f"ONNX shape inference rejects the exported model: {exc}") from None
    found: dict[str, tuple[int, list]] = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        tt = vi.type.tensor_type
        dims = [d.dim_param if d.HasField("dim_param") else (d.dim_value if d.HasField("dim_value") else None)
                for d in tt.shape.dim] if tt.HasField("shape") else None
        found[vi.name] = (tt.elem_type, dims)
    from .compiler.onnx_export import BATCH, elem_type
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


def run_onnxruntime(proto, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    try:
        sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        return dict(zip(names, sess.run(names, inputs)))
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise _fail(f"onnxruntime cannot run the exported model: {exc}") from None


def verify_export(exp: Export, program: Program, *, batch: int = VERIFY_BATCH, seed: int = 0) -> Export:
    """Checker, shapes and onnxruntime parity (see the module docstring); records what was checked."""
    import onnx
    try:
        onnx.checker.check_model(exp.proto, full_check=True)
    except Exception as exc:  # noqa: BLE001
        raise _fail(f"onnx.checker rejects the exported model: {exc}") from None
    exp.checks.append("checker")
    check_shapes(exp, program.model)
    exp.checks.append("shapes")
    inputs = random_inputs(program.model, batch, seed)
    want = reference_outputs(program, exp.weights, inputs)
    got = run_onnxruntime(exp.proto, inputs)
    exp.max_diff = max((compare(o.name, got[o.name], want[o.name]) for o in program.model.outputs), default=0.0)
    exp.checks.append("onnxruntime")
    return exp


# ----------------------------------------------------------------------------------------------
# writing

def write(proto, out_path: Path) -> None:
    """Atomically write ``proto`` to ``out_path`` (temp file beside it + rename): E804 if it cannot."""
    from .util import atomic_writer
    size = proto.ByteSize()
    if size > _PROTOBUF_LIMIT:
        raise NncError.single("E805", f"the model is {size / 2**30:.1f} GiB, more than the 2 GiB that one "
                              "ONNX file can hold", path=str(out_path), hint="use a smaller model")
    data = proto.SerializeToString()
    with atomic_writer(Path(out_path), "wb", code="E804") as fh:
        fh.write(data)


def export_onnx(program: Program, out_path, weights=None, opset: int | None = None, verify: bool = True) -> str:
    """Export ``program`` to ``out_path`` (an ONNX file); returns a one-line report.

    ``weights``: None (initialised from the spec's seed), a path to an ``.npz`` weights file, or a
    dict ``"<layer>.<param>" -> array``. ``opset``: None for the newest supported. With ``verify``
    the model is checked (checker, shapes, onnxruntime vs NumPy) before anything is written.
    """
    out_path = Path(out_path)
    exp = build(program, weights, opset)
    if verify:
        try:
            verify_export(exp, program)
        except NncError as err:
            raise err.with_path(program.path) from None
    write(exp.proto, out_path)
    head = (f"wrote {out_path} (opset {exp.opset}, {exp.node_count} nodes, "
            f"{program.model.params:,} parameters)")
    if not verify:
        return head + "; not verified"
    return head + f"; verified: checker, shapes, onnxruntime max |diff| {exp.max_diff:.1e}"
