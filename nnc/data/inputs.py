"""Inputs for ``nnc predict --input``: a file or a source, features matched by name."""
from __future__ import annotations

from pathlib import Path
from nnc.compiler import datasource as S
from nnc.compiler.datasource import parse_source
from nnc.errors import NncError, SourceSpan, fmt_shape

from .base import DataInfo, Dataset, _did_you_mean, _join_hints
from .labels import quoted_list
from .tables import _index_column_error, _numeric_columns, _parse_csv, _raise, _select_features, _text_column_errors
from .arrays import _LazyNpz, _load_numpy, _missing_key, _numeric_array
from .sources import _read_bytes
from .checks import check_finite
from .images import image_inputs, image_options
from .text import text_inputs
from nnc.vocab import IMAGE_SUFFIXES


def _predict_text_hint(name: str) -> str:
    return f'prediction inputs hold only the model\'s input features: drop "{name}"'


def load_inputs(source: str | Path, info: DataInfo | None = None, *, image_options: dict | None = None) -> Dataset:
    """Inputs for ``nnc predict --input``: a Dataset with x (N, ...) and no y.

    ``source`` is a path or, to choose what to read, the data-source syntax of ``--data``:
    ``npz("f.npz", x="images")`` (the array under that key), ``csv("f.csv", target="label")``
    (every column but ``label``), ``images("folder")``.

    ``.npy``: the array. ``.npz``: the array under key ``x``, or the only array. ``.csv``: a header
    row, then numeric features (float64): with ``info.features`` (the training columns) the
    columns of those names, in the model's order, other columns ignored with a note and a missing
    one E736; without, every column in file order; with ``info.text`` (a text model), the run's
    text column as token ids through its vocabulary. NaN or infinity is E733 with its row.
    An image file (``.png .jpg .jpeg .bmp .gif``) or a folder: its images, at the size and color of
    ``info.images`` or else ``image_options`` (``{"size": [H, W], "color": ...}``); the Dataset's
    ``files`` name each row's image.
    """
    key = target = None
    text = str(source)
    folder_args: dict = {}
    if isinstance(source, str) and S.looks_like_call(source) and not Path(source).expanduser().exists():
        kind, args = parse_source(source)
        if kind == "dataset":
            raise S.error("predict reads a file", source, SourceSpan(1, 1, 1, len(source) + 1),
                          'give a .npy, .npz or .csv file, or npz("f.npz", x="KEY") / csv("f.csv")')
        if kind == "images":
            text, folder_args = args["folder"], args
            suffix = "/"
        else:
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
    if suffix == "/" or suffix in IMAGE_SUFFIXES or p.is_dir():
        return _image_inputs(p, shown, folder_args, info, image_options)
    if suffix not in (".npy", ".npz", ".csv"):
        raise NncError.single("E702", f"cannot read {shown}: unknown input file type "
                              f"{suffix or '(no extension)'}",
                              hint="give a .npy, .npz or .csv file, an image (" + " ".join(IMAGE_SUFFIXES)
                                   + ") or a folder of images", path=shown)
    data = _read_bytes(p, shown)
    if suffix == ".csv":
        table = _parse_csv(data, shown)
        if info is not None and info.text is not None:
            if not table.rows:
                d = table.error("E734", f"{shown} has a header but no data rows",
                                "add one row per example below the header", table.header_line,
                                table.header_line, None)
                _raise([d], "".join(table.lines))
            return text_inputs(table, info, shown)
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


def _image_inputs(p: Path, shown: str, args: dict, info: DataInfo | None, fallback: dict | None) -> Dataset:
    """An image file or a folder of images at the run's size and color (E731 when neither the run
    nor the spec says which)."""
    if info is None or info.images is None:
        if args.get("size") is None and fallback is None:
            raise NncError.single("E731", f"{shown}: images as input, but the model was not trained on images and "
                                  "its input is not [1, H, W] or [3, H, W]", path=shown,
                                  hint='give the size: --input \'images("folder", size=[H, W], color=rgb)\'')
        info = DataInfo("images", "the spec", images=fallback) if args.get("size") is None else None
    size, color = image_options(args, info, shown, dict(path=shown))
    return image_inputs(p, shown, size, color)
