"""Datasets and infinite, resumable loaders (see README.md). Names resolve lazily so importing is cheap."""

from importlib import import_module

_EXPORTS = {
    "InfiniteLoader": "loader",
    "IndexStream": "samplers",
    "ImageFolderDataset": "image_folder",
    "ImageLoader": "image_loader",
    "FashionMNISTLoader": "idx_loader",
    "MNISTLoader": "idx_loader",
    "read_idx": "idx_loader",
    "write_idx": "idx_loader",
    "GaussianMixtureLoader": "gaussian_mixture",
    "TeacherPairLoader": "kd_dataset",
    "generate_teacher_pairs": "kd_dataset",
    "AugmentPipe": "augment",
    "WDSLoader": "wds.loaders",
    "ImageWDSLoader": "wds.loaders",
    "VideoWDSLoader": "wds.loaders",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'fastgen.datasets' has no attribute {name!r}")
    return getattr(import_module(f"fastgen.datasets.{_EXPORTS[name]}"), name)
