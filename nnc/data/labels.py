"""Label maps: string targets become class ids through the training source's map, once."""
from __future__ import annotations

import numpy as np
from nnc.errors import NncError

from .base import DataInfo, _did_you_mean, _join_hints


def encode_labels(values: list[str], labels: list[str] | None = None
                  ) -> tuple[np.ndarray, list[str], dict[str, int]]:
    """Class ids of string labels: the one label-map rule of every source (csv, npz, Python arrays).

    Without ``labels`` the map is built here: the sorted unique labels (code-point order), so
    ``labels[id] == label``. With ``labels`` (the training data's map) every value takes the id of
    that map, whichever classes this data happens to hold. Returns (ids int64, the map, {label the
    map lacks: index of its first occurrence}); unknown labels get id -1.
    """
    if labels is None:
        labels = sorted(set(values))
    index = {label: i for i, label in enumerate(labels)}
    ids = np.empty(len(values), dtype=np.int64)
    unknown: dict[str, int] = {}
    for i, v in enumerate(values):
        j = index.get(v)
        if j is None:
            unknown.setdefault(v, i)
            j = -1
        ids[i] = j
    return ids, list(labels), unknown


def quoted_list(items, limit: int = 10) -> str:
    items = list(items)
    shown = ", ".join(f'"{i}"' for i in items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def unknown_label_hint(label: str, info: DataInfo) -> str:
    return _join_hints(_did_you_mean(label, info.labels or []),
                       f"the model was trained on the labels {quoted_list(info.labels or [])} "
                       f"(from {info.where()}); data may hold only some of them, but no others")


def _numeric_trained_error(message: str, info: DataInfo, **where) -> NncError:
    return NncError.single("E735", f"{message}, but the model was trained on numeric targets "
                           f"({info.where()}), which have no label map",
                           hint="give the targets as numbers or class ids as the training data did, or train a "
                                "model on this data", **where)



def label_targets(y: np.ndarray, what: str, info: DataInfo | None, shown: str | None = None
                    ) -> tuple[np.ndarray, list[str]]:
    """String targets of an array (npz, or the Python API's y) as (class ids, label map), through ``info``'s
    label map when there is one (E735 for a label it lacks, or when the model was trained on
    numbers)."""
    strings = [str(v.decode() if isinstance(v, bytes) else v) for v in y.reshape(-1)]
    where = dict(path=shown) if shown else {}
    prefix = f"{shown}: " if shown else ""
    if info is not None and info.labels is None:
        raise _numeric_trained_error(f'{prefix}{what} holds labels (e.g. "{strings[0]}")', info, **where)
    ids, labels, unknown = encode_labels(strings, info.labels if info is not None else None)
    if unknown:
        label, i = next(iter(unknown.items()))
        others = [k for k in unknown if k != label]
        raise NncError.single(
            "E735", f'{prefix}label "{label}" in {what} (row {i + 1}, 0-based index {i}) is not one of the '
            f"{len(labels)} labels the model was trained on"
            + (f"; nor are {quoted_list(others, 5)}" if others else ""),
            hint=unknown_label_hint(label, info), **where)
    return ids.reshape(y.shape), labels
