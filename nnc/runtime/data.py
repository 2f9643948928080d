"""The data layer: built-in data sets, csv / npz loaders, and fitting data to a model's input.

Every problem with a data file or a data-source value is an :class:`NncError` with a stable code,
the file's path, a line and column where there is one (1-based; for a CSV, ``line`` is the physical
line in the file and ``column`` the 1-based character column where the bad field starts), and a
hint. Nothing here ever unpickles: every ``np.load`` uses ``allow_pickle=False``, and arrays of
Python objects are refused, never loaded.

Built-in data (``dataset("NAME")``; no network, generated sets use fixed seeds that do not depend
on the training seed):

=========  ====================================  ==========================  ==================
name       x                                     y                           source
=========  ====================================  ==========================  ==================
and        (4, 2)  [[0,0],[0,1],[1,0],[1,1]]     (4,) int64 truth table      constant
or         (4, 2)  same                          (4,) int64                  constant
xor        (4, 2)  same                          (4,) int64                  constant
iris       (150, 4) cm                           (150,) int64, 3 classes     datasets/iris.csv
digits     (1797, 1, 8, 8) pixels 0..16 / 16     (1797,) int64, 10 classes   datasets/digits.csv.gz
spirals    (300, 2) three noisy spiral arms      (300,) int64, 3 classes     seed 231
sine       (1000, 20, 1) sin(w*t + phase)        (1000, 1) float, next value seed 7
=========  ====================================  ==========================  ==================

``spirals`` is the CS231n toy set: 100 points per class, radius 0..1, angle 4 radians per arm with
N(0, 0.2) noise. ``sine``: w ~ U(0.1, 0.5) radians per step, phase ~ U(0, 2*pi), t = 0..19 for x
and t = 20 for y. ``digits`` is shaped like the language reference says (images ``[1, 8, 8]``);
:func:`fit_to_input` reshapes it to ``[64]`` for a dense model. ``iris`` carries its class names
in ``Dataset.labels``.

Floating features are float32 unless ``float_dtype`` asks for float64; class ids are int64.

CSV rules (``csv("f.csv", target="col")``): a header row is required; the file is UTF-8 (a BOM is
skipped), comma-separated, with ``"``-quoted fields allowed; blank lines are skipped. Every
column other than the target is a numeric feature. The target becomes

* int64 class ids when every value is written as an integer (``3``, ``-1``; ``3.0`` is a float),
* floats when every value is a number,
* otherwise class ids by sorted unique label, with ``labels[id] == label``.

Without a ``target`` (a bare ``--data file.csv``) the last column is the target (the training
target column, when the source is loaded with a :class:`DataInfo` that names one).

Loaded with a :class:`DataInfo` (what the model was trained on), feature columns are matched by
name and string targets take the ids of its label map (contract 5.3); see :func:`load_source`.

Error codes:

====  ==========================================================================================
E701  unknown built-in data set name (with "did you mean")
E702  data file not found, a directory, unreadable, or of an unknown type
E703  malformed CSV: empty, no header row, ragged row, bad quoting, duplicate column, not UTF-8
E704  CSV target column missing (lists the columns, "did you mean")
E705  non-numeric feature value (line, column name, the value); non-numeric npz array
E706  missing value / hole in a CSV (empty field, ``NA``, ``N/A``, ``null``, ``None``, ``?``)
E707  npz key missing (lists the keys)
E708  npz / npy unreadable, not the expected format, or holding pickled Python objects
E709  bad data-source syntax (``--data`` value or source arguments)
E731  data does not fit the model input (shape, or non-integer token ids)
E732  x and y have different numbers of rows
E733  NaN or infinity in x or y
E734  no data (no rows, no features, or no training rows left after the validation split)
E735  a label the training data's label map lacks (or labels where training had numbers)
E736  CSV lacks a feature column the training data had (matched by name)
E737  CSV whose first, unnamed column is pandas' row index
E738  a run's data.json that cannot be read (raised by nnc.dataload)
====  ==========================================================================================
"""
from __future__ import annotations

import csv
import functools
import gzip
import io
import math
import re
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from nnc.compiler import datasource as S
from nnc.compiler.datasource import parse_source
from nnc.errors import Diagnostic, NncError, SourceSpan, did_you_mean, fmt_shape

__all__ = [
    "Dataset", "DataInfo", "BUILTIN_DATASETS", "load_source", "parse_source", "load_inputs", "fit_to_input",
    "split_validation", "check_dataset", "check_finite", "encode_labels", "label_targets",
]


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

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass
class DataInfo:
    """What a run remembers about its training data: the run directory's ``data.json``.

    The validation source, ``nnc evaluate --data`` and ``nnc predict`` are loaded *with* it, so they
    read the data as the model was trained: CSV feature columns by name (``features``), string
    targets through the training source's label map (``labels``), and, later, text through the
    training vocabulary (``text``, reserved: None today).

    kind: the training source's kind (``dataset``, ``csv``, ``npz``, ``arrays``).
    source: the training source as shown in messages (a path or ``dataset("iris")``).
    features: the CSV feature columns in the order the model reads them, or None (no names).
    target: the CSV target column (npz: the key of y), or None.
    labels: id -> label of string targets (``labels[id] == label``), or None.
    path: where this was read from (a data.json), for messages; not saved.
    """

    kind: str
    source: str | None = None
    features: list[str] | None = None
    target: str | None = None
    labels: list[str] | None = None
    text: dict | None = None
    path: str | None = None

    FORMAT = 1

    @classmethod
    def of(cls, ds: Dataset) -> "DataInfo":
        return cls(ds.kind, ds.source or ds.path or ds.name, list(ds.features) if ds.features is not None else None,
                   ds.target, list(ds.labels) if ds.labels is not None else None)

    def to_dict(self) -> dict:
        return {"format": self.FORMAT, "kind": self.kind, "source": self.source, "features": self.features,
                "target": self.target, "labels": self.labels, "text": self.text}

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
        if obj.get("text") is not None and not isinstance(obj["text"], dict):
            raise bad('"text" must be an object or null')
        return cls(obj["kind"], obj.get("source"), obj.get("features"), obj.get("target"), obj.get("labels"),
                   obj.get("text"), path)

    def where(self) -> str:
        return self.path or self.source or "the training data"


