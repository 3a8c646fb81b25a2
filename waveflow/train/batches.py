"""The order of training batches: seeded per epoch, sharded over ranks, resumable mid-epoch.

Epoch ``e`` visits the training clips in the permutation ``DistributedSampler`` draws from
``seed + e``; rank ``r`` of ``W`` takes every ``W``-th index of it, so the ``k``-th global batch
holds the same clips whatever ``W`` is (the ranks' shares of a batch of ``B`` are disjoint and
together equal the ``B`` clips one process would take). To resume at batch ``b`` of an epoch, the
first ``b`` batches' indices are skipped without loading them. The dataset's crops are a pure
function of (seed, epoch, index), so the worker processes' random state plays no part.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from waveflow.train.distributed import DistributedEnv


class _Skip(Sampler[int]):
    """``sampler`` without its first ``num_skipped`` indices."""

    def __init__(self, sampler: Sampler[int], num_skipped: int):
        self.sampler = sampler
        self.num_skipped = num_skipped

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(iter(self.sampler), self.num_skipped, None)

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.num_skipped)  # type: ignore[arg-type]


def batches_per_epoch(num_clips: int, global_batch_size: int) -> int:
    """Full global batches in one epoch (the incomplete last batch is dropped)."""
    return num_clips // global_batch_size


def epoch_loader(
    dataset: Dataset,
    env: DistributedEnv,
    *,
    batch_size: int,
    seed: int,
    epoch: int,
    start_batch: int = 0,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """This rank's batches ``(batch_size, ...)`` of ``epoch``, starting at batch ``start_batch``.

    ``batch_size`` is the per-rank batch. ``dataset.set_epoch(epoch)`` is called here, before
    any worker process copies the dataset.
    """
    dataset.set_epoch(epoch)  # type: ignore[attr-defined]
    sampler = DistributedSampler(
        dataset, num_replicas=env.world_size, rank=env.rank, shuffle=True, seed=seed, drop_last=True
    )
    sampler.set_epoch(epoch)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=_Skip(sampler, start_batch * batch_size),
        drop_last=True,
        num_workers=num_workers,
        pin_memory=pin_memory,
        # The loader draws its workers' base seed from this generator rather than from torch's
        # global one, so starting an epoch (or resuming inside one) leaves the global state alone.
        generator=torch.Generator().manual_seed(seed + epoch),
    )
