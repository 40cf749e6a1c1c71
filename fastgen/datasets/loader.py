"""Shared loader machinery: an infinite, resumable, world-size-invariant batch iterator over a map-style dataset.

Every loader in this package is an `InfiniteLoader` over some dataset that returns dicts. The order of samples comes
from `samplers.IndexStream` (pure function of seed, epoch, position), so the loader's only state is the global
position. The trainer resumes a run by passing `sampler_start_idx = iterations_done * batch_size * accum * world_size`
(or by `load_state_dict` of a saved `state_dict()`); the continuation is exactly what the uninterrupted run would read.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, default_collate

from fastgen.datasets.samplers import IndexStream, RankBatchSampler, rank_batch_positions


def collate_items(items):
    """default_collate, except that a dataset's `__getitems__` may already return a collated dict (fast path)."""
    if isinstance(items, dict):
        return items
    return default_collate(items)


def fetch_items(dataset, indices: list[int]) -> dict:
    """A collated batch of `dataset`'s items at `indices` (its `__getitems__` fast path when it has one)."""
    if hasattr(dataset, "__getitems__"):
        return collate_items(dataset.__getitems__(indices))
    return collate_items([dataset[i] for i in indices])


def resolve_rank_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Defaults from torch.distributed when it is initialised, else rank 0 of 1."""
    initialised = torch.distributed.is_available() and torch.distributed.is_initialized()
    if rank is None:
        rank = torch.distributed.get_rank() if initialised else 0
    if world_size is None:
        world_size = torch.distributed.get_world_size() if initialised else 1
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
    return int(rank), int(world_size)


def synthetic_labels(batch_size: int, label_dim: int) -> dict[str, torch.Tensor]:
    """`condition` (random one-hot rows [B, label_dim], or [B, 0] when unlabelled), `neg_condition` (zeros), `idx`."""
    if label_dim:
        condition = torch.nn.functional.one_hot(torch.randint(0, label_dim, (batch_size,)), label_dim).float()
    else:
        condition = torch.zeros(batch_size, 0)
    return {"condition": condition, "neg_condition": torch.zeros_like(condition),
            "idx": torch.arange(batch_size, dtype=torch.int64)}


def synthetic_image_batch(batch_size: int, shape, label_dim: int) -> dict[str, torch.Tensor]:
    """A `--smoke` batch shaped like the image loaders': `real` uniform in [-1, 1] [B, *shape] plus labels."""
    real = torch.rand(batch_size, *(int(d) for d in shape)) * 2 - 1
    return {"real": real, **synthetic_labels(batch_size, label_dim)}


def dataset_length(dataset) -> int | None:
    """len(dataset), or None for infinite datasets (those that define no __len__)."""
    try:
        return len(dataset)
    except TypeError:
        return None


class InfiniteLoader:
    """Yields collated batch dicts forever; rank r's micro-step k reads global items [start + (k*W + r)*B, +B).

    `.position` is the number of global items consumed by the batches already yielded (all ranks together, so it is
    the same number on every rank); it never counts batches that worker processes prefetched but did not hand out.
    """

    def __init__(
        self,
        dataset,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        sampler_start_idx: int | None = 0,
        rank: int | None = None,
        world_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        prefetch_factor: int | None = None,
    ):
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        start = 0 if sampler_start_idx is None else int(sampler_start_idx)
        if start < 0:
            raise ValueError(f"sampler_start_idx must be >= 0 (a global sample position), got {sampler_start_idx}")
        if int(num_workers) < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.rank, self.world_size = resolve_rank_world(rank, world_size)
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)
        self.prefetch_factor = prefetch_factor
        self.stream = IndexStream(dataset_length(dataset), seed=self.seed, shuffle=self.shuffle)
        self._position = start

    @property
    def position(self) -> int:
        """Global sample position after the batches yielded so far (pass it as sampler_start_idx to resume)."""
        return self._position

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    def _fetch(self, indices: list[int]):
        return fetch_items(self.dataset, indices)

    def _iter_in_process(self, start: int) -> Iterator[dict]:
        step = 0
        while True:
            positions = rank_batch_positions(start, step, self.rank, self.world_size, self.batch_size)
            batch = self._fetch(self.stream.indices(positions))
            step += 1
            self._position = start + step * self.global_batch_size
            yield batch

    def _iter_workers(self, start: int) -> Iterator[dict]:
        sampler = RankBatchSampler(self.stream, start, self.rank, self.world_size, self.batch_size)
        kwargs = {"prefetch_factor": self.prefetch_factor} if self.prefetch_factor is not None else {}
        data_loader = DataLoader(
            self.dataset,
            batch_sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate_items,
            pin_memory=self.pin_memory,
            **kwargs,
        )
        for step, batch in enumerate(data_loader, start=1):
            self._position = start + step * self.global_batch_size
            yield batch

    def __iter__(self) -> Iterator[dict]:
        """A fresh infinite iterator continuing from `.position`."""
        start = self._position
        if self.num_workers == 0:
            return self._iter_in_process(start)
        return self._iter_workers(start)

    def state_dict(self) -> dict:
        return {"position": self._position, "seed": self.seed, "shuffle": self.shuffle}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a saved position; iterators made before this call keep their old position."""
        for key in ("seed", "shuffle"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(
                    f"loader state has {key}={state[key]!r} but this loader has {key}={getattr(self, key)!r}; "
                    "resuming would change the sample order; build the loader with the saved value"
                )
        position = int(state["position"])
        if position < 0:
            raise ValueError(f"loader state position must be >= 0, got {position}")
        self._position = position
