"""ONNX export: weights, opset, the model in memory (``nnc.onnx.emitters``), verification
(``nnc.onnx.verify``) and the atomic write. It sits above the compiler (the IR) and the runtime
(default weights, the reference outputs).

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

Large models (contract 6.3): when the weights exceed :data:`EXTERNAL_DATA_THRESHOLD` (just under
protobuf's 2 GiB limit for one message), the model is written as ``<name>.onnx`` plus ONNX external
data ``<name>.onnx.data`` beside it, which the ``.onnx`` names by that relative name so the pair can
be moved together. The large arrays never enter a protobuf message (``build_model(external=...)``).
With verification the pair is first written into a private temporary directory beside the output and
verified from there (the checker on the path, onnxruntime loading the data from beside the model;
shape inference needs no weights and runs on the proto); only then is the data file written into
place, then the ``.onnx``, each with :func:`nnc.util.atomic_writer`. A failed verification leaves no
new file and replaces nothing.

A self-contained model written over ``<name>.onnx`` whose previous version used ``<name>.onnx.data``
removes that data file after the new ``.onnx`` is in place (it would be an orphan that no model
reads); a ``.data`` file the old model did not reference is left alone.

Error codes: E801 an op the opset cannot express, E802 an opset outside the supported range, E803 a
failed verification (names the check, the output and the largest difference), E804 the output path
cannot be written. E805 (a model too large for one ONNX file) is retired: such a model now gets
external data, which has no size limit of its own.
"""
from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import NncError
from ..compiler.ir import ModelIR, Program
from .emitters import Export
from .verify import verify_export

PROTOBUF_LIMIT = 2**31 - 1          # bytes: the largest protobuf message, so the largest .onnx file
# Weights (bytes) above which the model is written with external data: 64 MiB under the limit leave
# room for the graph, the small constants and the metadata (the spec's source is at most 1 MiB).
# Tests lower it to exercise the external-data path on small models.
EXTERNAL_DATA_THRESHOLD = PROTOBUF_LIMIT - 64 * 2**20
_CHUNK = 64 * 2**20                 # bytes per write() of the external data


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

    from .emitters import MIN_OPSET, max_known_opset
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
    from .emitters import MIN_OPSET
    return range(MIN_OPSET, max_supported_opset() + 1)


def resolve_opset(model: ModelIR, opset: int | None) -> int:
    """``opset`` checked against the supported range and the model's ops (E801 / E802)."""
    import onnxruntime as ort

    from .emitters import check_opset
    top = max_supported_opset()
    chosen = top if opset is None else int(opset)
    check_opset(model, chosen, top, why_max=f" (the newest that onnxruntime {ort.__version__} supports)")
    return chosen


# ----------------------------------------------------------------------------------------------
# weights

def resolve_weights(program: Program, weights: Any = None) -> dict[str, np.ndarray]:
    """float32 weights for ``program.model``: seeded initialisation, an ``.npz`` path, or a dict."""
    from ..runtime.graph import Graph, weight_shapes
    from ..runtime.weights import load_weights, validate_weights
    model = program.model
    if weights is None:
        return Graph(model, "float32").init_weights(program.seed)
    if isinstance(weights, (str, os.PathLike)):
        return load_weights(weights, model, "float32")
    if isinstance(weights, dict):
        return validate_weights(dict(weights), weight_shapes(model), "weights",
                                np.dtype("float32"))
    raise TypeError(f"weights must be None, a path or a dict, not {type(weights).__name__}")


# ----------------------------------------------------------------------------------------------
# building

def weights_bytes(weights: dict[str, np.ndarray]) -> int:
    return sum(int(np.asarray(a).nbytes) for a in weights.values())


def build(program: Program, weights: Any = None, opset: int | None = None, *,
          data_location: str | None = None, labels: list[str] | None = None) -> Export:
    """The ONNX model of ``program`` in memory (not verified, not written).

    Weights over :data:`EXTERNAL_DATA_THRESHOLD` bytes make a model with external data named
    ``data_location`` (default ``<model>.onnx.data``), whose arrays are in ``Export.blobs``.
    """
    from .emitters import build_model
    w = resolve_weights(program, weights)
    external = None
    if weights_bytes(w) > EXTERNAL_DATA_THRESHOLD:
        external = data_location or f"{program.model.name}.onnx.data"
    try:
        chosen = resolve_opset(program.model, opset)
        proto, values, blobs, skeleton = build_model(program, w, chosen, max_opset=max_supported_opset(),
                                                     external=external, labels=labels)
    except NncError as err:
        raise err.with_path(program.path, program.source) from None
    if not blobs:       # no array big enough to move out (only with a lowered threshold)
        external = None
    return Export(proto, chosen, w, values, data_location=external, blobs=blobs, skeleton=skeleton)


# ----------------------------------------------------------------------------------------------
# writing

def write(proto, out_path: Path) -> None:
    """Atomically write ``proto`` (a self-contained model, or its bytes) to ``out_path``: E804 if it
    cannot."""
    from ..util import atomic_writer
    data = proto if isinstance(proto, bytes) else proto.SerializeToString()
    with atomic_writer(Path(out_path), "wb", code="E804") as fh:
        fh.write(data)


