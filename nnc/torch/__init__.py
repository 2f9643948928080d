"""The PyTorch engine: the same IR trained with PyTorch, on a GPU or on many processes.

PyTorch is an optional extra (``pip install 'nnc[torch]'``). Nothing here is imported by ``nnc
check`` or by the NumPy runtime; the modules below import torch at their top, so reach them
through :func:`require_torch` first, which turns a missing torch into a clear error (E780):

- ``lowerings``: one ``torch.nn.Module`` per op, keyed by the catalogue's op names
  (:data:`nnc.torch.lowerings.LOWERINGS`; ``tests/test_catalogue.py`` fails when an op lacks one);
- ``module``: the IR as one ``torch.fx.GraphModule`` whose submodules are the layers, named as the
  weights contract names them (``state_dict`` keys are the contract's keys, see :class:`KeyMap`);
- ``engine``: :class:`~nnc.torch.engine.TorchEngine`, the engine of the shared training loop
  (``nnc.runtime.train.Trainer``): forward, backward and optimizer step on torch tensors;
- ``distributed``: ``--nproc`` (through ``torch.distributed.run``), joining an external
  ``torchrun``, the process group, contiguous batch shares;
- ``emit``: ``nnc compile --emit torch``, a standalone module that needs only torch and numpy.

The semantics are the NumPy runtime's (docs/engines.md says how that is tested).
"""
from __future__ import annotations

from ..errors import NncError

INSTALL = "pip install 'nnc[torch]'"


def require_torch(what: str = "`--engine torch`"):
    """The ``torch`` module, or E780 naming what needed it and the command that installs it."""
    try:
        import torch
    except ImportError as exc:
        raise NncError.single(
            "E780", f"{what} needs PyTorch, which is not installed ({exc})",
            hint=f"install it with `{INSTALL}` (or see pytorch.org for a CUDA build); "
                 "the NumPy engine (`--engine numpy`, the default) needs nothing more") from None
    return torch
