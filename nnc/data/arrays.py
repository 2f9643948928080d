"""NumPy files: ``.npz`` archives of named arrays and single ``.npy`` arrays, never unpickled."""
from __future__ import annotations

import io
import numpy as np
from nnc.errors import NncError

from .base import DataInfo, Dataset, _did_you_mean, _join_hints
from .labels import label_targets


_PICKLE_HINT = ("nnc never loads pickled data; save plain numeric arrays, e.g. "
                "np.savez(path, x=x.astype(np.float32), y=y.astype(np.int64))")


def _array_error(exc: Exception, shown: str, what: str) -> NncError:
    text = str(exc)
    if "allow_pickle" in text or "pickle" in text.lower() or "Object arrays" in text:
        return NncError.single("E708", f"{shown}: {what} holds pickled Python objects, which nnc "
                               "refuses to load", hint=_PICKLE_HINT, path=shown)
    return NncError.single("E708", f"cannot read {shown}: {what} is not a valid NumPy file "
                           f"({type(exc).__name__}: {text})",
                           hint="write it with np.save / np.savez (or np.savez_compressed)",
                           path=shown)


def _load_numpy(data: bytes, shown: str):
    """np.load from bytes, never unpickling: an ndarray (.npy) or a dict of arrays (.npz)."""
    if data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06":
        try:
            archive = np.load(io.BytesIO(data), allow_pickle=False)
            keys = list(archive.files)
        except Exception as exc:  # noqa: BLE001 - any failure to read the user's file is E708
            raise _array_error(exc, shown, "the file") from None
        return _LazyNpz(archive, keys, shown)
    if not data.startswith(b"\x93NUMPY"):
        hint = "write it with np.save / np.savez"
        if data[:1] == b"\x80":
            raise NncError.single("E708", f"{shown} is a Python pickle, not a NumPy file; nnc "
                                  "refuses to load it", hint=_PICKLE_HINT, path=shown)
        raise NncError.single("E708", f"cannot read {shown}: not a .npy or .npz file", hint=hint,
                              path=shown)
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # noqa: BLE001
        raise _array_error(exc, shown, "the array") from None


class _LazyNpz:
    """An npz archive whose arrays are read one key at a time (with located errors)."""

    def __init__(self, archive, keys: list[str], shown: str):
        self.archive, self.keys, self.shown = archive, keys, shown

    def get(self, key: str) -> np.ndarray:
        try:
            return self.archive[key]
        except Exception as exc:  # noqa: BLE001
            raise _array_error(exc, self.shown, f'array "{key}"') from None


def _missing_key(key: str, role: str, npz: _LazyNpz, span, spec_path) -> NncError:
    keys = ", ".join(f'"{k}"' for k in npz.keys) or "(none)"
    message = f'{npz.shown} has no array "{key}" (for {role}); its keys are: {keys}'
    hint = _join_hints(_did_you_mean(key, npz.keys),
                       f'choose the key with {role}="..."' if npz.keys else
                       "the archive is empty")
    if span is not None:
        return NncError.single("E707", message, hint=hint, span=span, path=spec_path)
    return NncError.single("E707", message, hint=hint, path=npz.shown)


def _numeric_array(arr: np.ndarray, shown: str, what: str) -> np.ndarray:
    if arr.dtype.kind in "biuf":
        return arr
    kinds = {"U": "text", "S": "bytes", "c": "complex numbers", "V": "records (a structured dtype)",
             "M": "dates", "m": "time deltas", "O": "Python objects"}
    raise NncError.single("E705", f"{shown}: {what} holds {kinds.get(arr.dtype.kind, arr.dtype)} "
                          f"(dtype {arr.dtype}), not numbers", hint="store numeric arrays only "
                          "(float for features, int64 for class ids or token ids)", path=shown)


def _npz_dataset(data: bytes, shown: str, x_key: str, y_key: str | None, float_dtype, span,
                 spec_path, info: DataInfo | None = None) -> Dataset:
    npz = _load_numpy(data, shown)
    if not isinstance(npz, _LazyNpz):
        raise NncError.single("E708", f"{shown} holds a single array (.npy format), not an .npz "
                              "archive of named arrays",
                              hint="save x and y together: np.savez(path, x=x, y=y)", path=shown)
    for key, role in ((x_key, "x"), (y_key, "y")):
        if key is not None and key not in npz.keys:
            raise _missing_key(key, role, npz, span, spec_path)
    x = _numeric_array(npz.get(x_key), shown, f'array "{x_key}"')
    if x.dtype.kind == "f":
        x = x.astype(float_dtype)
    elif x.dtype.kind == "b":
        x = x.astype(float_dtype)
    y, labels = None, None
    if y_key is not None:
        y = npz.get(y_key)
        if y.dtype.kind in "US":
            y, labels = label_targets(y, f'array "{y_key}"', info, shown)
        elif info is not None and info.labels is not None and y.dtype.kind in "iub":
            labels = list(info.labels)  # class ids of the training map
        y = _numeric_array(y, shown, f'array "{y_key}"')
        if y.dtype.kind in "iub":
            y = y.astype(np.int64)
        else:
            y = y.astype(float_dtype)
    if x.ndim == 0:
        raise NncError.single("E731", f'{shown}: array "{x_key}" is a single number, not one row '
                              "per example", hint="store x with the examples along the first axis",
                              path=shown)
    return Dataset(x, y, shown, labels, path=shown, kind="npz", target=y_key)