def write_data(fh, blobs: list[tuple[int, np.ndarray]]) -> None:
    """The external data file: each array's bytes at its offset, zeros in the alignment gaps."""
    pos = 0
    for offset, arr in blobs:
        if offset > pos:
            fh.write(bytes(offset - pos))
        flat = memoryview(arr.reshape(-1)).cast("B")
        for start in range(0, len(flat), _CHUNK):
            fh.write(flat[start:start + _CHUNK])
        pos = offset + arr.nbytes


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} bytes"


def _cannot_write(shown: str, exc: OSError) -> NncError:
    return NncError.single("E804", f"cannot write `{shown}`: {exc.strerror or exc}", path=shown,
                           hint="free some disk space or choose another path")


def _write_external(exp: Export, program: Program, out_path: Path, data_path: Path, verify: bool) -> None:
    """Write (and first verify) a model with external data: ``data_path`` first, then the model.

    Verification runs on a copy of the pair in a private directory beside ``data_path`` (the same
    file system), so that nothing at the destination changes unless it passes."""
    from ..util import atomic_writer
    model_bytes = exp.serialized()
    if not verify:
        with atomic_writer(data_path, "wb", code="E804") as fh:
            write_data(fh, exp.blobs)
        with atomic_writer(out_path, "wb", code="E804") as fh:
            fh.write(model_bytes)
        return
    try:
        stage = Path(tempfile.mkdtemp(prefix=f".{data_path.name}.", suffix=".tmp", dir=str(data_path.parent)))
    except OSError as exc:
        raise _cannot_write(str(out_path), exc) from None
    try:
        staged = stage / data_path.name.removesuffix(".data")
        staged_data = stage / data_path.name
        try:
            with open(staged_data, "wb") as fh:
                write_data(fh, exp.blobs)
            staged.write_bytes(model_bytes)
        except OSError as exc:
            raise _cannot_write(str(data_path), exc) from None
        try:
            verify_export(exp, program, path=staged)
        except NncError as err:
            raise err.with_path(program.path) from None
        with atomic_writer(data_path, "wb", code="E804") as fh, open(staged_data, "rb") as src:
            shutil.copyfileobj(src, fh, _CHUNK)
        with atomic_writer(out_path, "wb", code="E804") as fh:
            fh.write(model_bytes)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _orphaned_data(target: Path, data_path: Path) -> bool:
    """Is ``data_path`` a regular file holding external data of the model at ``target`` (which is
    about to be replaced by a self-contained model)?"""
    if data_path.is_symlink() or not data_path.is_file() or not target.is_file():
        return False
    try:
        import onnx
        old = onnx.load(str(target), load_external_data=False)
    except Exception:  # noqa: BLE001 - not an ONNX model: nothing of ours
        return False
    return any(e.key == "location" and e.value == data_path.name
               for t in old.graph.initializer for e in t.external_data)


def export_onnx(program: Program, out_path, weights=None, opset: int | None = None, verify: bool = True,
                labels: list[str] | None = None) -> str:
    """Export ``program`` to ``out_path`` (an ONNX file); returns a one-line report.

    ``weights``: None (initialised from the spec's seed), a path to an ``.npz`` weights file, or a
    dict ``"<layer>.<param>" -> array``. ``opset``: None for the newest supported. With ``verify``
    the model is checked (checker, shapes, onnxruntime vs NumPy) before anything is written.
    ``labels``: a classifier's id -> label map, kept in the metadata (``labels``, a JSON list).
    A model whose weights exceed :data:`EXTERNAL_DATA_THRESHOLD` bytes also writes its external data
    beside the file ``out_path`` leads to (through a symbolic link), named after it plus ``.data``.
    """
    from ..util import resolve_output
    out_path = Path(out_path)
    target, _ = resolve_output(out_path, "E804")     # a bad -o fails before the work
    data_path = target.with_name(target.name + ".data")
    exp = build(program, weights, opset, data_location=data_path.name, labels=labels)
    if exp.data_location is None:
        if verify:
            try:
                verify_export(exp, program)
            except NncError as err:
                raise err.with_path(program.path) from None
        orphan = _orphaned_data(target, data_path)
        write(exp.serialized(), out_path)
        if orphan:
            with contextlib.suppress(OSError):
                os.unlink(data_path)
        extra = ""
    else:
        resolve_output(data_path, "E804")            # e.g. a directory of that name
        _write_external(exp, program, out_path, data_path, verify)
        shown = data_path if out_path.is_symlink() else out_path.with_name(data_path.name)
        extra = f"; weights in {shown}, {_size(exp.data_bytes)}"
    head = (f"wrote {out_path} (opset {exp.opset}, {exp.node_count} node{'s' * (exp.node_count != 1)}, "
            f"{program.model.params:,} parameters{extra})")
    if not verify:
        return head + "; not verified"
    return head + f"; verified: checker, shapes, onnxruntime max |diff| {exp.max_diff:.1e}"
