"""Deterministic, resumable, rank-sharded sampling and per-sample random generators.

The order of epoch ``e`` is a permutation drawn from ``(seed, e)`` only, so any process can
rebuild it; each rank takes every ``world_size``-th index (padded by wrapping, as
``torch.utils.data.DistributedSampler`` does) and a resumed run starts ``start_batch`` batches in.
Datasets draw their augmentation from :func:`sample_rng` ``(seed, epoch, index)``, which makes
a sample the same whichever worker or process loads it, and whenever.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler


def sample_rng(seed: int, epoch: int, index: int, *extra: int) -> np.random.Generator:
    """The random generator of one sample in one epoch (non-negative integer keys)."""
    return np.random.default_rng([int(seed), int(epoch), int(index), *map(int, extra)])


def derive_seed(*keys: int) -> int:
    """A 63-bit seed derived from non-negative integer keys (e.g. seed, step, rank)."""
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def epoch_permutation(size: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """Sample order of an epoch: a permutation of ``range(size)`` drawn from ``(seed, epoch)``."""
    if not shuffle:
        return np.arange(size)
    return np.random.default_rng([int(seed), int(epoch), 0x5A11]).permutation(size)


class EpochSampler(Sampler[int]):
    """Sampler whose order depends only on ``(seed, epoch)``, sharded over ranks, resumable.

    Args:
        size: Dataset length.
        seed: Base seed.
        batch_size: Per-process batch size (the unit of ``start_batch``).
        rank: This process's rank.
        world_size: Number of processes.
        shuffle: Permute each epoch (else dataset order).
    """

    def __init__(
        self,
        size: int,
        *,
        seed: int,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
    ) -> None:
        if size < 1:
            raise ValueError("EpochSampler needs a non-empty dataset")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.size = size
        self.seed = seed
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.epoch = 0
        self.start_batch = 0
        self.per_rank = math.ceil(size / world_size)

    @property
    def batches_per_epoch(self) -> int:
        """Full batches per epoch on each rank (the last partial batch is dropped)."""
        return self.per_rank // self.batch_size

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch and the first batch to yield (for resuming mid-epoch)."""
        if not 0 <= start_batch <= self.batches_per_epoch:
            raise ValueError(f"start_batch {start_batch} outside [0, {self.batches_per_epoch}]")
        self.epoch = int(epoch)
        self.start_batch = int(start_batch)

    def indices(self) -> np.ndarray:
        """This rank's indices of the current epoch, from ``start_batch`` on."""
        order = epoch_permutation(self.size, self.seed, self.epoch, self.shuffle)
        total = self.per_rank * self.world_size
        if total > self.size:
            order = np.concatenate([order, order[: total - self.size]])
        mine = order[self.rank : total : self.world_size]
        return mine[self.start_batch * self.batch_size : self.batches_per_epoch * self.batch_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.batch_size
