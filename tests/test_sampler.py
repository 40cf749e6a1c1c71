"""Deterministic resumable sampler and InfiniteLoader: world-size / accumulation invariance, resume, epochs."""

import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fastgen.datasets.loader import InfiniteLoader
from fastgen.datasets.samplers import IndexStream, epoch_permutation, rank_batch_positions
from fastgen.utils.distributed.launch import free_port


class RangeDataset(torch.utils.data.Dataset):
    """Item i = {"x": i * 10 + 1}: values tell exactly which index was read."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"x": torch.tensor(i * 10 + 1), "idx": torch.tensor(i)}


def take(loader, k):
    it = iter(loader)
    return [next(it)["idx"].tolist() for _ in range(k)]


def test_each_epoch_is_a_permutation_and_order_depends_on_seed():
    stream = IndexStream(10, seed=3, shuffle=True)
    order = stream.indices(range(40))
    epochs = [order[i:i + 10] for i in range(0, 40, 10)]
    for e, epoch in enumerate(epochs):
        assert sorted(epoch) == list(range(10))
        assert epoch == epoch_permutation(3, e, 10).tolist()
    assert len({tuple(e) for e in epochs}) == 4  # each epoch reshuffled
    assert IndexStream(10, seed=3).indices(range(40)) == order  # pure function of the seed
    assert IndexStream(10, seed=4).indices(range(10)) != order[:10]
    assert IndexStream(10, seed=3, shuffle=False).indices(range(25)) == list(range(10)) * 2 + list(range(5))


def test_rank_batch_positions_follow_contract():
    # micro-step k on rank r of W takes [start + (k*W + r)*B, +B)
    assert list(rank_batch_positions(100, 2, 1, 4, 3)) == [100 + (2 * 4 + 1) * 3 + i for i in range(3)]


@pytest.mark.parametrize("n", [13, 64])
def test_same_global_batches_across_world_size_and_accumulation(n):
    ds = RangeDataset(n)
    one = take(InfiniteLoader(ds, 8, seed=5, rank=0, world_size=1), 6)
    ranks = [take(InfiniteLoader(ds, 4, seed=5, rank=r, world_size=2), 6) for r in range(2)]
    accum = take(InfiniteLoader(ds, 4, seed=5, rank=0, world_size=1), 12)
    for k in range(6):
        assert ranks[0][k] + ranks[1][k] == one[k]
        assert accum[2 * k] + accum[2 * k + 1] == one[k]
    stream = IndexStream(n, seed=5).indices(range(48))
    assert sum(one, []) == stream


def test_resume_at_position_is_the_exact_continuation():
    ds = RangeDataset(11)
    full = InfiniteLoader(ds, 3, seed=1, rank=1, world_size=2)
    it = iter(full)
    for _ in range(5):
        next(it)
    assert full.position == 5 * 3 * 2
    rest = [next(it)["x"].tolist() for _ in range(7)]
    resumed = InfiniteLoader(ds, 3, seed=1, sampler_start_idx=30, rank=1, world_size=2)
    assert [b["x"].tolist() for b in take_batches(resumed, 7)] == rest
    # state_dict round trip
    other = InfiniteLoader(ds, 3, seed=1, rank=1, world_size=2)
    other.load_state_dict({"position": 30, "seed": 1, "shuffle": True})
    assert [b["x"].tolist() for b in take_batches(other, 7)] == rest
    with pytest.raises(ValueError, match="seed=2"):
        other.load_state_dict({"position": 30, "seed": 2, "shuffle": True})


def take_batches(loader, k):
    it = iter(loader)
    return [next(it) for _ in range(k)]


def test_worker_loader_matches_in_process_and_reports_yielded_position():
    ds = RangeDataset(17)
    plain = take_batches(InfiniteLoader(ds, 4, seed=2, rank=0, world_size=1), 5)
    workers = InfiniteLoader(ds, 4, seed=2, rank=0, world_size=1, num_workers=1, prefetch_factor=4)
    it = iter(workers)
    got = [next(it) for _ in range(2)]
    assert workers.position == 8  # workers have prefetched more; position counts what was yielded
    got += [next(it) for _ in range(3)]
    for a, b in zip(plain, got):
        assert torch.equal(a["x"], b["x"]) and torch.equal(a["idx"], b["idx"])
    assert workers.position == 20


def test_invalid_arguments_are_reported():
    with pytest.raises(ValueError, match="rank must be in"):
        InfiniteLoader(RangeDataset(4), 2, rank=2, world_size=2)
    with pytest.raises(ValueError, match="sampler_start_idx"):
        InfiniteLoader(RangeDataset(4), 2, sampler_start_idx=-1)
    with pytest.raises(ValueError, match="batch_size"):
        InfiniteLoader(RangeDataset(4), 0)


def _dist_worker(rank, world_size, port, out_dir):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        loader = InfiniteLoader(RangeDataset(13), 4, seed=9)  # rank/world from torch.distributed
        np.save(os.path.join(out_dir, f"rank{rank}.npy"), np.array(take(loader, 4) + [[loader.rank, loader.world_size,
                                                                                        loader.position, 0]]))
    finally:
        dist.destroy_process_group()


def test_rank_and_world_default_from_torch_distributed(tmp_path):
    mp.spawn(_dist_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    single = take(InfiniteLoader(RangeDataset(13), 8, seed=9, rank=0, world_size=1), 4)
    per_rank = [np.load(tmp_path / f"rank{r}.npy").tolist() for r in range(2)]
    for r in range(2):
        assert per_rank[r][4] == [r, 2, 32, 0]
    for k in range(4):
        assert per_rank[0][k] + per_rank[1][k] == single[k]
