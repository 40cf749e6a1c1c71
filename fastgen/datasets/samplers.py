"""Deterministic, resumable sample order.

The global stream of dataset indices is a pure function of (seed, dataset length, shuffle): global position p lies in
epoch ``p // N`` at offset ``p % N``, and epoch e is a permutation drawn from a generator seeded by ``(seed, e)``.
Nothing but the start position is needed to resume, and every rank can compute any part of the stream on its own.

Micro-step k on rank r of a world of W ranks with per-rank batch B takes global positions
``[start + (k*W + r)*B, start + (k*W + r + 1)*B)`` (contract §5), so one optimizer step with accumulation A consumes
the same A*W*B consecutive positions whatever the split between ranks and accumulation rounds.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

import numpy as np
import torch


def seed_from(*keys: int) -> int:
    """A 63-bit seed derived from integer keys without collisions between nearby keys (SeedSequence hashing)."""
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(1, dtype=np.uint64)[0]
    return int(state) & ((1 << 63) - 1)


def epoch_permutation(seed: int, epoch: int, length: int) -> np.ndarray:
    """Permutation of range(length) used in `epoch`: numpy PCG64 seeded by SeedSequence([seed, epoch])."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(epoch)])))
    return rng.permutation(length).astype(np.int64)


def rank_batch_positions(start: int, step: int, rank: int, world_size: int, batch_size: int) -> range:
    """Global positions read by micro-step `step` on `rank`: [start + (k*W + r)*B, +B) (contract §5)."""
    first = start + (step * world_size + rank) * batch_size
    return range(first, first + batch_size)


class IndexStream:
    """Maps global positions to dataset indices; `length=None` means an infinite dataset (index = position)."""

    def __init__(self, length: int | None, seed: int = 0, shuffle: bool = True, cache_epochs: int = 2):
        if length is not None and length <= 0:
            raise ValueError(f"dataset length must be positive, got {length}; the dataset is empty")
        self.length = length
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self._cache_epochs = cache_epochs
        self._perms: OrderedDict[int, np.ndarray] = OrderedDict()

    def _permutation(self, epoch: int) -> np.ndarray:
        perm = self._perms.get(epoch)
        if perm is None:
            perm = epoch_permutation(self.seed, epoch, self.length)
            self._perms[epoch] = perm
            while len(self._perms) > self._cache_epochs:
                self._perms.popitem(last=False)
        return perm

    def index(self, position: int) -> int:
        """Dataset index at global `position`."""
        if position < 0:
            raise ValueError(f"sample position must be >= 0, got {position}")
        if self.length is None:
            return int(position)
        epoch, offset = divmod(int(position), self.length)
        if not self.shuffle:
            return offset
        return int(self._permutation(epoch)[offset])

    def indices(self, positions) -> list[int]:
        return [self.index(p) for p in positions]


class RankBatchSampler(torch.utils.data.Sampler):
    """Infinite batch sampler for a torch DataLoader: yields this rank's list of dataset indices per micro-step.

    Iteration starts at micro-step 0 relative to `start`; the loader owning it tracks how many batches it yielded.
    """

    def __init__(self, stream: IndexStream, start: int, rank: int, world_size: int, batch_size: int):
        self.stream = stream
        self.start = int(start)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.batch_size = int(batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        step = 0
        while True:
            positions = rank_batch_positions(self.start, step, self.rank, self.world_size, self.batch_size)
            yield self.stream.indices(positions)
            step += 1
