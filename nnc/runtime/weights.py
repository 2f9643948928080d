"""Weights files: ``.npz`` archives keyed ``<layer>.<param>`` with PyTorch's names and layouts.

Loading validates every key and shape against the model (the weights contract, section 4.1 of
the language reference) and never unpickles anything (``allow_pickle=False``). Saving is atomic.

Error codes: E750 unreadable weights file (missing, not an npz, corrupt, pickled objects), E751
missing keys, E752 unexpected keys, E753 wrongly shaped arrays, E754 non-numeric or non-finite
values.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from ..errors import NncError, did_you_mean, fmt_shape
from ..util import atomic_write_with


def read_npz(path: Path, what: str = "weights file") -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` file (no pickles), or an E750 error naming the file."""
    path = Path(path)
    if not path.exists():
        raise NncError.single("E750", f"{what} `{path}` does not exist", path=str(path),
                              hint=f"looked for {path.resolve()}")
    hint = "pass a file written by `nnc train` or numpy.savez"
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
    except OSError as exc:
        raise NncError.single("E750", f"cannot read {what} `{path}`: {exc.strerror or exc}", path=str(path),
                              hint=hint) from None
    if magic.startswith(b"\x93NUMPY"):
        raise NncError.single("E750", f"{what} `{path}` is a single .npy array, not an .npz archive",
                              path=str(path), hint="save weights with numpy.savez(path, **arrays)")
    if not magic.startswith(b"PK"):
        raise NncError.single("E750", f"{what} `{path}` is not an .npz archive", path=str(path), hint=hint)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise NncError.single("E750", f"{what} `{path}` holds pickled Python objects, which nnc never loads",
                                  path=str(path), hint="save plain numeric arrays with numpy.savez") from None
        raise NncError.single("E750", f"{what} `{path}` is not a valid .npz archive: {exc}", path=str(path),
                              hint=hint) from None
    except (OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise NncError.single("E750", f"cannot read {what} `{path}`: {exc}", path=str(path), hint=hint) from None


def validate_weights(arrays: dict[str, np.ndarray], expected: dict[str, tuple[tuple[int, ...], bool]],
                     path: str, dtype) -> dict[str, np.ndarray]:
    """Check keys and shapes against ``expected`` (key -> (shape, trainable)); cast to ``dtype``."""
    diags = []
    if any(k.startswith("weights/") for k in arrays) and "meta" in arrays:
        raise NncError.single("E750", f"`{path}` is a training checkpoint, not a weights file", path=path,
                              hint="use weights.npz from the same run directory, or continue the run with --resume")
    if arrays and expected and not set(arrays) & set(expected):
        shown = ", ".join(sorted(arrays)[:4]) + (", ..." if len(arrays) > 4 else "")
        raise NncError.single("E751", f"`{path}` holds none of the model's {len(expected)} weights: it was saved "
                              f"from a different model (its keys: {shown})", path=path,
                              hint="pass the weights of this spec's model (`nnc summary` lists its layers)")
    missing = [k for k in expected if k not in arrays]
    extra = [k for k in arrays if k not in expected]
    errors: list[NncError] = []
    for k in missing:
        errors.append(NncError.single("E751", f"weights file has no `{k}` (expected shape {fmt_shape(expected[k][0])})",
                                      path=path, hint=_renamed(k, expected[k][0], {e: arrays[e].shape for e in extra})
                                      or "the file was saved from a different model; retrain or fix the spec"))
    for k in extra:
        errors.append(NncError.single("E752", f"weights file has a key `{k}` that the model does not have",
                                      path=path, hint=_renamed(k, arrays[k].shape, {m: expected[m][0] for m in missing})
                                      or "keys are <layer>.<param>; see `nnc summary` for the layer names"))
    out: dict[str, np.ndarray] = {}
    for k, (shape, _) in expected.items():
        if k not in arrays:
            continue
        a = arrays[k]
        if a.dtype.kind in "iub":  # NOTE: integer weights are a wrong file (or a wrong key), never a model's
            errors.append(NncError.single("E754", f"`{k}` holds {a.dtype} values; weights are floating-point numbers",
                                          path=path, hint="save float arrays (e.g. w.astype(np.float32)); "
                                          "an integer array is not a trained weight"))
            continue
        if a.dtype.kind != "f":
            errors.append(NncError.single("E754", f"`{k}` holds {a.dtype} values, not numbers", path=path))
            continue
        if tuple(a.shape) != tuple(shape):
            errors.append(NncError.single("E753", f"`{k}` has shape {fmt_shape(a.shape)}, the model needs {fmt_shape(shape)}",
                                          path=path, hint="the layer's size in the spec differs from the "
                                          "model these weights were trained for"))
            continue
        if not np.all(np.isfinite(a)):
            errors.append(NncError.single("E754", f"`{k}` contains NaN or infinite values", path=path))
            continue
        out[k] = np.ascontiguousarray(a, dtype=dtype)
    if errors:
        for e in errors:
            diags.extend(e.diagnostics)
        raise NncError(diags)
    return out


def _renamed(key: str, shape, others: dict[str, tuple]) -> str | None:
    """A "did you mean" only where it is plausible: the same parameter of a layer with the same
    shape (a renamed layer). A key of another kind of layer is never suggested."""
    param = key.rsplit(".", 1)[-1]
    same = [o for o, s in others.items() if o.rsplit(".", 1)[-1] == param and tuple(s) == tuple(shape)]
    if not same:
        return None
    best = did_you_mean(key, same) or f"did you mean `{same[0]}`?"
    return f"{best} (it has the same shape {fmt_shape(shape)}: was the layer renamed?)"


def load_weights(path, model, dtype="float32") -> dict[str, np.ndarray]:
    """Weights for ``model`` (a ModelIR) from an ``.npz`` file, validated against the contract."""
    from .graph import weight_shapes
    expected = weight_shapes(model)
    return validate_weights(read_npz(Path(path)), expected, str(path), np.dtype(dtype))


def save_npz(path, arrays: dict[str, np.ndarray]) -> None:
    """Atomically write ``arrays`` to ``path`` as an uncompressed ``.npz`` (E764 if it cannot)."""
    def write(fh):
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        fh.write(buf.getvalue())
    atomic_write_with(Path(path), write)  # E764 on failure