BUILTIN_DATASETS: tuple[str, ...] = ("and", "or", "xor", "iris", "digits", "spirals", "sine")

_MAX_FILE_ERRORS = 10  # cell-level problems reported from one file before giving up
_MISSING_MARKERS = {"", "na", "n/a", "null", "none", "?"}
_INT_RE = re.compile(r"\s*[+-]?\d+\s*")


def _did_you_mean(word, choices, *, quote: str = '"') -> str | None:
    return did_you_mean(word, choices, quote=quote)   # data files quote names with "..."


def _join_hints(*hints: str | None) -> str | None:
    parts = [h for h in hints if h]
    return "; ".join(parts) if parts else None


# ----------------------------------------------------------------------------------------------
# built-in data

def _resource_bytes(name: str) -> bytes:
    return resources.files("nnc.runtime").joinpath("datasets", name).read_bytes()


@functools.lru_cache(maxsize=None)
def _iris_raw() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    # NOTE: scikit-learn's iris.csv starts with "150,4,setosa,versicolor,virginica": the row and
    # feature counts, then the class names; every other row is 4 features and the class id.
    text = _resource_bytes("iris.csv").decode("ascii")
    rows = [line.split(",") for line in text.splitlines() if line.strip()]
    n, f = int(rows[0][0]), int(rows[0][1])
    names = tuple(rows[0][2:])
    data = np.array([[float(v) for v in r] for r in rows[1:]], dtype=np.float64)
    assert data.shape == (n, f + 1), "corrupt built-in iris.csv"
    return data[:, :f], data[:, f].astype(np.int64), names


@functools.lru_cache(maxsize=None)
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    text = gzip.decompress(_resource_bytes("digits.csv.gz")).decode("ascii")
    data = np.array([[int(v) for v in line.split(",")] for line in text.splitlines() if line.strip()],
                    dtype=np.int64)
    assert data.shape == (1797, 65), "corrupt built-in digits.csv.gz"
    return data[:, :64], data[:, 64]


def _truth_table(fn) -> tuple[np.ndarray, np.ndarray]:
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
    y = np.array([fn(int(a), int(b)) for a, b in x], dtype=np.int64)
    return x, y


def _spirals(points: int = 100, classes: int = 3, seed: int = 231) -> tuple[np.ndarray, np.ndarray]:
    """CS231n's spirals: x (points*classes, 2), y (points*classes,) int64."""
    rng = np.random.default_rng(seed)
    x = np.zeros((points * classes, 2))
    y = np.zeros(points * classes, dtype=np.int64)
    for k in range(classes):
        rows = slice(points * k, points * (k + 1))
        r = np.linspace(0.0, 1.0, points)
        t = np.linspace(k * 4.0, (k + 1) * 4.0, points) + rng.standard_normal(points) * 0.2
        x[rows] = np.c_[r * np.sin(t), r * np.cos(t)]
        y[rows] = k
    return x, y


