"""Folders of images: ``images("folder", size=[H, W], color=grayscale|rgb)`` (contract 5.3).

- One subfolder per class; the class ids follow the sorted subfolder names (code-point order), so
  ``labels[id]`` is the folder name. Names starting with ``.`` are skipped (``.git``, ``.DS_Store``).
- The images of a class are its files ending in ``.png .jpg .jpeg .bmp .gif`` (any case), in its
  subfolders too, in sorted path order; other files are ignored, with a note.
- Each image is converted to 8-bit grayscale (``L``) or ``RGB`` by Pillow (an alpha channel is
  dropped; a GIF gives its first frame), resized to ``size`` with Pillow's bilinear filter (which,
  when shrinking, widens its support to antialias) unless it has that size already, scaled to
  ``[0, 1]`` (divided by 255) and laid out ``[C, H, W]`` (C = 1 or 3). Images of mixed sizes are fine.
- Pillow is an optional extra (``pip install 'nnc[images]'``); without it, E713 says so.

Read with a run's ``data.json`` (``nnc evaluate --data``, a validation folder), the size and color
are the training source's (a different one given is E715) and the folder names take the ids of the
training label map (E735 for a name it lacks). ``nnc predict --input`` takes one image file or a
folder (every image under it, in sorted path order).

Errors: E702 (no such folder, or a file where a folder is expected), E710 (no class subfolders),
E711 (a class folder without images), E712 (an image Pillow cannot read: not an image, truncated),
E713 (no Pillow), E715 (size or color differ from the training source's).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from nnc import vocab
from nnc.errors import Diagnostic, NncError

from .base import _MAX_FILE_ERRORS, DataInfo, Dataset, _did_you_mean, _join_hints
from .labels import quoted_list, unknown_label_hint

SUFFIXES = vocab.IMAGE_SUFFIXES
_DEFAULT_COLOR = vocab.SOURCES.signatures["images"].by_name["color"].default
_EXAMPLE = "e.g. photos/cat/001.jpg, photos/dog/002.jpg for images(\"photos\", size=[64, 64])"


def pillow():
    """PIL.Image, or E713 with the command that installs it."""
    try:
        from PIL import Image
    except ImportError:
        raise NncError.single("E713", "reading images needs Pillow, which is not installed",
                              hint="pip install 'nnc[images]' (or pip install pillow)") from None
    return Image


def is_image(path: Path) -> bool:
    return path.suffix.lower() in SUFFIXES


def _files(folder: Path) -> tuple[list[Path], list[Path]]:
    """(image files, other files) under ``folder``, recursively, sorted by path; hidden names skipped."""
    images, others = [], []
    for p in sorted(folder.rglob("*"), key=lambda q: q.relative_to(folder).as_posix()):
        if any(part.startswith(".") for part in p.relative_to(folder).parts) or not p.is_file():
            continue
        (images if is_image(p) else others).append(p)
    return images, others


def read_image(path: Path, size, color: str, shown: str | None = None) -> np.ndarray:
    """One image as float32 (C, H, W) in [0, 1]; E712 if Pillow cannot read it."""
    Image = pillow()
    h, w = int(size[0]), int(size[1])
    shown = shown or str(path)
    try:
        with Image.open(path) as im:
            im.load()  # NOTE: Image.open is lazy; a truncated file fails here, not later
            im = im.convert("L" if color == "grayscale" else "RGB")
            if im.size != (w, h):
                im = im.resize((w, h), getattr(Image, "Resampling", Image).BILINEAR)
            arr = np.asarray(im, dtype=np.float32) / np.float32(255)
    except Image.DecompressionBombError as exc:
        raise _unreadable(shown, f"too large to decode safely ({exc})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise _unreadable(shown, str(exc) or type(exc).__name__) from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _unreadable(shown: str, why: str) -> NncError:
    hint = ("the file is incomplete (an interrupted download or copy?): replace it or remove it"
            if "truncated" in why.lower() else "replace it with a PNG, JPEG, BMP or GIF image, or remove it")
    return NncError.single("E712", f"cannot read the image {shown}: {why}", hint=hint, path=shown)


def image_options(args: dict, info: DataInfo | None, what: str, where: dict) -> tuple[list[int], str]:
    """The size [H, W] and color to read with: the training source's under ``info`` (a different
    one given is E715), else the arguments' (``size`` required)."""
    size, color = args.get("size"), args.get("color")
    trained = info.images if info is not None else None
    if trained is not None:
        for key, mine in (("size", size), ("color", color)):
            if mine is not None and (list(mine) if key == "size" else mine) != trained[key]:
                raise NncError.single(
                    "E715", f"{what}: `{key}` is {_show(mine)}, but the model was trained on images with "
                    f"{key}={_show(trained[key])} ({info.where()})",
                    hint="leave size and color out: they are taken from the training source", **where)
        return list(trained["size"]), trained["color"]
    if size is None:
        raise NncError.single("E709", f"{what}: images() needs `size`", hint='e.g. images("photos", size=[64, 64])',
                              **where)
    return [int(v) for v in size], color or _DEFAULT_COLOR


