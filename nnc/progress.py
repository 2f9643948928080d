"""Training progress on standard error: a bar per epoch on a terminal, plain lines otherwise."""
from __future__ import annotations

import os
import shutil
import sys
import time


class Progress:
    """A progress bar per epoch on a terminal; plain lines otherwise; nothing with ``quiet``."""

    def __init__(self, quiet: bool = False, stream=None):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) and not quiet
        self.t0 = 0.0
        self.last = 0.0

    def start_epoch(self, epoch: int, epochs: int) -> None:
        self.epoch, self.epochs = epoch, epochs
        self.t0 = self.last = time.perf_counter()

    def batch(self, b: int, n: int, loss: float) -> None:
        if not self.tty:
            return
        now = time.perf_counter()
        if b != n and now - self.last < 0.1:
            return
        self.last = now
        self.stream.write("\r" + self.bar_line(b, n, loss, (now - self.t0) / b * (n - b), self.columns()))
        self.stream.flush()

    def bar_line(self, b: int, n: int, loss: float, eta: float, columns: int) -> str:
        """The bar for batch ``b`` of ``n``, never wider than ``columns - 1`` characters: a line as wide
        as the terminal would wrap, and each redraw would then start a new line."""
        head = f"epoch {self.epoch}/{self.epochs} "
        tail = f" {b}/{n} loss {loss:.4f} eta {eta:4.1f}s"
        room = columns - 1 - len(head) - len(tail) - 2           # 2 for the brackets
        if room < 5:                                             # too narrow for a bar: the numbers only
            return (head + tail.lstrip())[:max(columns - 1, 1)]
        width = min(24, room)
        done = int(width * b / n)
        return f"{head}[{'#' * done}{'.' * (width - done)}]{tail}"

    def columns(self) -> int:
        """The terminal's width now (it may be resized while training)."""
        try:
            return os.get_terminal_size(self.stream.fileno()).columns or 80
        except (AttributeError, ValueError, OSError):
            return shutil.get_terminal_size((80, 24)).columns

    def clear(self) -> None:
        """Erase a half-drawn bar (before an error is printed)."""
        if self.tty:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()

    def end_epoch(self, text: str) -> None:
        if self.quiet:
            return
        self.clear()
        print(text, file=self.stream, flush=True)

    def info(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream, flush=True)


def format_log(log, epochs: int, metric_names: list[str]) -> str:
    parts = [f"epoch {log.epoch:>{len(str(epochs))}}/{epochs}", f"loss {log.loss:.4f}"]
    parts += [f"{m} {log.metrics[m]:.4f}" for m in metric_names]
    if log.val_loss is not None:
        parts.append(f"val_loss {log.val_loss:.4f}")
        parts += [f"val_{m} {log.val_metrics[m]:.4f}" for m in metric_names]
    parts += [f"lr {log.lr:.3g}", f"{log.seconds:.2f}s"]
    return "  ".join(parts)
