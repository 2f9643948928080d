"""Standard output and error that fail loudly, or not at all, when their reader goes away.

``nnc check specs | head -1`` closes the pipe after one line and ``> /dev/full`` fails every
write. A verb whose *results* go to standard output (check, summary, compile --emit ir, predict
without -o, schema) must not exit 0 when they were not delivered, and no verb may print a
traceback (contract 6.3). ``nnc train`` writes its results to the run directory: when its console
goes away it keeps training, silently, so that the run completes with every file intact.

:class:`GuardedStream` wraps a text stream: the first write or flush that fails with an
``OSError`` (EPIPE, ENOSPC, EIO, ...) marks the stream failed and points its file descriptor at
``/dev/null`` (so the interpreter's own flush at exit stays quiet); a *fatal* stream then raises
:class:`OutputClosed` (the CLI turns it into exit 1), a non-fatal one drops that and every later
write.
"""
from __future__ import annotations

import contextlib
import os


class OutputClosed(Exception):
    """A fatal stream could not be written; ``str()`` is the user-facing reason."""


class GuardedStream:
    def __init__(self, stream, name: str, *, fatal: bool):
        self._stream = stream
        self.name = name
        self.fatal = fatal
        self.error: OSError | None = None

    def write(self, text: str) -> int:
        if self.error is None:
            try:
                return self._stream.write(text)
            except OSError as exc:
                self._fail(exc)
        if self.fatal:
            raise OutputClosed(self.reason())
        return len(text)

    def flush(self) -> None:
        if self.error is None:
            try:
                self._stream.flush()
                return
            except OSError as exc:
                self._fail(exc)
        if self.fatal:
            raise OutputClosed(self.reason())

    def reason(self) -> str:
        err = self.error
        why = (err.strerror or str(err)) if err is not None else "closed"
        return f"cannot write to {self.name}: {why}"

    def _fail(self, exc: OSError) -> None:
        self.error = exc
        with contextlib.suppress(Exception):  # no real descriptor (a test's capture): nothing to mute
            fd = self._stream.fileno()
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)

    def isatty(self) -> bool:
        try:
            return self.error is None and self._stream.isatty()
        except (AttributeError, ValueError, OSError):
            return False

    def __getattr__(self, name):  # encoding, fileno, buffer, ... of the wrapped stream
        return getattr(self._stream, name)
