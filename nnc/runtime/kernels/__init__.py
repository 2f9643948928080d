"""NumPy kernels: forward and backward for every op, side by side.

Each op is one :class:`Kernel` registered in :data:`KERNELS` under the op's catalogue name, in a
module of its family: ``dense``, ``conv``, ``upsample``, ``pool``, ``shape``, ``reduce``, ``norm``,
``recurrent``, ``attention``, ``activations`` (and ``special`` for erf). ``tests/test_catalogue.py`` fails when an op of the
catalogue has no kernel.

    y, cache = KERNELS[op].forward(xs, w, a, ctx)
    dxs, dw = KERNELS[op].backward(dy, cache)

- ``xs``: the op's inputs, batch axis first; ``w``: its weights and state by contract name
  (PyTorch names and layouts, see the language spec 4.1); ``a``: its attrs, already normalised by
  the compiler; ``ctx``: a :class:`Ctx` (train/eval mode and the random generator for dropout).
- ``backward`` returns the gradient of each input in order (``None`` for integer inputs) and the
  gradient of each *trainable* weight by name. State (batchnorm's running statistics) gets none.
- The forward's cache holds exactly what the backward reads. Kernels are stateless objects; all
  per-call data lives in the cache, so one kernel may serve many layers.

Conventions:
- dtype is preserved: float32 in gives float32 out (and float32 gradients); float64 gives float64.
  Python scalars are used for constants so NumPy never upcasts float32 arrays.
- Everything is vectorised over the batch; recurrent layers loop over time only; convolution and
  pooling loop over kernel positions only (kh * kw iterations) where they loop at all.
- Returned arrays (outputs and gradients) may be views of the inputs or of ``dy``, or the very
  same objects (identity, flatten, add, ...). Callers must not modify them in place.
- Per-example axes in attrs (``softmax``/``log_softmax``/``concat`` ``axis``) exclude the batch
  axis: NumPy axis = axis + 1. A negative axis is taken as a NumPy axis counted from the end.
"""
from __future__ import annotations

from . import activations, attention, conv, dense, norm, pool, recurrent, reduce, shape  # noqa: F401  (they register)
from . import upsample  # noqa: F401  (registers upsample2d)
from .base import KERNELS, Ctx, Kernel, register
from .special import erf, erfc, sigmoid

__all__ = ["Ctx", "Kernel", "KERNELS", "register", "erf", "erfc", "sigmoid"]
