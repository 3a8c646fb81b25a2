"""DistributedDataParallel through ``torchrun``: environment, process group, rank-0 helpers.

waveflow has no launcher of its own. ``torchrun`` starts one process per device and sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :meth:`DistributedEnv.from_environ`
reads them, and :func:`init_process_group` joins the group (NCCL on CUDA, gloo on CPU). Without
those variables (or with ``WORLD_SIZE=1``) training runs in a single process and every helper
here is a no-op, so the training loop calls them unconditionally.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import Tensor

_REQUIRED = ("WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistributedEnv:
    """Where this process sits in a ``torchrun`` job (rank 0 of 1 when run directly)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes logs, checkpoints and the progress bar."""
        return self.rank == 0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> DistributedEnv:
        """Read torchrun's variables; ``ValueError`` if ``RANK`` is set but the rest is incomplete."""
        environ = os.environ if environ is None else environ
        if "RANK" not in environ:
            return cls()
        missing = [name for name in _REQUIRED if name not in environ]
        if missing:
            raise ValueError(
                f"RANK is set but {', '.join(missing)} is not: launch distributed training with torchrun "
                f"(e.g. torchrun --nproc_per_node=2 -m waveflow train ...)"
            )
        try:
            rank, local_rank, world_size = (int(environ[k]) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE"))
        except ValueError:
            values = {k: environ[k] for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
            raise ValueError(f"torchrun variables must be integers, got {values}") from None
        if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
            raise ValueError(
                f"inconsistent torchrun variables: RANK={rank}, WORLD_SIZE={world_size}, LOCAL_RANK={local_rank}"
            )
        return cls(rank=rank, local_rank=local_rank, world_size=world_size)


def init_process_group(env: DistributedEnv, device: torch.device) -> None:
    """Join the process group (NCCL for CUDA devices, gloo otherwise); nothing for one process.

    ``MASTER_ADDR``/``MASTER_PORT`` (or torchrun's rendezvous) come from the environment.
    """
    if not env.is_distributed:
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", rank=env.rank, world_size=env.world_size, device_id=device)
    else:
        dist.init_process_group("gloo", rank=env.rank, world_size=env.world_size)


def destroy_process_group() -> None:
    if _active():
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def barrier() -> None:
    if _active():
        dist.barrier()


def all_reduce_(tensor: Tensor, op: Literal["sum", "mean", "max"] = "sum") -> Tensor:
    """In place: sum (``"sum"``), mean (``"mean"``) or maximum (``"max"``) over ranks."""
    if not _active():
        return tensor
    if op == "max":
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    else:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        if op == "mean":
            tensor /= dist.get_world_size()
    return tensor


def all_gather_object(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` in a single process)."""
    if not _active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
