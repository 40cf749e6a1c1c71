"""EDM-format image datasets: a .zip archive or a directory of images (PNG/JPG/...) or .npy latents.

Labels come from an optional `dataset.json` `{"labels": [[relative_file_name, label], ...]}` (label: an int class or a
list of floats). Items are `{"real": float32 CHW, "condition": float32 [label_dim], "neg_condition": zeros, "idx": int64}`
with uint8 pixels mapped by x / 127.5 - 1 into [-1, 1] (latents are returned as stored).
The zip file is opened lazily once per process, so the dataset is safe to use from DataLoader worker processes.
`path` may be an s3:// URL, and `s3_path` names where to fetch a missing local zip: both are downloaded once into the
verified cache $FASTGEN_OUTPUT_ROOT/.cache/s3 (fastgen.utils.s3).
"""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import PIL.Image
import torch

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
SUPPORTED_EXTENSIONS = IMAGE_EXTENSIONS + (".npy",)
MISSING_DATASET_HINT = "set DATA_ROOT_DIR or dataloader_train.dataset_path"


def pixels_to_unit_range(pixels: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] -> float32 [-1, 1] via x / 127.5 - 1 (EDM's convention)."""
    return pixels.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def decode_file(data: bytes, name: str) -> np.ndarray:
    """Raw bytes of one dataset file -> CHW array (uint8 for images, the stored dtype for .npy latents)."""
    try:
        if name.lower().endswith(".npy"):
            array = np.load(io.BytesIO(data), allow_pickle=False)
            return array if array.ndim == 3 else array.reshape(1, *array.shape)
        with PIL.Image.open(io.BytesIO(data)) as image:
            if image.mode not in ("L", "RGB", "RGBA"):  # palette / 1-bit / LA: decode to real colours
                image = image.convert("RGB" if image.mode in ("P", "PA", "CMYK", "YCbCr") else "L")
            array = np.asarray(image)
    except Exception as error:  # PIL raises several exception types for bad files
        raise ValueError(f"cannot read dataset file {name!r}: {type(error).__name__}: {error}") from error
    if array.dtype != np.uint8:
        raise ValueError(f"dataset image {name!r} has dtype {array.dtype}; expected 8-bit pixels")
    if array.ndim == 2:
        array = array[:, :, None]
    return np.ascontiguousarray(array.transpose(2, 0, 1))


class ImageFolderDataset(torch.utils.data.Dataset):
    """Map-style dataset over an EDM zip / folder; `xflip` appends mirrored copies (indices N..2N-1)."""

    def __init__(
        self,
        path: str | None,
        resolution: int | None = None,
        use_labels: bool = True,
        label_dim: int | None = None,
        xflip: bool = False,
        max_size: int | None = None,
        cache: bool = True,
        s3_path: str | None = None,
    ):
        path = os.fspath(path) if path is not None else None
        if (path is not None and path.startswith("s3://")) or (s3_path and (path is None or not os.path.exists(path))):
            from fastgen.utils.s3 import cached_download_rank0_first

            path = cached_download_rank0_first(path if path is not None and path.startswith("s3://") else s3_path)
        if path is None:
            raise ValueError(f"dataset path is None; {MISSING_DATASET_HINT}")
        self.path = path
        self.use_labels = bool(use_labels)
        self.xflip = bool(xflip)
        self.cache = bool(cache)
        self._zip: zipfile.ZipFile | None = None
        self._zip_pid: int | None = None
        self._cached: dict[int, np.ndarray] = {}

        if not os.path.exists(self.path):
            raise FileNotFoundError(f"dataset not found at {self.path}; {MISSING_DATASET_HINT}")
        if os.path.isdir(self.path):
            self._kind = "dir"
            all_names = self._list_dir()
        elif zipfile.is_zipfile(self.path):
            self._kind = "zip"
            all_names = self._list_zip()
        else:
            raise ValueError(f"dataset file {self.path} is not a valid zip archive (corrupt or truncated?); "
                             "expected an EDM-format .zip or a directory of images")
        names = sorted(n for n in all_names if n.lower().endswith(SUPPORTED_EXTENSIONS))
        if not names:
            raise ValueError(f"no images ({', '.join(SUPPORTED_EXTENSIONS)}) found in dataset {self.path}")
        if max_size is not None:
            names = names[: int(max_size)]
        self.file_names = names

        first = self._load_raw(0)
        self.image_shape = tuple(int(s) for s in first.shape)  # [C, H, W]
        if resolution is not None and (self.image_shape[1] != resolution or self.image_shape[2] != resolution):
            raise ValueError(f"dataset {self.path} has images of {self.image_shape[1]}x{self.image_shape[2]} "
                             f"(first file {names[0]!r}); expected resolution {resolution}")
        self.resolution = self.image_shape[1]
        self.labels = self._load_labels(all_names) if self.use_labels else None
        self.label_dim = self._infer_label_dim(label_dim)

    # ----------------------------------------------------------------------------------------------- file access
    def _list_dir(self) -> list[str]:
        names = []
        for root, _dirs, files in os.walk(self.path):
            for file in files:
                names.append(os.path.relpath(os.path.join(root, file), self.path).replace(os.sep, "/"))
        return names

    def _zipfile(self) -> zipfile.ZipFile:
        """One open handle per process: a handle inherited through fork is shared state and breaks reads."""
        if self._zip is None or self._zip_pid != os.getpid():
            try:
                self._zip = zipfile.ZipFile(self.path)
            except (zipfile.BadZipFile, OSError) as error:
                raise ValueError(f"cannot open dataset zip {self.path}: {error}") from error
            self._zip_pid = os.getpid()
        return self._zip

    def _list_zip(self) -> list[str]:
        return [info.filename for info in self._zipfile().infolist() if not info.is_dir()]

    def _read_bytes(self, name: str) -> bytes:
        if self._kind == "dir":
            with open(os.path.join(self.path, name), "rb") as file:
                return file.read()
        try:
            return self._zipfile().read(name)
        except (zipfile.BadZipFile, OSError, EOFError, KeyError) as error:
            raise ValueError(f"cannot read {name!r} from dataset zip {self.path} (corrupt archive?): {error}") from error

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_zip"] = None  # reopened in the receiving process
        state["_zip_pid"] = None
        return state

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    def _load_raw(self, raw_idx: int) -> np.ndarray:
        array = self._cached.get(raw_idx)
        if array is None:
            name = self.file_names[raw_idx]
            array = decode_file(self._read_bytes(name), name)
            if self.cache:
                self._cached[raw_idx] = array
        return array

    # ---------------------------------------------------------------------------------------------------- labels
    def _load_labels(self, all_names: list[str]) -> np.ndarray:
        if "dataset.json" not in all_names:
            raise ValueError(f"use_labels=True but dataset {self.path} has no dataset.json with labels; "
                             "add one or set use_labels=False (dataloader_train.use_labels=False)")
        try:
            meta = json.loads(self._read_bytes("dataset.json"))
        except json.JSONDecodeError as error:
            raise ValueError(f"dataset.json in {self.path} is not valid JSON: {error}") from error
        entries = meta.get("labels") if isinstance(meta, dict) else None
        if entries is None:
            raise ValueError(f"dataset.json in {self.path} has no 'labels' entry; expected "
                             '{"labels": [[file_name, label], ...]} or set use_labels=False')
        by_name = {str(name).replace("\\", "/"): label for name, label in entries}
        missing = [n for n in self.file_names if n not in by_name]
        if missing:
            raise ValueError(f"dataset.json in {self.path} has no label for {len(missing)} file(s), e.g. {missing[0]!r}")
        labels = np.array([by_name[n] for n in self.file_names])
        if labels.ndim == 1:
            labels = labels.astype(np.int64)
            if labels.min() < 0:
                raise ValueError(f"dataset.json in {self.path} has negative class labels (min {labels.min()})")
        else:
            labels = labels.astype(np.float32)
        return labels

    def _infer_label_dim(self, label_dim: int | None) -> int:
        if self.labels is None:
            return 0
        inferred = int(self.labels.max()) + 1 if self.labels.ndim == 1 else int(self.labels.shape[1])
        if label_dim is None:
            return inferred
        if self.labels.ndim == 1 and int(label_dim) < inferred:
            raise ValueError(f"label_dim={label_dim} but dataset {self.path} has class labels up to {inferred - 1}")
        return int(label_dim)

    def condition(self, raw_idx: int) -> np.ndarray:
        """One-hot float32 [label_dim] (or the stored label vector); shape [0] when unlabelled."""
        if self.labels is None:
            return np.zeros([0], dtype=np.float32)
        if self.labels.ndim == 1:
            onehot = np.zeros([self.label_dim], dtype=np.float32)
            onehot[self.labels[raw_idx]] = 1.0
            return onehot
        return self.labels[raw_idx].astype(np.float32)

    # ------------------------------------------------------------------------------------------------ dataset API
    def __len__(self) -> int:
        return len(self.file_names) * (2 if self.xflip else 1)

    def __getitem__(self, idx: int) -> dict:
        if not 0 <= idx < len(self):
            raise IndexError(f"index {idx} out of range for dataset of {len(self)} items")
        raw_idx = idx % len(self.file_names)
        array = self._load_raw(raw_idx)
        if tuple(array.shape) != self.image_shape:
            raise ValueError(f"dataset file {self.file_names[raw_idx]!r} has shape {tuple(array.shape)}; "
                             f"expected {self.image_shape} like the first file")
        if idx >= len(self.file_names):
            array = array[:, :, ::-1]
        real = pixels_to_unit_range(array) if array.dtype == np.uint8 else array.astype(np.float32)
        condition = self.condition(raw_idx)
        return {
            "real": torch.from_numpy(np.ascontiguousarray(real)),
            "condition": torch.from_numpy(condition),
            "neg_condition": torch.zeros_like(torch.from_numpy(condition)),
            "idx": torch.tensor(idx, dtype=torch.int64),
        }
