"""Data-parallel training with PyTorch's own machinery: ``torch.distributed.run`` launches,
``torch.distributed`` (gloo on CPU, NCCL on CUDA) connects, ``DistributedDataParallel`` averages.

- ``nnc train --engine torch --nproc N`` (:func:`launch`) runs ``torch.distributed.run`` in the
  ``nnc`` process itself (``--standalone``: one machine, a free local port), which starts N
  workers ``python -m nnc.cli train ...`` with the same arguments.
- A process started by ``torchrun`` (the ``RANK`` / ``WORLD_SIZE`` variables set, any number of
  machines) joins that process group instead (:func:`world_from_env`).

``batch_size`` stays the global batch: every process draws the same batches from nnc's generator
(the same seed) and takes its contiguous share of each (:func:`share`, ``numpy.array_split``'s
split: sizes differ by at most one, and a process gets no rows when the batch has fewer rows than
there are processes). How the shares' gradients add up to the full batch's is the engine's
business (``nnc.torch.engine``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import NncError


@dataclass(frozen=True)
class World:
    """This process' place among the processes: rank (0 prints and writes), their number, and its
    index on its machine (its GPU under ``--device cuda``)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def world_from_env(environ=os.environ) -> World | None:
    """The world ``torchrun`` describes in the environment (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``), or None outside of it."""
    if "RANK" not in environ or "WORLD_SIZE" not in environ:
        return None
    try:
        rank, size = int(environ["RANK"]), int(environ["WORLD_SIZE"])
        local = int(environ.get("LOCAL_RANK", rank))
    except ValueError:
        raise NncError.single("E782", f"RANK={environ['RANK']!r} and WORLD_SIZE={environ['WORLD_SIZE']!r} are not "
                              "numbers", hint="start data-parallel runs with `torchrun` or `--nproc N`") from None
    if not 0 <= rank < size:
        raise NncError.single("E782", f"RANK={rank} is not in [0, WORLD_SIZE={size})",
                              hint="start data-parallel runs with `torchrun` or `--nproc N`")
    return World(rank, size, local)


def share(n: int, world: World) -> tuple[int, int]:
    """Rows [start, end) of a batch of ``n`` rows that this process takes."""
    base, extra = divmod(n, world.size)
    start = world.rank * base + min(world.rank, extra)
    return start, start + base + (world.rank < extra)


# ----------------------------------------------------------------------------------------------
# devices

def resolve_device(spec: str | None, world: World):
    """``--device`` as a ``torch.device``: ``auto`` is CUDA when it is available, else the CPU;
    ``cuda`` with several processes on a machine is GPU ``LOCAL_RANK`` for each. E781 when CUDA or
    that GPU is not there."""
    import torch
    spec = spec or "auto"
    if spec == "cpu" or (spec == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise NncError.single("E781", f"`--device {spec}`: CUDA is not available on this machine "
                              f"(torch {torch.__version__}{'' if torch.version.cuda else ', a CPU-only build'})",
                              hint="train on the CPU with `--device cpu` (or `auto`), or install a CUDA build of "
                                   "PyTorch (pytorch.org) on a machine with an NVIDIA GPU")
    count = torch.cuda.device_count()
    if spec in ("auto", "cuda"):
        index = world.local_rank if world.size > 1 else 0
    else:
        index = int(spec.split(":")[1])
        if world.size > 1:
            raise NncError.single("E781", f"`--device {spec}` names one GPU, but {world.size} processes train",
                                  hint="use `--device cuda`: each process then takes the GPU of its LOCAL_RANK")
    if index >= count:
        raise NncError.single("E781", f"there is no GPU cuda:{index}: this machine has {count}",
                              hint=f"use one of cuda:0 ... cuda:{count - 1}, or fewer processes per machine")
    return torch.device("cuda", index)


# ----------------------------------------------------------------------------------------------
# the process group

def init_process_group(world: World, device) -> None:
    """Join the process group torchrun set up (``env://``): NCCL for CUDA, gloo for the CPU."""
    import torch
    import torch.distributed as dist
    if world.size == 1 or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        dist.init_process_group(backend, rank=world.rank, world_size=world.size)
    except (RuntimeError, ValueError) as exc:
        raise NncError.single("E782", f"process {world.rank} of {world.size} could not join the process group "
                              f"({backend}): {exc}",
                              hint="start data-parallel runs with `nnc train --nproc N` or `torchrun` "
                                   "(MASTER_ADDR, MASTER_PORT and the other processes must be reachable)") from None


def barrier(world: World) -> None:
    if world.size > 1:
        import torch.distributed as dist
        dist.barrier()


def shutdown(world: World) -> None:
    if world.size > 1:
        import torch.distributed as dist
        if dist.is_initialized():
            dist.destroy_process_group()


# ----------------------------------------------------------------------------------------------
# --nproc: launching through torch.distributed.run

def launch(argv: list[str], nproc: int) -> int:
    """Run ``nnc train ARGV`` on ``nproc`` local processes through ``torch.distributed.run``
    (``torchrun --standalone --nproc-per-node N -m nnc.cli train ...``), in this process; the
    workers see RANK and WORLD_SIZE and join. Returns 0, or raises E782 naming the failed ranks
    (their own errors are already on standard error)."""
    import logging

    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    # NOTE: torchrun's default for several processes per machine, set here so it does not warn
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    for name in ("torch.distributed.elastic", "torch.distributed.run", "torch.distributed.launcher"):
        logging.getLogger(name).setLevel(logging.CRITICAL)   # nnc reports a failure itself (E782)
    args = torchrun.get_args_parser().parse_args(
        ["--standalone", "--nproc-per-node", str(nproc), "--max-restarts", "0", "--module", "nnc.cli", *argv])
    try:
        torchrun.run(args)
    except ChildFailedError as exc:
        failed = sorted(exc.failures)
        codes = ", ".join(f"rank {r}: exit code {exc.failures[r].exitcode}" for r in failed)
        raise NncError.single("E782", f"data-parallel training on {nproc} processes failed ({codes})",
                              hint="the failing process' own error is printed above it; the checkpoint of the "
                                   "last finished epoch (if any) is intact") from None
    return 0
