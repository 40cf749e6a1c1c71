"""IDX files (the MNIST / Fashion-MNIST format) and loaders over them.

IDX layout: magic = two zero bytes, a dtype code, the number of dimensions; then one big-endian int32 per dimension;
then the data, big-endian. Files may be gzip-compressed. Images are 1-channel, mapped by x / 127.5 - 1 into [-1, 1],
and brought to `resolution` by padding with the -1 background (28 -> 32, the usual choice for UNets) or resizing.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib

import numpy as np
import torch
import torch.nn.functional as F

from fastgen.datasets.loader import InfiniteLoader, synthetic_image_batch
from fastgen.utils.env import data_root_dir

# IDX dtype code -> numpy dtype (big-endian where multi-byte).
IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
GZIP_MAGIC = b"\x1f\x8b"
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # from `apt-get install dataset-fashion-mnist`
SPLIT_PREFIX = {"train": "train", "test": "t10k"}
RESIZE_TYPES = ("pad", "resize")


def _read_maybe_gzip(path: str) -> bytes:
    with open(path, "rb") as file:
        raw = file.read()
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as error:
        raise ValueError(f"IDX file {path} is a corrupt or truncated gzip archive: {error}") from error


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes into a numpy array (native byte order), checking the magic number and the data size."""
    if len(data) < 4:
        raise ValueError(f"IDX file {name} is truncated: {len(data)} bytes, too short for the 4-byte magic number")
    zero0, zero1, code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0 or code not in IDX_DTYPES or ndim == 0:
        raise ValueError(f"IDX file {name} has a bad magic number 0x{data[:4].hex()}; expected 0x0000 + dtype code "
                         f"(one of {', '.join(hex(c) for c in IDX_DTYPES)}) + ndim (not an IDX file or corrupt)")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise ValueError(f"IDX file {name} is truncated inside its header ({len(data)} of {header_size} bytes)")
    shape = struct.unpack(f">{ndim}i", data[4:header_size])
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(shape)) * dtype.itemsize
    actual = len(data) - header_size
    if actual != expected:
        state = "truncated" if actual < expected else "longer than its header says"
        raise ValueError(f"IDX file {name} is {state}: header shape {tuple(shape)} needs {expected} data bytes, "
                         f"found {actual}")
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def read_idx(path: str) -> np.ndarray:
    """Read a (possibly gzip-compressed) IDX file."""
    return parse_idx(_read_maybe_gzip(path), name=path)


def encode_idx(array: np.ndarray) -> bytes:
    """Encode an array as IDX bytes (inverse of parse_idx)."""
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"cannot write dtype {array.dtype} as IDX; expected one of {sorted(map(str, codes))}")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    return header + array.astype(IDX_DTYPES[code]).tobytes()


def write_idx(array: np.ndarray, path: str) -> None:
    """Write an IDX file; gzip-compressed when the name ends with .gz."""
    data = encode_idx(array)
    if path.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    with open(path, "wb") as file:
        file.write(data)


def find_idx_file(root: str, stem: str) -> str | None:
    """`root/stem` or `root/stem.gz` (the standard names, e.g. train-images-idx3-ubyte)."""
    for candidate in (stem + ".gz", stem):
        path = os.path.join(root, candidate)
        if os.path.isfile(path):
            return path
    return None


