"""Loading a data source (``dataset``, ``csv``, ``npz``) by its validated arguments."""
from __future__ import annotations

from pathlib import Path
from typing import Any
import numpy as np
from nnc.compiler import datasource as S
from nnc.errors import NncError, SourceSpan
from nnc.lang.types import ArgError, Str, python_value

from .base import BUILTIN_DATASETS, DataInfo, Dataset, _did_you_mean, _join_hints
from .builtin import _builtin
from .tables import _csv_dataset, _parse_csv
from .arrays import _npz_dataset
from .images import load_image_folder


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
        if value is not None and (isinstance(sig.by_name[key].type, Str) or key == sig.params[0].name):
            if not isinstance(value, (str, Path)):
                raise _source_error("E709", f"{kind}(): `{key}` must be a string, got {value!r}",
                                    f'write it in quotes, e.g. {key}="..."', span, spec_path)
        elif value is not None:  # a number, a flag, a size: checked by its declared type
            try:
                value = sig.by_name[key].type.coerce(python_value(value))
            except ArgError as err:
                raise _source_error("E709", f"{kind}(): `{key}`: {err.message}", err.hint or f"usage: {sig.usage()}",
                                    span, spec_path) from None
        out[key] = str(value) if isinstance(value, Path) else value
    for key in S.required(sig):
        if not out.get(key):
            raise _source_error("E709", f"{kind}() needs `{key}`", f"e.g. {S.example(kind)}",
                                span, spec_path)
    # NOTE: a spec's source arrives with every default filled in: only other values count as given
    problem = S.option_problem(kind, out, {k for k, v in out.items() if v is not None and v != sig.by_name[k].default})
    if problem is not None:
        raise _source_error("E709", f"{kind}(): {problem[0]}", problem[1], span, spec_path)
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
                info: DataInfo | None = None, fit_rows=None) -> Dataset:
    """Load a data source: ``dataset`` ({"name"}), ``csv`` ({"path", "target"?}, and a text column's
    {"text", "vocab", "length", "tokenizer", "lowercase"}), ``npz`` ({"path", "x"="x", "y"="y"};
    ``y=None`` loads no targets) or ``images`` ({"folder", "size"?, "color"?}).

    ``fit_rows(N)`` gives the rows of the training split (the indices a validation split leaves),
    on which a text column's vocabulary is fitted; None fits it on every row. A text column read
    with ``info`` takes its vocabulary instead, as an image folder takes its size and color.

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
    if kind == "images":
        p, shown = _resolve(args["folder"], base_dir)
        return load_image_folder(p, shown, args, float_dtype, span=span, spec_path=spec_path, info=info)
    p, shown = _resolve(args["path"], base_dir)
    data = _read_bytes(p, shown, span=span, spec_path=spec_path)
    if kind == "csv":
        table = _parse_csv(data, shown)
        return _csv_dataset(table, args.get("target"), shown, float_dtype, span, spec_path, info, args, fit_rows)
    return _npz_dataset(data, shown, args["x"], args.get("y"), float_dtype, span, spec_path, info)
