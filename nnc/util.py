"""Small helpers shared by the compiler, runtime and CLI (standard library only).

Every file nnc writes goes through :func:`atomic_writer`, which keeps the promises of the contract's
section 6.3 in one place:

* the write is atomic: a temporary file beside the target, fsync, rename; a process killed at any
  moment leaves the old file or the new one, never half of one;
* it goes *through* symbolic links: the link stays, the file it points to gets the new content;
* an existing file keeps its permission bits (and, when nnc runs as root, its owner);
* a target that exists but is not a regular file (a directory, a FIFO, a device such as
  ``/dev/full``) is refused, never replaced;
* a missing parent directory, or a parent that is a file, is an error that says so (``nnc train``
  creates its run directory itself, before writing into it).

Each of these is an :class:`~nnc.errors.NncError` with the caller's error code, so every
verb reports its own code (E764 run files, E765 predictions, E804 ONNX, E002 specs) with one rule.
"""
from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import IO, Callable

from .errors import NncError

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def resolve_output(path: Path | str, code: str) -> tuple[Path, os.stat_result | None]:
    """The file a write to ``path`` must replace (symbolic links followed, even a dangling one)
    and its current ``stat`` (None if it does not exist yet).

    Raises ``code`` when the target exists but is not a regular file, when its directory does not
    exist, or when a parent is a file.
    """
    shown = str(path)
    target = Path(os.path.realpath(os.fspath(path)))
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        st = None  # a parent is a file: reported below
    except OSError as exc:
        raise NncError.single(code, f"cannot write `{shown}`: {exc.strerror or exc}", path=shown,
                              hint="choose another output path") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        what = _kind(st.st_mode)
        hint = (f"name a file inside it, e.g. {Path(shown) / 'out'}" if stat.S_ISDIR(st.st_mode)
                else "nnc writes regular files only and never replaces another kind; choose a file path")
        raise NncError.single(code, f"cannot write `{shown}`: it is {what}", path=shown, hint=hint)
    if st is None:
        check_parent(target.parent if os.path.islink(path) else Path(path).parent, code, shown)
    return target, st


def check_parent(parent: Path, code: str, shown: str) -> None:
    """``parent`` must be an existing directory: the one rule for every verb's output (6.3)."""
    probe = Path(parent)
    while not probe.exists() and probe != probe.parent:  # the nearest existing ancestor
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise NncError.single(code, f"cannot write `{shown}`: `{probe}` is a file, not a directory",
                              path=shown, hint="choose an output path whose folders are folders")
    if not Path(parent).is_dir():
        raise NncError.single(code, f"cannot write `{shown}`: the directory `{parent}` does not exist",
                              path=shown, hint=f"create it first (mkdir -p {parent}) or choose another path")


@contextlib.contextmanager
def atomic_writer(path: Path | str, mode: str = "wb", *, code: str = "E764"):
    """Write to a temporary file beside ``path``'s target, fsync, then rename over the target.

    On any error the temporary file is removed and the target is untouched; ``OSError``s become
    ``NncError(code)``. See the module docstring for links, permissions and non-regular targets.
    """
    shown = str(path)
    target, st = resolve_output(path, code)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=str(target.parent))
    except OSError as exc:
        raise NncError.single(code, f"cannot write `{shown}`: {exc.strerror or exc}", path=shown,
                              hint="check that the directory is writable, or choose another path") from None
    try:
        if st is not None:  # keep the existing file's permissions (and owner, where we may)
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
            if os.geteuid() == 0 and (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
                with contextlib.suppress(OSError):
                    os.chown(tmp, st.st_uid, st.st_gid)
        else:  # mkstemp makes 0600 files; give the usual permissions
            os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, mode, **({"encoding": "utf-8", "newline": ""} if "b" not in mode else {})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError):
            raise NncError.single(code, f"cannot write `{shown}`: {exc.strerror or exc}", path=shown,
                                  hint="free some disk space or choose another path") from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path | str, text: str, *, code: str = "E764") -> None:
    with atomic_writer(path, "w", code=code) as fh:
        fh.write(text)


def atomic_write_with(path: Path | str, write: Callable[[IO[bytes]], None], *, code: str = "E764") -> None:
    """``write(fh)`` into a temporary binary file, then rename it over ``path``'s target."""
    with atomic_writer(path, "wb", code=code) as fh:
        write(fh)
