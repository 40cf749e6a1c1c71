"""`ImageLoader`: the infinite, resumable loader over an EDM-format image zip / folder (CIFAR-10, ImageNet-64, ...),
local or on S3."""

from __future__ import annotations

import os

from fastgen.datasets.image_folder import MISSING_DATASET_HINT, ImageFolderDataset
from fastgen.datasets.loader import InfiniteLoader, synthetic_image_batch
from fastgen.utils.env import data_root_dir
from fastgen.utils.s3 import cached_download_rank0_first, is_s3_url


def resolve_dataset_path(dataset_path: str | None, s3_path: str | None = None) -> str:
    """The local dataset: the path itself if it exists, else (for relative paths) the same path under $DATA_ROOT_DIR,
    else a download of `s3_path`. An s3:// `dataset_path` is always read through the cache.

    S3 objects land in $FASTGEN_OUTPUT_ROOT/.cache/s3 (rank 0 downloads first, the others then find the verified
    copy), and are downloaded again only when the object's ETag or the cached file's sha256 changed.
    """
    if dataset_path is not None and is_s3_url(os.fspath(dataset_path)):
        return cached_download_rank0_first(os.fspath(dataset_path))
    if dataset_path is None and not s3_path:
        raise ValueError(f"dataset_path is None; {MISSING_DATASET_HINT}")
    if dataset_path is not None:
        path = os.path.expanduser(os.fspath(dataset_path))
        if os.path.exists(path):
            return path
        root = data_root_dir()
        if not os.path.isabs(path) and os.path.exists(os.path.join(root, path)):
            return os.path.join(root, path)
    if s3_path:
        if not is_s3_url(s3_path):
            raise ValueError(f"s3_path must be an s3://bucket/key URL, got {s3_path!r}")
        return cached_download_rank0_first(s3_path)
    raise FileNotFoundError(f"dataset not found at {path}; {MISSING_DATASET_HINT} (or s3_path=s3://bucket/key)")


class ImageLoader(InfiniteLoader):
    """Batches `{"real" [B,C,H,W] in [-1,1], "condition" [B,label_dim], "neg_condition", "idx" [B]}` forever.

    `dataset_path` may be an s3:// URL; `s3_path` is where to fetch the zip from when `dataset_path` is not found
    locally (see `resolve_dataset_path`).
    """

    def __init__(
        self,
        dataset_path: str | None,
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
        s3_path: str | None = None,
    ):
        dataset = ImageFolderDataset(
            resolve_dataset_path(dataset_path, s3_path),
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

    @classmethod
    def smoke_batch(cls, kwargs: dict, batch_size: int) -> dict:
        """`train.py --smoke`: this loader's keys at `kwargs["input_shape"]` (default 3x8x8), labels one-hot of
        `label_dim` when `use_labels` (the dataset would infer it; smoke passes the network's)."""
        labels = int(kwargs.get("label_dim") or 0) if kwargs.get("use_labels", True) else 0
        return synthetic_image_batch(batch_size, kwargs.get("input_shape") or [3, 8, 8], labels)
