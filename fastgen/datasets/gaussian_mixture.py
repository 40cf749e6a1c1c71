"""Toy data from a Gaussian mixture (fastgen/utils/gmm.py): the exact-oracle distribution for method tests.

Item i of the global stream is a pure function of (seed, i): items are drawn in blocks of `block_size`, block b from
a torch generator seeded by SeedSequence([seed, b]). So any rank can produce any item, resume needs only the position,
and the global batches do not depend on the world size. With `num_samples` the first `num_samples` items form a
finite dataset that the sampler shuffles and cycles like an image dataset.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from fastgen.datasets.loader import InfiniteLoader, synthetic_labels
from fastgen.datasets.samplers import seed_from
from fastgen.utils.gmm import GaussianMixture, make_gmm


class GaussianMixtureDataset(torch.utils.data.Dataset):
    """Items `{"real": float32 [D], "condition": one-hot component [K] or [0], "neg_condition", "idx"}`."""

    def __init__(self, gmm: GaussianMixture, seed: int = 0, num_samples: int | None = None,
                 use_labels: bool = False, block_size: int = 1024, cached_blocks: int = 4):
        if num_samples is not None and int(num_samples) < 1:
            raise ValueError(f"num_samples must be >= 1 or None (infinite stream), got {num_samples}")
        self.gmm = gmm
        self.seed = int(seed)
        self.num_samples = None if num_samples is None else int(num_samples)
        self.use_labels = bool(use_labels)
        self.label_dim = gmm.num_components if self.use_labels else 0
        self.block_size = int(block_size)
        self._cached_blocks = cached_blocks
        self._blocks: OrderedDict[int, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    def __len__(self) -> int:
        if self.num_samples is None:
            raise TypeError("infinite Gaussian-mixture stream has no length")  # lets loaders treat it as infinite
        return self.num_samples

    def _block(self, block: int) -> tuple[torch.Tensor, torch.Tensor]:
        cached = self._blocks.get(block)
        if cached is None:
            generator = torch.Generator().manual_seed(seed_from(self.seed, block))
            x, labels = self.gmm.sample(self.block_size, generator)
            cached = (x.to(torch.float32), labels)
            self._blocks[block] = cached
            while len(self._blocks) > self._cached_blocks:
                self._blocks.popitem(last=False)
        return cached

    def __getitems__(self, indices: list[int]) -> dict:
        index = torch.as_tensor(indices, dtype=torch.int64)
        if self.num_samples is not None and (index.min() < 0 or index.max() >= self.num_samples):
            raise IndexError(f"index out of range for a dataset of {self.num_samples} samples")
        real = torch.empty(len(indices), *getattr(self.gmm, "sample_shape", (self.gmm.dim,)))  # AR(1) videos too
        labels = torch.empty(len(indices), dtype=torch.int64)
        blocks = index // self.block_size
        for block in blocks.unique().tolist():
            rows = (blocks == block).nonzero().squeeze(1)
            x, y = self._block(block)
            real[rows] = x[index[rows] % self.block_size]
            labels[rows] = y[index[rows] % self.block_size]
        if self.use_labels:
            condition = torch.nn.functional.one_hot(labels, self.label_dim).to(torch.float32)
        else:
            condition = torch.zeros(len(indices), 0)
        return {"real": real, "condition": condition, "neg_condition": torch.zeros_like(condition), "idx": index}

    def __getitem__(self, idx: int) -> dict:
        return {key: value[0] for key, value in self.__getitems__([idx]).items()}


class GaussianMixtureLoader(InfiniteLoader):
    """Batches of `real` [B, dim] from `make_gmm(gmm_name, dim)`; `condition` = one-hot component if use_labels."""

    def __init__(self, gmm_name: str = "ring8", dim: int = 2, batch_size: int = 256, use_labels: bool = False,
                 seed: int = 0, sampler_start_idx: int | None = None, num_samples: int | None = None,
                 rank: int | None = None, world_size: int | None = None, shuffle: bool = True):
        self.gmm = make_gmm(gmm_name, dim)
        dataset = GaussianMixtureDataset(self.gmm, seed=seed, num_samples=num_samples, use_labels=use_labels)
        super().__init__(dataset, batch_size=batch_size, seed=seed, shuffle=shuffle,
                         sampler_start_idx=sampler_start_idx, rank=rank, world_size=world_size, num_workers=0)
        self.label_dim = dataset.label_dim

    @classmethod
    def smoke_batch(cls, kwargs: dict, batch_size: int) -> dict:
        """`train.py --smoke`: real mixture samples (they are cheap), one-hot components when use_labels."""
        gmm = make_gmm(kwargs.get("gmm_name", "ring8"), int(kwargs.get("dim", 2)))
        real, components = gmm.sample(batch_size)
        labels = synthetic_labels(batch_size, gmm.num_components if kwargs.get("use_labels", False) else 0)
        if kwargs.get("use_labels", False):
            labels["condition"] = torch.nn.functional.one_hot(components, gmm.num_components).float()
        return {"real": real.to(torch.float32), **labels}
