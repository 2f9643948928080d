"""Training progress on standard error: a bar per epoch on a terminal, plain lines otherwise."""
from __future__ import annotations

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
        width = 24
        done = int(width * b / n)
        eta = (now - self.t0) / b * (n - b)
        bar = "#" * done + "." * (width - done)
        self.stream.write(f"\repoch {self.epoch}/{self.epochs} [{bar}] {b}/{n} loss {loss:.4f} eta {eta:4.1f}s ")
        self.stream.flush()

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
