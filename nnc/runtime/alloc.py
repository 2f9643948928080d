"""Allocator tuning for the training loop (glibc only; a no-op elsewhere).

Every batch allocates and frees the same large arrays (activations, im2col columns, gradients).
With glibc's defaults, blocks above the dynamic mmap threshold are returned to the OS when freed,
and a freed top of the heap is trimmed, so each batch page-faults its buffers back in: about 1.4x
slower for a small CNN (benchmarks/train_speed.py). Keeping freed memory in the process makes the
next batch reuse it. Peak memory is unchanged: it is the memory the previous batch already used.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_done = False


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks for reuse. Returns whether the allocator was tuned."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # 32 MiB is glibc's largest mmap threshold on 64-bit; trimming only above 1 GiB of free top heap
    ok = mallopt(_M_MMAP_THRESHOLD, 32 << 20) == 1 and mallopt(_M_TRIM_THRESHOLD, 1 << 30) == 1
    _done = ok
    return ok
