"""BLAS thread control for loops of small matrix products.

A recurrent layer runs one small matrix product per time step (batch x units times units x gates).
OpenBLAS splits even those over its threads, and the hand-off costs more than the product: with one
BLAS thread the LSTM benchmark's layer runs about 2x faster on a 2-core machine (much more when
other processes occupy the second core, where threads waiting for each other stall).
:func:`blas_threads` limits the BLAS to ``n`` threads inside a ``with`` block (about 50 us to enter
and leave), through threadpoolctl when it is installed (the ``speed`` extra); without it the block
changes nothing.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext

try:  # pragma: no cover - depends on the environment
    from threadpoolctl import ThreadpoolController
except ImportError:  # pragma: no cover
    ThreadpoolController = None

_CONTROLLER = None


def _controller():
    global _CONTROLLER
    if _CONTROLLER is None and ThreadpoolController is not None:
        try:
            _CONTROLLER = ThreadpoolController()     # finds the BLAS NumPy loaded (about 1 ms, once)
        except Exception:                            # pragma: no cover - an unusual BLAS build
            _CONTROLLER = False
    return _CONTROLLER or None


def blas_threads(n: int):
    """A context manager: the BLAS uses at most ``n`` threads inside it (a no-op without threadpoolctl)."""
    ctl = _controller()
    if ctl is None:
        return nullcontext()
    return ctl.limit(limits=n, user_api="blas")


#: per-step products with at most this many multiply-adds run single-threaded
SMALL_PRODUCT = 1 << 22


@contextmanager
def small_products(macs: int):
    """Single-threaded BLAS inside the block when a loop's products have at most SMALL_PRODUCT
    multiply-adds each; otherwise the BLAS's own threading."""
    if macs > SMALL_PRODUCT:
        yield
        return
    with blas_threads(1):
        yield
