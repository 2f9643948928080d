"""Datasets and what a run remembers of its data (``DataInfo``, data.json), with the helpers every
source shares."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
import numpy as np
from nnc import vocab
from nnc.errors import NncError, did_you_mean




@dataclass
class Dataset:
    """Examples for training, evaluation or prediction.

    x: (N, ...) float features, or int64 token ids.
    y: (N,) int64 class ids, or (N, ...) float targets; None for predict inputs.
    name: for messages, e.g. ``dataset("iris")`` or the file path.
    labels: the id -> label map in force (``labels[id] == label``): built from string targets, or
        the training data's map when the data was loaded with one (see :class:`DataInfo`); else None.
    path: the file the data came from (diagnostics point there), None for built-in data.
    kind: the source kind: ``dataset``, ``csv``, ``npz`` or ``arrays`` (Python arrays).
    features: the CSV columns x holds, in x's order (None when the source has no column names).
    target: the CSV target column (or the npz key of y), None otherwise.
    notes: things worth telling the user that are not errors (e.g. CSV columns that were ignored).
    source: the source as the user wrote it (``dataset("iris")`` or the file), kept by
        :func:`split_validation` whose parts get other names.
    text: a text column's options and vocabulary (see :class:`DataInfo`), None for other data.
    images: an image folder's options ``{"size": [H, W], "color": ...}``, None for other data.
    files: the image file of each row (predict inputs from images), None otherwise.
    """

    x: np.ndarray
    y: np.ndarray | None
    name: str
    labels: list[str] | None = None
    path: str | None = None
    kind: str = "arrays"
    features: list[str] | None = None
    target: str | None = None
    notes: list[str] = field(default_factory=list)
    source: str | None = None
    text: dict | None = None
    images: dict | None = None
    files: list[str] | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass
class DataInfo:
    """What a run remembers about its training data: the run directory's ``data.json``.

    The validation source, ``nnc evaluate --data`` and ``nnc predict`` are loaded *with* it, so they
    read the data as the model was trained: CSV feature columns by name (``features``), string
    targets through the training source's label map (``labels``), text through the training
    vocabulary (``text``), images at the training size and color (``images``).

    kind: the training source's kind (``dataset``, ``csv``, ``npz``, ``images``, ``arrays``).
    source: the training source as shown in messages (a path or ``dataset("iris")``).
    features: the CSV feature columns in the order the model reads them, or None (no names).
    target: the CSV target column (npz: the key of y), or None.
    labels: id -> label of string targets (``labels[id] == label``), or None.
    text: a text column: ``{"column", "vocab", "length", "tokenizer", "lowercase", "tokens"}``,
        ``tokens[i]`` being the token of id ``i + 2`` (0 is padding, 1 unknown); or None.
    images: ``{"size": [H, W], "color": "grayscale" | "rgb"}`` of an image folder, or None.
    path: where this was read from (a data.json), for messages; not saved.
    """

    kind: str
    source: str | None = None
    features: list[str] | None = None
    target: str | None = None
    labels: list[str] | None = None
    text: dict | None = None
    path: str | None = None
    images: dict | None = None

    FORMAT = 1

    @classmethod
    def of(cls, ds: Dataset) -> "DataInfo":
        return cls(ds.kind, ds.source or ds.path or ds.name, list(ds.features) if ds.features is not None else None,
                   ds.target, list(ds.labels) if ds.labels is not None else None, ds.text, images=ds.images)

    def to_dict(self) -> dict:
        out = {"format": self.FORMAT, "kind": self.kind, "source": self.source, "features": self.features,
               "target": self.target, "labels": self.labels, "text": self.text}
        if self.images is not None:  # an image folder's size and color
            out["images"] = self.images
        return out

    @classmethod
    def from_dict(cls, obj: Any, path: str) -> "DataInfo":
        """Validate a parsed data.json; E738 naming the bad field otherwise."""
        def bad(what: str) -> NncError:
            return NncError.single("E738", f"{path} is not a valid data.json: {what}", path=path,
                                   hint="it is written by `nnc train`; delete it (columns are then taken "
                                        "by position and labels per file) or train the run again")
        if not isinstance(obj, dict):
            raise bad("expected a JSON object")
        fmt = obj.get("format")
        if not isinstance(fmt, int) or fmt > cls.FORMAT or fmt < 1:
            raise bad(f"unknown format {fmt!r} (this nnc reads format {cls.FORMAT})")
        if not isinstance(obj.get("kind"), str):
            raise bad('"kind" must be a string')
        for key in ("features", "labels"):
            v = obj.get(key)
            if v is not None and not (isinstance(v, list) and all(isinstance(i, str) for i in v)):
                raise bad(f'"{key}" must be a list of strings or null')
        if obj.get("labels") is not None and len(set(obj["labels"])) != len(obj["labels"]):
            raise bad('"labels" holds a label twice')
        for key in ("source", "target"):
            if obj.get(key) is not None and not isinstance(obj[key], str):
                raise bad(f'"{key}" must be a string or null')
        text, images = obj.get("text"), obj.get("images")
        if text is not None:
            problem = _text_info_problem(text)
            if problem:
                raise bad(f'"text" {problem}')
        if images is not None:
            ok = (isinstance(images, dict) and isinstance(images.get("size"), list) and len(images["size"]) == 2
                  and all(_whole(v, 1) for v in images["size"]) and images.get("color") in vocab.IMAGE_CHANNELS)
            if not ok:
                raise bad('"images" must be {"size": [H, W], "color": "grayscale" or "rgb"}')
        return cls(obj["kind"], obj.get("source"), obj.get("features"), obj.get("target"), obj.get("labels"),
                   text, path, images)

    def where(self) -> str:
        return self.path or self.source or "the training data"


def _whole(v, low: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _text_info_problem(text) -> str | None:
    """What is wrong with a data.json's "text" entry, or None."""
    if not isinstance(text, dict):
        return "must be an object or null"
    if not isinstance(text.get("column"), str):
        return 'needs "column", the name of the text column'
    if not _whole(text.get("vocab"), 3) or not _whole(text.get("length"), 1):
        return 'needs "vocab" (an integer >= 3) and "length" (an integer >= 1)'
    if text.get("tokenizer") not in vocab.TOKENIZERS.choices or not isinstance(text.get("lowercase"), bool):
        return 'needs "tokenizer" ("words" or "chars") and "lowercase" (true or false)'
    tokens = text.get("tokens")
    if not (isinstance(tokens, list) and all(isinstance(t, str) for t in tokens)):
        return 'needs "tokens", a list of strings'
    if len(tokens) > text["vocab"] - 2 or len(set(tokens)) != len(tokens):
        return f'"tokens" must be at most vocab - 2 = {text["vocab"] - 2} distinct strings'
    return None


BUILTIN_DATASETS: tuple[str, ...] = tuple(vocab.BUILTIN_DATASETS)   # declared once, with their shapes

_MAX_FILE_ERRORS = 10  # cell-level problems reported from one file before giving up
_MISSING_MARKERS = {"", "na", "n/a", "null", "none", "?"}
_INT_RE = re.compile(r"\s*[+-]?\d+\s*")


def _did_you_mean(word, choices, *, quote: str = '"') -> str | None:
    return did_you_mean(word, choices, quote=quote)   # data files quote names with "..."


def _join_hints(*hints: str | None) -> str | None:
    parts = [h for h in hints if h]
    return "; ".join(parts) if parts else None