def _show(v) -> str:
    return "[" + ", ".join(str(int(x)) for x in v) + "]" if isinstance(v, (list, tuple)) else str(v)


def _read_all(files: list[Path], shown_of, size, color) -> np.ndarray:
    """(N, C, H, W) float32 of every file; every unreadable one reported (up to 10), each at its path."""
    pillow()
    channels = vocab.IMAGE_CHANNELS[color]
    x = np.empty((len(files), channels, int(size[0]), int(size[1])), dtype=np.float32)
    bad: list[Diagnostic] = []
    for i, f in enumerate(files):
        try:
            x[i] = read_image(f, size, color, shown_of(f))
        except NncError as err:
            bad.extend(err.diagnostics)
            if len(bad) >= _MAX_FILE_ERRORS:
                break
    if bad:
        raise NncError(bad)
    return x


def _folder_problem(p: Path, shown: str, where: dict, what: str) -> None:
    if not p.exists():
        parent = p.resolve().parent
        hint = f"looked for {p.resolve()}"
        if parent.is_dir():
            hint = _join_hints(hint, _did_you_mean(p.name, [c.name for c in parent.iterdir() if c.is_dir()]))
        raise NncError.single("E702", f"image folder not found: {shown}", hint=hint, **where)
    if not p.is_dir():
        raise NncError.single("E702", f"{shown} is a file, not a folder: {what}",
                              hint=f"name the folder that holds one subfolder per class; {_EXAMPLE}", **where)


def load_image_folder(p: Path, shown: str, args: dict, float_dtype=np.float32, *, span=None, spec_path=None,
                      info: DataInfo | None = None) -> Dataset:
    """A class-per-subfolder image folder as x (N, C, H, W) float in [0, 1] and y (N,) class ids."""
    where = dict(span=span, path=spec_path) if span is not None else dict(path=shown)
    size, color = image_options(args, info, f'images("{shown}")', where)
    _folder_problem(p, shown, where, "images() reads a folder with one subfolder of images per class")
    classes = sorted(d.name for d in p.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        loose = [f for f in p.iterdir() if f.is_file() and is_image(f)]
        held = f" (it holds {len(loose)} image{'s' if len(loose) != 1 else ''} directly)" if loose else ""
        raise NncError.single("E710", f"{shown} has no class subfolders{held}",
                              hint=f"put each class's images in a subfolder named after the class: {_EXAMPLE}",
                              path=shown)
    files: list[Path] = []
    ids: list[int] = []
    ignored: list[Path] = []
    empty: list[Diagnostic] = []
    known = info.labels if info is not None else None
    index = {label: i for i, label in enumerate(known if known is not None else classes)}
    unknown = [c for c in classes if c not in index]
    if unknown:
        raise NncError.single(
            "E735", f'{shown}: class folder "{unknown[0]}" is not one of the {len(index)} labels the model was '
            f"trained on" + (f"; nor are {quoted_list(unknown[1:], 5)}" if len(unknown) > 1 else ""),
            hint=unknown_label_hint(unknown[0], info), path=str(p / unknown[0]))
    for c in classes:
        found, others = _files(p / c)
        ignored += others
        if not found:
            extra = f"; it holds {len(others)} other file{'s' if len(others) != 1 else ''}" if others else ""
            empty.append(Diagnostic("E711", f"class folder {p / c} holds no images ({' '.join(SUFFIXES)}){extra}",
                                    None, "add the class's images to it, or remove the folder", str(p / c)))
            continue
        files += found
        ids += [index[c]] * len(found)
    if empty:
        raise NncError(empty[:_MAX_FILE_ERRORS])
    x = _read_all(files, str, size, color)
    notes = []
    if ignored:
        kinds = sorted({f.suffix.lower() or "(no extension)" for f in ignored})
        notes.append(f"{shown}: ignoring {len(ignored)} file{'s' if len(ignored) != 1 else ''} that "
                     f"{'are' if len(ignored) != 1 else 'is'} not an image ({', '.join(kinds[:5])})")
    labels = list(known) if known is not None else classes
    return Dataset(x.astype(float_dtype, copy=False), np.array(ids, dtype=np.int64), shown, labels, path=shown,
                   kind="images", notes=notes, source=shown, images={"size": size, "color": color})


def image_inputs(p: Path, shown: str, size, color: str) -> Dataset:
    """Prediction inputs: one image file, or every image under a folder (sorted by path). The
    Dataset's ``files`` name each row's image (relative to the folder)."""
    if p.is_file():
        files, names = [p], [shown]
    else:
        _folder_problem(p, shown, dict(path=shown), "give an image file or a folder of images")
        files, _ = _files(p)
        if not files:
            raise NncError.single("E734", f"{shown} holds no images ({' '.join(SUFFIXES)})",
                                  hint="give an image file or a folder that holds images", path=shown)
        names = [f.relative_to(p).as_posix() for f in files]
    x = _read_all(files, str, size, color)
    return Dataset(x, None, shown, path=shown, kind="images", images={"size": list(size), "color": color},
                   files=names)
