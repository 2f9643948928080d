"""Small helpers shared by the compiler, runtime and CLI (standard library only)."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable, IO


@contextlib.contextmanager
def atomic_writer(path: Path, mode: str = "wb"):
    """Write to a temporary file beside ``path``, fsync, then rename over it.

    A process killed at any moment leaves either the old file or the new one, never a half-written
    file. On error the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent or "."))
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, mode, **({"encoding": "utf-8", "newline": ""} if "b" not in mode else {})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_writer(Path(path), "w") as fh:
        fh.write(text)


def atomic_write_with(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """``write(fh)`` into a temporary binary file, then rename it over ``path``."""
    with atomic_writer(Path(path), "wb") as fh:
        write(fh)
