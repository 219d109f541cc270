"""Deterministic, resumable batch order for DDP and single-process training.

Global batch b of epoch e is ``perm_e[b*B : (b+1)*B]`` of the ``DistributedSampler``
permutation (shuffle, drop_last), and rank r takes its r-th slice, so the union over ranks
never depends on the world size and iteration s can be reached again without replaying data.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader, DistributedSampler

from vknet_training.datasets import PairDataset, collate_pairs
from vknet_training.dist import DistContext


def epoch_batches(
    num_items: int, epoch: int, ctx: DistContext, per_rank: int, seed: int
) -> list[list[int]]:
    """This rank's batches of one epoch: DistributedSampler(shuffle, drop_last) order, chunked."""
    sampler = DistributedSampler(
        range(num_items),
        num_replicas=ctx.world_size,
        rank=ctx.rank,
        shuffle=True,
        seed=seed,
        drop_last=True,
    )
    sampler.set_epoch(epoch)
    idx = list(sampler)  # perm[rank::world]
    return [idx[i : i + per_rank] for i in range(0, len(idx) - per_rank + 1, per_rank)]


def check_enough_items(num_items: int, ctx: DistContext, per_rank: int) -> int:
    """Steps per epoch; ``ValueError`` when the data cannot fill one global batch."""
    steps = len(epoch_batches(num_items, 0, ctx, per_rank, 0))
    if steps == 0:
        raise ValueError(
            f"{num_items} key frames are too few for a global batch of "
            f"{per_rank * ctx.world_size} (--batch-size)"
        )
    return steps


def batch_stream(
    dataset: PairDataset, ctx: DistContext, per_rank: int, seed: int, start_step: int, workers: int
) -> Iterator[dict[str, Any]]:
    """Endless batches from iteration ``start_step`` on (deterministic, resumable)."""
    steps_per_epoch = check_enough_items(len(dataset), ctx, per_rank)
    epoch, skip = divmod(start_step, steps_per_epoch)
    while True:
        dataset.set_epoch(epoch)
        batches = epoch_batches(len(dataset), epoch, ctx, per_rank, seed)[skip:]
        loader = DataLoader(
            dataset,
            batch_sampler=batches,
            collate_fn=collate_pairs,
            num_workers=workers,
            persistent_workers=False,
        )
        yield from loader
        epoch, skip = epoch + 1, 0
