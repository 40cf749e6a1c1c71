"""AR(1) "videos" [D, T, 1, 1] (fastgen/utils/ar1_video.py): the exact-oracle data of the causal methods.

Same stream rules as the Gaussian-mixture loader (item i is a pure function of (seed, i), resumable, independent of
the world size): the mixture dataset draws from any source with `sample(n, generator) -> (x, labels)`.
"""

from __future__ import annotations

import torch

from fastgen.datasets.gaussian_mixture import GaussianMixtureDataset
from fastgen.datasets.loader import InfiniteLoader, synthetic_labels
from fastgen.utils.ar1_video import AR1Video, default_mean_std


class AR1VideoSource:
    """Adapter: AR(1) videos of `num_frames` frames as a (single-component) sampling source."""

    num_components = 1

    def __init__(self, process: AR1Video, num_frames: int):
        self.process, self.num_frames = process, int(num_frames)
        self.dim = process.dim
        self.sample_shape = (process.dim, self.num_frames, 1, 1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.process.sample(n, self.num_frames, generator), torch.zeros(n, dtype=torch.int64)


def make_ar1(dim: int, a: float, mean=None, std=None) -> AR1Video:
    d_mean, d_std = default_mean_std(dim)
    return AR1Video(a, d_mean if mean is None else list(mean), d_std if std is None else list(std))


class AR1VideoLoader(InfiniteLoader):
    """Batches {"real": [B, dim, num_frames, 1, 1], "condition": [B, 0], ...} of stationary AR(1) videos."""

    def __init__(self, dim: int = 4, num_frames: int = 8, a: float = 0.9, mean=None, std=None, batch_size: int = 256,
                 seed: int = 0, sampler_start_idx: int | None = None, num_samples: int | None = None,
                 rank: int | None = None, world_size: int | None = None, shuffle: bool = True):
        self.source = AR1VideoSource(make_ar1(dim, a, mean, std), num_frames)
        dataset = GaussianMixtureDataset(self.source, seed=seed, num_samples=num_samples)
        super().__init__(dataset, batch_size=batch_size, seed=seed, shuffle=shuffle,
                         sampler_start_idx=sampler_start_idx, rank=rank, world_size=world_size, num_workers=0)
        self.label_dim = 0

    @classmethod
    def smoke_batch(cls, kwargs: dict, batch_size: int) -> dict:
        """`train.py --smoke`: real AR(1) videos (cheap)."""
        process = make_ar1(int(kwargs.get("dim", 4)), float(kwargs.get("a", 0.9)), kwargs.get("mean"),
                           kwargs.get("std"))
        real = process.sample(batch_size, int(kwargs.get("num_frames", 8)))
        return {"real": real.to(torch.float32), **synthetic_labels(batch_size, 0)}
