"""Multi-process training on PyTorch's distributed engine.

Introduced on the book's "Deploying the model" page.

``torchrun --nproc_per_node=N -m defectlib train ...`` starts N copies of the
command line; each finds its rank in the environment torchrun sets
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``),
and :func:`init` joins them into one process group: NCCL when every process
has a GPU, gloo otherwise.  The training loop then wraps the model in
:class:`~torch.nn.parallel.DistributedDataParallel`, each process trains on its
own share of every epoch's images (:class:`~defectlib.training.DefectBalancedSampler`
with ``rank``/``world_size``) and rank 0 alone validates, evaluates, and writes
the checkpoint and the run record.

The config is unchanged, so the run's hash is that of a single-process run;
the record holds ``world_size``.  Each process takes ``batch_size / N`` images
per step, so the global batch, the number of steps and the learning-rate
schedule are those of the config.  Batch-norm statistics are computed per
process on its share of the batch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    """Where this process stands: its rank, the number of processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and prints progress."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


SINGLE = Context()


def default_device() -> torch.device:
    """The first GPU where PyTorch sees one (``CUDA_VISIBLE_DEVICES=""`` hides them), else the CPU."""
    return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")


def launched() -> bool:
    """Whether this process was started by ``torchrun`` with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init() -> Context:
    """Join the process group torchrun describes (once), or return the single-process context
    (on the GPU where there is one, see :func:`default_device`).

    Raises:
        RuntimeError: torchrun's environment is incomplete.
    """
    if not launched():
        return Context(device=default_device())
    missing = [k for k in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(f"WORLD_SIZE > 1 but {', '.join(missing)} not set: start with torchrun")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    if torch.cuda.is_available() and torch.cuda.device_count() >= local_world:
        device, backend = torch.device("cuda", local_rank), "nccl"
        torch.cuda.set_device(device)
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=world)
    return Context(rank, world, local_rank, local_world, device)


def threads_per_process(ctx: Context, requested: int | None) -> int:
    """CPU threads of one process: the config's, else the machine's cores shared among local processes."""
    if requested:
        return requested
    return max(1, (os.cpu_count() or 1) // ctx.local_world_size)


def broadcast(obj: Any, ctx: Context) -> Any:
    """Rank 0's ``obj`` on every rank (any picklable object)."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_sum(values: list[float], ctx: Context) -> list[float]:
    """Element-wise sum of ``values`` over all ranks."""
    if not ctx.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return t.tolist()


def barrier(ctx: Context) -> None:
    if ctx.enabled:
        dist.barrier()


def finish(ctx: Context) -> None:
    """Leave the process group (end of the command)."""
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