def load_idx_split(root: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, H, W], labels int64 [N]) of the 'train' or 't10k' files in root."""
    if split not in SPLIT_PREFIX:
        raise ValueError(f"split must be one of {sorted(SPLIT_PREFIX)}, got {split!r}")
    prefix = SPLIT_PREFIX[split]
    paths = [find_idx_file(root, f"{prefix}-{kind}") for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")]
    if None in paths:
        raise FileNotFoundError(f"{root} lacks {prefix}-images-idx3-ubyte[.gz] / {prefix}-labels-idx1-ubyte[.gz]")
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"{paths[0]} holds {images.dtype} {images.shape}; expected uint8 [N, H, W] images")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"{paths[1]} holds {labels.shape} labels for {images.shape[0]} images; expected [N]")
    return images, labels.astype(np.int64)


class IDXImageDataset(torch.utils.data.Dataset):
    """1-channel images from IDX arrays -> items `{"real" [1,R,R], "condition", "neg_condition", "idx"}`."""

    def __init__(self, images: np.ndarray, labels: np.ndarray | None, resolution: int = 32,
                 resize_type: str = "pad", use_labels: bool = True, label_dim: int = 10,
                 max_size: int | None = None):
        if resize_type not in RESIZE_TYPES:
            raise ValueError(f"resize_type must be one of {RESIZE_TYPES}, got {resize_type!r}")
        height, width = images.shape[1:]
        if resize_type == "pad" and (resolution < max(height, width)):
            raise ValueError(f"resize_type='pad' cannot shrink {height}x{width} images to {resolution}; "
                             "use resize_type='resize'")
        if use_labels and labels is None:
            raise ValueError("use_labels=True but no labels were given; set use_labels=False")
        if max_size is not None:
            images = images[: int(max_size)]
            labels = None if labels is None else labels[: int(max_size)]
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.labels = torch.from_numpy(labels) if (use_labels and labels is not None) else None
        self.label_dim = int(label_dim) if self.labels is not None else 0
        self.resolution = int(resolution)
        self.resize_type = resize_type

    def __len__(self) -> int:
        return self.images.shape[0]

    def _images(self, index: torch.Tensor) -> torch.Tensor:
        real = self.images[index].unsqueeze(1).to(torch.float32) / 127.5 - 1.0
        height, width = real.shape[-2:]
        if (height, width) == (self.resolution, self.resolution):
            return real
        if self.resize_type == "pad":
            top, left = (self.resolution - height) // 2, (self.resolution - width) // 2
            pads = (left, self.resolution - width - left, top, self.resolution - height - top)
            return F.pad(real, pads, value=-1.0)
        return F.interpolate(real, size=(self.resolution, self.resolution), mode="bilinear",
                             antialias=True, align_corners=False).clamp(-1.0, 1.0)

    def __getitems__(self, indices: list[int]) -> dict:
        index = torch.as_tensor(indices, dtype=torch.int64)
        if self.labels is None:
            condition = torch.zeros(len(indices), 0)
        else:
            condition = F.one_hot(self.labels[index], self.label_dim).to(torch.float32)
        return {"real": self._images(index), "condition": condition,
                "neg_condition": torch.zeros_like(condition), "idx": index}

    def __getitem__(self, idx: int) -> dict:
        return {key: value[0] for key, value in self.__getitems__([idx]).items()}


def locate_idx_root(root: str | None, dataset_name: str, system_dirs: tuple[str, ...], how_to_get: str) -> str:
    """Explicit root, else $DATA_ROOT_DIR/<name>, else known system locations; clear message when none has it."""
    candidates = [root] if root is not None else []
    if root is None:
        candidates.append(os.path.join(data_root_dir(), dataset_name))
        candidates.extend(system_dirs)
    for candidate in candidates:
        if find_idx_file(candidate, "train-images-idx3-ubyte") or find_idx_file(candidate, "t10k-images-idx3-ubyte"):
            return candidate
    raise FileNotFoundError(f"{dataset_name} IDX files not found (looked in {', '.join(candidates) or 'nothing'}); "
                            f"{how_to_get}")


class IDXLoader(InfiniteLoader):
    """Shared constructor of MNISTLoader / FashionMNISTLoader."""

    dataset_name = ""
    system_dirs: tuple[str, ...] = ()
    how_to_get = ""

    def __init__(self, root: str | None = None, split: str = "train", batch_size: int = 128, resolution: int = 32,
                 resize_type: str = "pad", use_labels: bool = True, shuffle: bool = True, seed: int = 0,
                 sampler_start_idx: int | None = None, num_workers: int = 0, max_size: int | None = None,
                 rank: int | None = None, world_size: int | None = None):
        self.root = locate_idx_root(root, self.dataset_name, self.system_dirs, self.how_to_get)
        images, labels = load_idx_split(self.root, split)
        dataset = IDXImageDataset(images, labels, resolution=resolution, resize_type=resize_type,
                                  use_labels=use_labels, label_dim=10, max_size=max_size)
        super().__init__(dataset, batch_size=batch_size, seed=seed, shuffle=shuffle,
                         sampler_start_idx=sampler_start_idx, rank=rank, world_size=world_size,
                         num_workers=num_workers)
        self.label_dim = dataset.label_dim

    @classmethod
    def smoke_batch(cls, kwargs: dict, batch_size: int) -> dict:
        """`train.py --smoke`: 1-channel images at the smoke size (`kwargs["input_shape"]`), 10 classes."""
        side = int((kwargs.get("input_shape") or [1, 8, 8])[-1])
        return synthetic_image_batch(batch_size, [1, side, side], 10 if kwargs.get("use_labels", True) else 0)


class FashionMNISTLoader(IDXLoader):
    """Fashion-MNIST (60k train / 10k test, 10 classes) as 1x32x32 images in [-1, 1] by default."""

    dataset_name = "fashion_mnist"
    system_dirs = (DEBIAN_FASHION_MNIST_DIR,)
    how_to_get = ("install it with `apt-get install dataset-fashion-mnist` or run "
                  "`python scripts/download_data.py --dataset fashion_mnist` (or pass root=DIR)")


class MNISTLoader(IDXLoader):
    """MNIST (60k train / 10k test, 10 classes) as 1x32x32 images in [-1, 1] by default."""

    dataset_name = "mnist"
    system_dirs = ("/usr/share/datasets/mnist",)
    how_to_get = "run `python scripts/download_data.py --dataset mnist` (or pass root=DIR)"