def _sine(n: int = 1000, steps: int = 20, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Sine sequences: x (n, steps, 1) = sin(w*t + phase) for t < steps, y (n, 1) at t = steps."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.1, 0.5, size=(n, 1))
    phase = rng.uniform(0.0, 2.0 * np.pi, size=(n, 1))
    t = np.arange(steps + 1)[None, :]
    wave = np.sin(w * t + phase)
    return wave[:, :steps, None], wave[:, steps:]


def _builtin(name: str, float_dtype) -> Dataset:
    labels = None
    if name == "and":
        x, y = _truth_table(lambda a, b: a & b)
    elif name == "or":
        x, y = _truth_table(lambda a, b: a | b)
    elif name == "xor":
        x, y = _truth_table(lambda a, b: a ^ b)
    elif name == "iris":
        x, y, names = _iris_raw()
        labels = list(names)
    elif name == "digits":
        pixels, y = _digits_raw()
        x = (pixels / 16.0).reshape(-1, 1, 8, 8)
    elif name == "spirals":
        x, y = _spirals()
    elif name == "sine":
        x, y = _sine()
    else:  # pragma: no cover - guarded by the caller
        raise KeyError(name)
    if y.dtype.kind == "f":
        y = y.astype(float_dtype)
    return Dataset(x.astype(float_dtype), y.copy(), f'dataset("{name}")', labels, kind="dataset",
                   source=f'dataset("{name}")')


# ----------------------------------------------------------------------------------------------
# data sources

def _source_error(code: str, message: str, hint: str | None, span, spec_path) -> NncError:
    return NncError.single(code, message, hint=hint, span=span, path=spec_path)


def _check_args(kind: str, args: dict, span, spec_path) -> dict:
    """Validate a source's arguments against the data-source catalogue (``SOURCES``); fill its
    defaults (npz's ``x``, ``y``). Returns a new dict."""
    sig = S.signature(kind)
    if sig is None:
        raise _source_error(
            "E709", f"unknown data source `{kind}`",
            _join_hints(S.unknown_kind_hint(kind), 'a data source is dataset("NAME"), csv("file.csv", target="column") '
                        'or npz("file.npz", x="x", y="y")'), span, spec_path)
    known = S.parameters(sig)
    out: dict[str, Any] = {}
    for key, value in args.items():
        if key not in known:
            raise _source_error(
                "E709", f"{kind}() has no parameter `{key}`",
                _join_hints(_did_you_mean(key, known, quote="`"),
                            f"{kind}() takes " + ", ".join(known)), span, spec_path)
        if value is not None and not isinstance(value, (str, Path)):
            raise _source_error("E709", f"{kind}(): `{key}` must be a string, got {value!r}",
                                f'write it in quotes, e.g. {key}="..."', span, spec_path)
        out[key] = str(value) if isinstance(value, Path) else value
    for key in S.required(sig):
        if not out.get(key):
            raise _source_error("E709", f"{kind}() needs `{key}`", f"e.g. {S.example(kind)}",
                                span, spec_path)
    return S.with_defaults(sig, out)


def _resolve(path_text: str, base_dir: Path) -> tuple[Path, str]:
    """The path to open and the path to show in messages (relative stays relative)."""
    p = Path(path_text).expanduser()
    if not p.is_absolute():
        p = Path(base_dir) / p
    return p, str(p)


def _read_bytes(p: Path, shown: str, *, span=None, spec_path=None) -> bytes:
    where = dict(span=span, path=spec_path if (span is not None or spec_path) else shown)
    try:
        return p.read_bytes()
    except FileNotFoundError:
        parent = p.resolve().parent
        hint = f"looked for {p.resolve()}"
        if parent.is_dir():
            near = _did_you_mean(p.name, [c.name for c in parent.iterdir()])
            hint = _join_hints(hint, near)
        else:
            hint += " (the folder does not exist either)"
        raise NncError.single("E702", f"data file not found: {shown}", hint=hint, **where) from None
    except IsADirectoryError:
        raise NncError.single("E702", f"{shown} is a folder, not a data file",
                              hint=f"name a file inside {p.resolve()}", **where) from None
    except OSError as exc:
        raise NncError.single("E702", f"cannot read {shown}: {exc.strerror or exc}",
                              hint=f"the file is {p.resolve()}", **where) from None


def load_source(kind: str, args: dict, base_dir: Path, *, span: SourceSpan | None = None,
                spec_path: str | None = None, float_dtype=np.float32,
                info: DataInfo | None = None) -> Dataset:
    """Load a data source: ``dataset`` ({"name"}), ``csv`` ({"path", "target"?}) or ``npz``
    ({"path", "x"="x", "y"="y"}; ``y=None`` loads no targets).

    Relative paths are relative to ``base_dir``. Errors about the source itself (unknown name,
    missing file, bad arguments, a target column or npz key that the file lacks) point at
    ``span`` in ``spec_path`` when given; errors inside a file point into the file.
    Floating features (and float targets) come back as ``float_dtype``.

    ``info`` is what the training data was (a run's data.json, or the training source when this is
    the validation source). With it, CSV features are matched by column name (E736 for a missing
    one, a note for extra ones), and string targets take the ids of its label map (E735 for a
    label it does not have, or for labels where the model was trained on numbers). Without it, every
    column but the target is a feature, in file order, and labels get ids by sorted label.
    """
    args = _check_args(kind, dict(args), span, spec_path)
    float_dtype = np.dtype(float_dtype)
    if kind == "dataset":
        name = args["name"]
        if name not in BUILTIN_DATASETS:
            raise _source_error(
                "E701", f'unknown built-in data set "{name}"',
                _join_hints(_did_you_mean(name, BUILTIN_DATASETS),
                            "built-in data sets: " + ", ".join(BUILTIN_DATASETS)), span, spec_path)
        return _builtin(name, float_dtype)
    p, shown = _resolve(args["path"], base_dir)
    data = _read_bytes(p, shown, span=span, spec_path=spec_path)
    if kind == "csv":
        table = _parse_csv(data, shown)
        return _csv_dataset(table, args.get("target"), shown, float_dtype, span, spec_path, info)
    return _npz_dataset(data, shown, args["x"], args.get("y"), float_dtype, span, spec_path, info)


# ----------------------------------------------------------------------------------------------
# CSV

@dataclass
class _Table:
    """A parsed CSV: the header and the data records, each with its physical lines."""

    path: str
    lines: list[str]                       # physical lines of the file, endings kept
    header: list[str]                      # stripped column names
    header_line: int
    rows: list[tuple[int, int, list[str]]]  # (first line, last line, fields) per data record

    def locate(self, first: int, last: int, field: int) -> SourceSpan:
        """The span of field ``field`` (0-based; may be one past the end) of a record."""
        raw = "".join(self.lines[first - 1:last])
        starts, ends = [0], []
        in_quotes = False
        for i, ch in enumerate(raw):
            if ch == '"':
                in_quotes = not in_quotes
            elif ch == "," and not in_quotes:
                ends.append(i)
                starts.append(i + 1)
        ends.append(len(raw.rstrip("\r\n")))
        if field >= len(starts):  # a missing field: point just past the end of the record
            start = end = ends[-1]
            end += 1
        else:
            start, end = starts[field], max(ends[field], starts[field] + 1)
        line, col = self._position(first, raw, start)
        end_line, end_col = self._position(first, raw, end)
        if end_line != line:
            end_line, end_col = line, col + 1
        return SourceSpan(line, col, end_line, end_col)

    @staticmethod
    def _position(first: int, raw: str, offset: int) -> tuple[int, int]:
        before = raw[:offset]
        breaks = [m.end() for m in re.finditer(r"\r\n|\r|\n", before)]
        if not breaks:
            return first, offset + 1
        return first + len(breaks), offset - breaks[-1] + 1

    def error(self, code: str, message: str, hint: str | None, first: int, last: int,
              field: int | None) -> Diagnostic:
        if field is None:
            line_text = self.lines[first - 1].rstrip("\r\n") if first <= len(self.lines) else ""
            span = SourceSpan(first, 1, first, max(2, len(line_text) + 1))
        else:
            span = self.locate(first, last, field)
        return Diagnostic(code, message, span, hint, self.path)


def _raise(diags: list[Diagnostic], source: str | None = None) -> None:
    if diags:
        err = NncError(diags)
        if source is not None:
            err.sources.update({d.path: source for d in diags if d.path})  # the renderer shows the line
        raise err


def _decode(data: bytes, shown: str) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise NncError.single("E703", f"{shown} is UTF-16 text; nnc reads UTF-8 CSV files",
                              hint="save it as UTF-8 (e.g. `iconv -f UTF-16 -t UTF-8`)",
                              span=SourceSpan(1, 1, 1, 2), path=shown)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        column = len(data[line_start:exc.start].decode("utf-8", errors="replace")) + 1
        bad = data[exc.start:exc.start + 1]
        raise NncError.single(
            "E703", f"{shown} is not valid UTF-8: byte 0x{bad.hex()} at line {line}, column {column}",
            hint="save the file as UTF-8 (e.g. `iconv -f latin1 -t UTF-8 in.csv > out.csv`)",
            span=SourceSpan(line, column, line, column + 1), path=shown) from None


def _is_blank(fields: list[str]) -> bool:
    return not fields or (len(fields) == 1 and not fields[0].strip())


def _parse_csv(data: bytes, shown: str) -> _Table:
    """Split a CSV file into header and records (all strings), checking its structure (E703)."""
    text = _decode(data, shown)
    lines = io.StringIO(text, newline="").readlines()
    reader = csv.reader(lines, strict=True)
    records: list[tuple[int, int, list[str]]] = []
    last = 0
    try:
        for fields in reader:
            first, last = last + 1, reader.line_num
            if not _is_blank(fields):
                records.append((first, last, fields))
    except csv.Error as exc:
        first = last + 1
        line = min(max(first, 1), max(len(lines), 1))
        raw = "".join(lines[first - 1:])
        quote = raw.find('"')
        span = SourceSpan(line, 1, line, 2)
        hint = 'a field that contains a comma or a quote must be quoted, with inner quotes doubled ("")'
        if quote >= 0:
            l2, c2 = _Table._position(first, raw, quote)
            span = SourceSpan(l2, c2, l2, c2 + 1)
        raise NncError.single("E703", f"malformed CSV near line {span.line}: {exc}",
                              hint=hint, span=span, path=shown) from None
    table_source = text
    if not records:
        raise NncError.single("E703", f"{shown} is empty", hint="a CSV needs a header row of column "
                              "names and then one row per example", span=SourceSpan(1, 1, 1, 2),
                              path=shown)
    h_first, h_last, header_fields = records[0]
    header = [h.strip() for h in header_fields]
    table = _Table(shown, lines, header, h_first, records[1:])
    _check_separator(table, table_source)
    # NOTE: all but one field numeric is a data row too (features, then a string label), not a header
    if sum(_parse_float(h) is not None for h in header) >= max(1, len(header) - 1):
        d = table.error("E703", f"{shown} has no header row: the first row holds numbers, "
                        f"not column names", "add a first row naming the columns, e.g. "
                        + ",".join(f"f{i + 1}" for i in range(min(len(header), 4)))
                        + (",..." if len(header) > 4 else ""), h_first, h_last, None)
        _raise([d], table_source)
    seen: dict[str, int] = {}
    for i, name in enumerate(header):
        if name and name in seen:
            d = table.error("E703", f'column "{name}" appears twice in the header '
                            f"(columns {seen[name] + 1} and {i + 1})",
                            "give every column a unique name", h_first, h_last, i)
            _raise([d], table_source)
        seen[name] = i
    diags = []
    for first, last, fields in table.rows:
        if len(fields) != len(header):
            hint = ("every row needs one value per header column; quote values that contain commas"
                    if len(fields) > len(header) else "every row needs one value per header column")
            diags.append(table.error(
                "E703", f"line {first} has {len(fields)} fields but the header has "
                f"{len(header)}", hint, first, last, min(len(fields), len(header))))
            if len(diags) >= _MAX_FILE_ERRORS:
                break
    _raise(diags, table_source)
    return table


_SEPARATORS = {";": ("semicolons", ";"), "\t": ("tabs", "\\t"), "|": ("'|' characters", "|")}


def _check_separator(table: _Table, source: str) -> None:
    """A header that is one column holding ``;``, tabs or ``|``: the file is not comma-separated
    (E703 with the command that converts it), whatever the target or the verb."""
    if len(table.header) != 1:
        return
    sep = next((s for s in _SEPARATORS if len(table.header[0].split(s)) > 1), None)
    if sep is None:
        return
    parts = len(table.header[0].split(sep))
    if table.rows and table.lines[table.rows[0][0] - 1].rstrip("\r\n").count(sep) + 1 != parts:
        return  # one column whose name happens to hold the character: the rows do not split so
    what, escaped = _SEPARATORS[sep]
    name = Path(table.path).name
    out = Path(name).stem + "_commas.csv"
    hint = (f"nnc reads comma-separated files; convert it, e.g. python -c \"import csv,sys; "
            f"csv.writer(sys.stdout).writerows(csv.reader(sys.stdin, delimiter='{escaped}'))\" "
            f"< {name} > {out}")
    decimal_commas = any(re.search(r"\d,\d", table.lines[first - 1]) for first, _, _ in table.rows[:20])
    if decimal_commas:
        hint += (f"; its numbers have decimal commas, so convert with pandas instead: "
                 f"pd.read_csv(\"{name}\", sep=\"{escaped}\", decimal=\",\").to_csv(\"{out}\", index=False)")
    d = table.error("E703", f"{table.path} is separated by {what}, not commas: its header is the one "
                    f"column {table.header[0]!r}", hint, table.header_line, table.header_line, None)
    _raise([d], source)


def _parse_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _cell_problem(table: _Table, first: int, last: int, col: int, value: str) -> Diagnostic:
    name = table.header[col] or f"#{col + 1}"
    if value.strip().lower() in _MISSING_MARKERS:
        shown_value = f" ({value.strip()!r})" if value.strip() else ""
        return table.error("E706", f'missing value{shown_value} in column "{name}" '
                           f"at line {first}", "fill in every value or drop the row; nnc does not "
                           "impute missing data", first, last, col)
    f = _parse_float(value)
    if f is not None and not math.isfinite(f):
        return table.error("E733", f'{value.strip()!r} in column "{name}" at line '
                           f"{first} is not a finite number", "replace NaN/infinite values or "
                           "drop the row", first, last, col)
    return table.error("E705", f'non-numeric value {value.strip()!r} in column '
                       f'"{name}" at line {first}',
                       "every column except the target must be numeric; encode categories as "
                       "numbers (e.g. one-hot columns) or make this column the target",
                       first, last, col)


def _numeric_columns(table: _Table, cols: list[int]) -> np.ndarray:
    """The given columns as float64 (rows, len(cols)); located E705/E706/E733 otherwise."""
    out = np.empty((len(table.rows), len(cols)), dtype=np.float64)
    diags: list[Diagnostic] = []
    for r, (first, last, fields) in enumerate(table.rows):
        try:
            out[r] = [float(fields[c]) for c in cols]
        except ValueError:
            for c in cols:
                if _parse_float(fields[c]) is None:
                    diags.append(_cell_problem(table, first, last, c, fields[c]))
                    if len(diags) >= _MAX_FILE_ERRORS:
                        _raise(diags, "".join(table.lines))
            continue
        if not np.isfinite(out[r]).all():
            for c, v in zip(cols, out[r]):
                if not math.isfinite(v):
                    diags.append(_cell_problem(table, first, last, c, fields[c]))
            if len(diags) >= _MAX_FILE_ERRORS:
                break
    _raise(diags, "".join(table.lines))
    return out


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


def _target_column(table: _Table, col: int, float_dtype,
                   info: DataInfo | None = None) -> tuple[np.ndarray, list[str] | None]:
    values = [fields[col] for _, _, fields in table.rows]
    diags = [_cell_problem(table, first, last, col, fields[col])
             for first, last, fields in table.rows
             if fields[col].strip().lower() in _MISSING_MARKERS][:_MAX_FILE_ERRORS]
    _raise(diags, "".join(table.lines))
    stripped = [v.strip() for v in values]
    known = info.labels if info is not None else None
    if known is not None and set(stripped) <= set(known):
        return encode_labels(stripped, known)[0], list(known)
    if all(_INT_RE.fullmatch(v) for v in values):
        ints = [int(v) for v in values]
        if all(-2**63 <= i < 2**63 for i in ints):
            return np.array(ints, dtype=np.int64), (list(known) if known is not None else None)
    floats = [_parse_float(v) for v in values]
    if known is None and all(f is not None for f in floats):
        y = _numeric_columns(table, [col])[:, 0]
        return y.astype(float_dtype), None
    name = table.header[col] or f"#{col + 1}"
    if info is not None and known is None:
        r = next(r for r, f in enumerate(floats) if f is None)
        first, last, _ = table.rows[r]
        err = _numeric_trained_error(f'the target column "{name}" holds labels (e.g. {stripped[r]!r} on line '
                                     f'{first})', info, span=table.locate(first, last, col), path=table.path)
        err.sources[table.path] = "".join(table.lines)
        raise err
    ids, labels, unknown = encode_labels(stripped, known)
    for label, r in list(unknown.items())[:_MAX_FILE_ERRORS]:
        first, last, _ = table.rows[r]
        count = stripped.count(label)
        diags.append(table.error(
            "E735", f'label "{label}" in column "{name}" at line {first} is not one of the '
            f"{len(known)} labels the model was trained on"
            + (f" ({count} rows hold it)" if count > 1 else ""), unknown_label_hint(label, info),
            first, last, col))
    _raise(diags, "".join(table.lines))
    return ids, labels


def _text_column_errors(table: _Table, cols: list[int], hint) -> list[Diagnostic]:
    """One E705 per column whose values are all text (a label or a name left in), at its header,
    instead of one per row. ``hint(name)`` says what to do in the caller's terms."""
    sample = table.rows[:50]
    diags = []
    for c in cols:
        filled = [(first, f[c].strip()) for first, _, f in sample if f[c].strip().lower() not in _MISSING_MARKERS]
        if filled and all(_parse_float(f[c]) is None for _, _, f in sample):
            name = table.header[c] or f"#{c + 1}"
            line, value = filled[0]
            diags.append(table.error("E705", f'{table.path}: column "{name}" is not numeric (e.g. "{value}" '
                                     f"on line {line})", hint(name), table.header_line, table.header_line, c))
    return diags


_INDEX_NAMES = ("", "Unnamed: 0")


def _index_column_error(table: _Table, cols: list[int]) -> Diagnostic | None:
    """pandas' ``df.to_csv(path)`` writes the row index as a first column without a name (read back
    and written again, it is called "Unnamed: 0"): a feature that is only the row number."""
    if not cols or cols[0] != 0 or table.header[0] not in _INDEX_NAMES or not table.rows:
        return None
    values = [f[0] for _, _, f in table.rows]
    if not all(_INT_RE.fullmatch(v) for v in values):
        return None
    ints = [int(v) for v in values]
    if any(b <= a for a, b in zip(ints, ints[1:])):
        return None
    shown_name = f'"{table.header[0]}"' if table.header[0] else "no name"
    return table.error(
        "E737", f"{table.path}: the first column has {shown_name} and holds the row numbers "
        f"{', '.join(map(str, ints[:3]))}{', ...' if len(ints) > 3 else ''}: it is a pandas index, not a feature",
        "write the file with df.to_csv(path, index=False), or drop the column, e.g. "
        "pd.read_csv(path, index_col=0).to_csv(path, index=False)",
        table.header_line, table.header_line, 0)


def _select_features(table: _Table, exclude: set[int], info: DataInfo | None) -> tuple[list[int], list[str]]:
    """The feature columns (indices, in the model's order) and notes about ignored columns.

    With the training columns (``info.features``) they are matched by name: any order, extra
    columns ignored (a note), a missing one E736 naming it. Otherwise every column not excluded,
    in file order.
    """
    header = table.header
    candidates = [i for i in range(len(header)) if i not in exclude]
    if info is None or info.features is None:
        return candidates, []
    index = {h: i for i, h in enumerate(header) if i not in exclude}
    wanted = set(info.features)
    spare = [header[i] for i in candidates if header[i] not in wanted]
    diags = []
    for name in info.features:
        if name not in index:
            diags.append(table.error(
                "E736", f'{table.path} has no column "{name}", a feature the model was trained on; its columns '
                f"are: {quoted_list(header, 20)}",
                _join_hints(_did_you_mean(name, spare), f"the model reads the columns {quoted_list(info.features)} "
                            f"(from {info.where()}) by name, in any order; other columns are ignored"),
                table.header_line, table.header_line, None))
            if len(diags) >= _MAX_FILE_ERRORS:
                break
    _raise(diags, "".join(table.lines))
    notes = []
    if spare:
        notes.append(f"{table.path}: ignoring column{'s' if len(spare) > 1 else ''} {quoted_list(spare)}: "
                     f"not among the {len(info.features)} the model was trained on")
    return [index[name] for name in info.features], notes


def _train_text_hint(name: str) -> str:
    return (f'every column except the target must be numeric: encode "{name}" as numbers (e.g. one-hot '
            f'columns), drop it, or make it the target (target="{name}")')


def _csv_dataset(table: _Table, target: str | None, shown: str, float_dtype, span,
                 spec_path, info: DataInfo | None = None) -> Dataset:
    header = table.header
    source = "".join(table.lines)
    if target is None and info is not None and info.target and info.features is not None:
        target = info.target  # the training column, not "the last one", when the run remembers it
        if target not in header:
            d = table.error("E704", f'{shown} has no column "{target}", the target the model was trained on; '
                            f"its columns are: {quoted_list(header, 20)}",
                            _join_hints(_did_you_mean(target, header),
                                        'name the target column: csv("file.csv", target="<column>")'),
                            table.header_line, table.header_line, None)
            _raise([d], source)
    if target is None:
        col = len(header) - 1
    elif target in header:
        col = header.index(target)
    else:
        hint = _did_you_mean(target, header)
        message = (f'{shown} has no column "{target}"; its columns are: '
                   + ", ".join(f'"{h}"' for h in header))
        if span is not None:
            raise NncError.single("E704", message, hint=_join_hints(hint, f"check target= (the file "
                                  f"is {shown})"), span=span, path=spec_path)
        d = table.error("E704", message, _join_hints(hint, "pass target=\"<column>\""),
                        table.header_line, table.header_line, None)
        _raise([d], source)
    features, notes = _select_features(table, {col}, info)
    if not features:
        d = table.error("E703", f"{shown} has no feature columns: its only column is the target "
                        f'"{header[col]}"', "add one column per input feature", table.header_line,
                        table.header_line, None)
        _raise([d], source)
    if not table.rows:
        d = table.error("E734", f"{shown} has a header but no data rows",
                        "add one row per example below the header", table.header_line,
                        table.header_line, None)
        _raise([d], source)
    index = _index_column_error(table, features)
    _raise(([index] if index else []) + _text_column_errors(table, features, _train_text_hint), source)
    x = _numeric_columns(table, features)
    y, labels = _target_column(table, col, float_dtype, info)
    return Dataset(x.astype(float_dtype), y, shown, labels, path=shown, kind="csv",
                   features=[header[c] for c in features], target=header[col], notes=notes)


# ----------------------------------------------------------------------------------------------
# npz / npy

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


# ----------------------------------------------------------------------------------------------
# predict inputs

def _predict_text_hint(name: str) -> str:
    return f'prediction inputs hold only the model\'s input features: drop "{name}"'


def load_inputs(source: str | Path, info: DataInfo | None = None) -> Dataset:
    """Inputs for ``nnc predict --input``: a Dataset with x (N, ...) and no y.

    ``source`` is a path or, to choose what to read, the data-source syntax of ``--data``:
    ``npz("f.npz", x="images")`` (the array under that key), ``csv("f.csv", target="label")``
    (every column but ``label``).

    ``.npy``: the array. ``.npz``: the array under key ``x``, or the only array. ``.csv``: a header
    row, then numeric features (float64): with ``info.features`` (the training columns) the
    columns of those names, in the model's order, other columns ignored with a note and a missing
    one E736; without, every column in file order. NaN or infinity is E733 with its row.
    """
    key = target = None
    text = str(source)
    if isinstance(source, str) and S.looks_like_call(source) and not Path(source).expanduser().exists():
        kind, args = parse_source(source)
        if kind == "dataset":
            raise S.error("predict reads a file", source, SourceSpan(1, 1, 1, len(source) + 1),
                          'give a .npy, .npz or .csv file, or npz("f.npz", x="KEY") / csv("f.csv")')
        text = args["path"]
        if kind == "npz":
            key = args["x"]
        else:
            target = args.get("target")
        suffix = "." + kind
    else:
        suffix = Path(text).suffix.lower()
    p = Path(text).expanduser()
    shown = text
    if suffix not in (".npy", ".npz", ".csv"):
        raise NncError.single("E702", f"cannot read {shown}: unknown input file type "
                              f"{suffix or '(no extension)'}", hint="give a .npy, .npz or .csv file",
                              path=shown)
    data = _read_bytes(p, shown)
    if suffix == ".csv":
        table = _parse_csv(data, shown)
        exclude: set[int] = set()
        if target is not None:
            if target not in table.header:
                d = table.error("E704", f'{shown} has no column "{target}"; its columns are: '
                                f"{quoted_list(table.header, 20)}",
                                _join_hints(_did_you_mean(target, table.header), 'target= names a column to leave out'),
                                table.header_line, table.header_line, None)
                _raise([d], "".join(table.lines))
            exclude.add(table.header.index(target))
        if not table.rows:
            d = table.error("E734", f"{shown} has a header but no data rows",
                            "add one row per example below the header", table.header_line,
                            table.header_line, None)
            _raise([d], "".join(table.lines))
        cols, notes = _select_features(table, exclude, info)
        if info is None or info.features is None:
            index = _index_column_error(table, cols)
            _raise(([index] if index else []) + _text_column_errors(table, cols, _predict_text_hint),
                   "".join(table.lines))
        else:
            _raise(_text_column_errors(table, cols, lambda name: f'the model was trained on numbers in column '
                                       f'"{name}"'), "".join(table.lines))
        x = _numeric_columns(table, cols)
        return Dataset(x, None, shown, path=shown, kind="csv", features=[table.header[c] for c in cols],
                       notes=notes)
    loaded = _load_numpy(data, shown)
    if isinstance(loaded, _LazyNpz):
        if key is not None:
            if key not in loaded.keys:
                raise _missing_key(key, "x", loaded, None, None)
        elif "x" in loaded.keys:
            key = "x"
        elif len(loaded.keys) == 1:
            key = loaded.keys[0]
        else:
            keys = ", ".join(f'"{k}"' for k in loaded.keys) or "(none)"
            raise NncError.single("E707", f'{shown} has no array "x" and '
                                  f"{'no arrays' if not loaded.keys else 'several'}; its keys are: "
                                  f"{keys}", path=shown,
                                  hint=(f"choose the array: --input 'npz(\"{shown}\", x=\"{loaded.keys[0]}\")'"
                                        if loaded.keys else 'store the inputs under the key "x"'))
        arr = _numeric_array(loaded.get(key), shown, f'array "{key}"')
    else:
        arr = _numeric_array(loaded, shown, "the array")
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise NncError.single("E734", f"{shown} holds no examples (shape {fmt_shape(arr.shape)})",
                              hint="store one row per example along the first axis", path=shown)
    ds = Dataset(arr, None, shown, path=shown, kind="npz" if suffix == ".npz" else "npy")
    check_finite(ds)
    return ds


# ----------------------------------------------------------------------------------------------
# checks, fitting and splitting

def check_dataset(ds: Dataset) -> None:
    """Raise E734 (no rows or no features), E732 (x/y length mismatch) or E733 (NaN/inf)."""
    where = ds.path
    if ds.x.ndim == 0 or ds.x.shape[0] == 0:
        raise NncError.single("E734", f"{ds.name} has no examples", path=where,
                              hint="check the data source: it must hold at least one row")
    if ds.x.size == 0:
        raise NncError.single("E734", f"{ds.name} has no features (x has shape "
                              f"{fmt_shape(ds.x.shape)})", path=where,
                              hint="every example needs at least one input value")
    if ds.y is not None:
        if ds.y.ndim == 0 or ds.y.shape[0] != ds.x.shape[0]:
            ny = ds.y.shape[0] if ds.y.ndim else "a single value"
            raise NncError.single("E732", f"{ds.name}: x has {ds.x.shape[0]} rows but y has {ny}",
                                  path=where, hint="x and y need one row per example each")
    check_finite(ds)


def check_finite(ds: Dataset) -> None:
    """E733 naming the first row (1-based, and its 0-based index) of x or y that holds NaN or
    infinity: training, evaluation and prediction inputs alike."""
    for what, arr in (("x", ds.x), ("y", ds.y)):
        if arr is None or arr.dtype.kind not in "fc" or arr.ndim == 0 or arr.shape[0] == 0:
            continue
        flat = arr.reshape(arr.shape[0], -1)
        finite = np.isfinite(flat).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            row = int(bad[0])
            value = flat[row][~np.isfinite(flat[row])][0]
            more = f" (and {len(bad) - 1} more rows)" if len(bad) > 1 else ""
            raise NncError.single("E733", f"{ds.name}: {what} holds {value} in row {row + 1} "
                                  f"(0-based index {row}){more}", path=ds.path,
                                  hint="replace NaN/infinite values or drop those rows")


def fit_to_input(ds: Dataset, input_shape: tuple[int, ...], input_dtype: str, float_dtype, *,
                 input_name: str | None = None, span: SourceSpan | None = None,
                 spec_path: str | None = None) -> Dataset:
    """x reshaped to (N, *input_shape) and cast to the input's dtype; float y cast to float_dtype.

    The reshape happens when the per-example sizes agree (digits [1, 8, 8] <-> [64]); otherwise
    E731 naming both shapes. ``input_dtype`` "int64" (token ids) needs whole, non-negative values.
    """
    float_dtype = np.dtype(float_dtype)
    input_shape = tuple(input_shape)
    x = ds.x
    n = x.shape[0] if x.ndim else 0
    per_example = tuple(x.shape[1:])
    label = f"model input '{input_name}'" if input_name else "the model input"
    where = dict(span=span, path=spec_path if (span is not None or spec_path) else ds.path)
    fixed = all(isinstance(d, (int, np.integer)) and d > 0 for d in input_shape)
    if per_example != input_shape and not _matches(per_example, input_shape):
        if not fixed or math.prod(per_example) != math.prod(input_shape):
            raise NncError.single(
                "E731", f"{ds.name} has examples of shape {fmt_shape(per_example)} "
                f"({math.prod(per_example)} values) but {label} is {fmt_shape(input_shape)}"
                + (f" ({math.prod(input_shape)} values)" if fixed else ""),
                hint=f"use data whose examples have {math.prod(input_shape) if fixed else 'matching'}"
                     f" values, or declare the input as {fmt_shape(per_example)}", **where)
        x = x.reshape((n,) + input_shape)
    if input_dtype == "int64":
        if x.dtype.kind == "f":
            finite = np.isfinite(x)
            whole = finite & (x == np.round(np.where(finite, x, 0)))
            if not whole.all():
                row = int(np.flatnonzero(~whole.reshape(n, -1).all(axis=1))[0])
                value = x.reshape(n, -1)[row][~whole.reshape(n, -1)[row]][0]
                raise NncError.single("E731", f"{ds.name}: {label} takes integer token ids, but "
                                      f"row {row + 1} holds {value}",
                                      hint="store token ids as whole numbers (int64)", **where)
        elif x.dtype.kind not in "iub":
            raise NncError.single("E731", f"{ds.name}: {label} takes integer token ids, got "
                                  f"{x.dtype}", hint="store token ids as int64", **where)
        x = x.astype(np.int64)
        if x.size and x.min() < 0:
            row = int(np.flatnonzero((x.reshape(n, -1) < 0).any(axis=1))[0])
            raise NncError.single("E731", f"{ds.name}: token ids must be >= 0, row {row + 1} "
                                  f"holds {int(x.reshape(n, -1)[row].min())}",
                                  hint="token ids index the embedding table", **where)
    else:
        if x.dtype.kind not in "biuf":
            raise NncError.single("E731", f"{ds.name}: {label} takes numbers, got {x.dtype}",
                                  hint="store numeric features", **where)
        x = x.astype(float_dtype, copy=False)
    y = ds.y
    if y is not None:
        y = y.astype(np.int64, copy=False) if y.dtype.kind in "iub" else y.astype(float_dtype,
                                                                                  copy=False)
    return replace(ds, x=x, y=y)


def _matches(shape: tuple, pattern: tuple) -> bool:
    """Equal shapes, where None or -1 in ``pattern`` matches any size."""
    return len(shape) == len(pattern) and all(p is None or p == -1 or p == s
                                              for s, p in zip(shape, pattern))


def split_validation(ds: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """(train, validation): round(N * fraction) rows held out (at least 1 when fraction > 0).

    The held-out rows are the first of a permutation from ``np.random.default_rng(seed)``; both
    parts keep the file order of their rows (so ``shuffle=false`` trains in file order).
    ``fraction == 0`` gives (ds, an empty validation set).
    """
    n = len(ds)
    if not (0.0 <= fraction < 1.0):
        raise NncError.single("E734", f"validation fraction {fraction} is outside [0, 1)",
                              hint="hold out e.g. validation = 0.2", path=ds.path)
    n_val = int(round(n * fraction))
    if fraction > 0:
        n_val = max(1, n_val)
    if n_val >= n and n_val > 0:
        raise NncError.single("E734", f"{ds.name} has {n} rows: holding out {n_val} for "
                              f"validation leaves none to train on",
                              hint="use a smaller validation fraction or more data", path=ds.path)
    perm = np.random.default_rng(seed).permutation(n)
    val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])

    def take(idx: np.ndarray, suffix: str) -> Dataset:
        return replace(ds, x=ds.x[idx], y=None if ds.y is None else ds.y[idx],
                       name=f"{ds.name} ({suffix})")

    return take(train_idx, "training part"), take(val_idx, "validation part")
