"""`ImageLoader`: the infinite, resumable loader over an EDM-format image zip / folder (CIFAR-10, ImageNet-64, ...)."""

from __future__ import annotations

import os

from fastgen.datasets.image_folder import MISSING_DATASET_HINT, ImageFolderDataset
from fastgen.datasets.loader import InfiniteLoader
from fastgen.utils.env import data_root_dir


def resolve_dataset_path(dataset_path: str) -> str:
    """The path itself if it exists, else (for relative paths) the same path under $DATA_ROOT_DIR."""
    if dataset_path is None:
        raise ValueError(f"dataset_path is None; {MISSING_DATASET_HINT}")
    path = os.path.expanduser(os.fspath(dataset_path))
    if os.path.exists(path):
        return path
    root = data_root_dir()
    if not os.path.isabs(path) and os.path.exists(os.path.join(root, path)):
        return os.path.join(root, path)
    raise FileNotFoundError(f"dataset not found at {path}; {MISSING_DATASET_HINT}")


class ImageLoader(InfiniteLoader):
    """Batches `{"real" [B,C,H,W] in [-1,1], "condition" [B,label_dim], "neg_condition", "idx" [B]}` forever."""

    def __init__(
        self,
        dataset_path: str,
        batch_size: int,
        use_labels: bool = True,
        shuffle: bool = True,
        seed: int = 0,
        sampler_start_idx: int | None = None,
        xflip: bool = False,
        num_workers: int = 0,
        cache: bool = True,
        max_size: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        resolution: int | None = None,
        label_dim: int | None = None,
        pin_memory: bool = False,
    ):
        dataset = ImageFolderDataset(
            resolve_dataset_path(dataset_path),
            resolution=resolution,
            use_labels=use_labels,
            label_dim=label_dim,
            xflip=xflip,
            max_size=max_size,
            cache=cache,
        )
        super().__init__(
            dataset,
            batch_size=batch_size,
            seed=seed,
            shuffle=shuffle,
            sampler_start_idx=sampler_start_idx,
            rank=rank,
            world_size=world_size,
            num_workers=num_workers,
            pin_memory=pin_memory,
        )
        self.label_dim = dataset.label_dim
        self.image_shape = dataset.image_shape
