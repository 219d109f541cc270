"""torchrun / single-process distributed context (DDP: gloo on CPU, nccl on CUDA).

``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` are read once, in ``init_distributed``; everything
else receives the resulting ``DistContext``. File I/O is guarded with ``ctx.is_main``.

    ctx = init_distributed("auto")        # torchrun or plain python
    ...
    loss_mean = ctx.mean(loss.detach())   # average over ranks (identity single-process)
    ctx.close()
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def mean(self, x: Tensor) -> Tensor:
        """All-reduce average over ranks (a new tensor; identity copy single-process)."""
        x = x.detach().clone()
        if self.distributed:
            dist.all_reduce(x, op=dist.ReduceOp.SUM)
            x /= self.world_size
        return x

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """'auto' -> cuda:<local_rank> if CUDA is available, else cpu; 'cuda' -> cuda:<local_rank>."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        device = f"cuda:{local_rank}"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(
            f"--device {device!r} is not a device; expected auto, cpu, cuda or cuda:N"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device!r} requested but CUDA is not available")
    return dev


def init_distributed(device: str = "auto", timeout_s: float = 1800.0) -> DistContext:
    """Read the torchrun environment once and initialise the process group if WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world > 1:
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(
                backend=backend,
                rank=rank,
                world_size=world,
                timeout=datetime.timedelta(seconds=timeout_s),
            )
        log.info("rank %d/%d (local %d) on %s, backend %s", rank, world, local_rank, dev, backend)
    return DistContext(rank=rank, local_rank=local_rank, world_size=world, device=dev)
