"""Download public datasets and convert them to the formats the loaders read.

- Fashion-MNIST / MNIST: the four IDX .gz files into `<dest>/<name>/` (FashionMNISTLoader / MNISTLoader read them);
  optionally also an EDM zip (`idx_to_edm_zip`).
- CIFAR-10: the python tarball, converted to `<dest>/cifar10/cifar10-32x32.zip` (EDM layout: `00000/img00000000.png`
  + `dataset.json` labels; what ImageLoader and `CIFAR10_Loader_Config` expect).
- ImageNet-64: not downloadable (licence); converted from a local copy of the ILSVRC train folders
  (`IMAGENET_LAYOUT` tells where to get it and how to lay it out) to `<dest>/imagenet-64/imagenet-64x64.zip`.
Every download is checked against its published MD5 and written atomically (temporary file, then rename). CIFAR-10's
pickled batches are read with an unpickler that only admits numpy arrays, so a tampered file cannot run code.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import tarfile
import urllib.request
import zipfile
from collections.abc import Iterable

import numpy as np
import PIL.Image

from fastgen.datasets.idx_loader import load_idx_split

IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
DATASETS = {
    "fashion_mnist": {
        "mirrors": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        "files": dict(zip(IDX_FILES, ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
                                      "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310"))),
    },
    "mnist": {
        "mirrors": ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        "files": dict(zip(IDX_FILES, ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
                                      "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"))),
    },
    "cifar10": {
        "mirrors": ("https://www.cs.toronto.edu/~kriz/",),
        "files": {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"},
    },
}
CIFAR10_ZIP_NAME = "cifar10-32x32.zip"
DATASET_NAMES = (*DATASETS, "imagenet-64", "imagenet-256")  # what --dataset accepts


def md5_of(path: str, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(urls: Iterable[str], dest: str, md5: str | None, force: bool = False) -> str:
    """Fetch the first reachable URL to `dest` (atomic), verify its MD5; an existing verified file is kept."""
    if os.path.isfile(dest) and not force and (md5 is None or md5_of(dest) == md5):
        return dest
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    errors = []
    for url in urls:
        tmp = f"{dest}.part{os.getpid()}"
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
        except OSError as error:
            errors.append(f"{url}: {error}")
            if os.path.exists(tmp):
                os.remove(tmp)
            continue
        got = md5_of(tmp)
        if md5 is not None and got != md5:
            os.remove(tmp)
            errors.append(f"{url}: MD5 {got} does not match the published {md5}")
            continue
        os.replace(tmp, dest)
        return dest
    raise RuntimeError(f"could not download {os.path.basename(dest)}:\n  " + "\n  ".join(errors))


def download_idx_dataset(name: str, dest: str, force: bool = False, mirror: str | None = None) -> str:
    """Fashion-MNIST or MNIST IDX files into `<dest>/<name>/`; returns that directory."""
    spec = DATASETS[name]
    folder = os.path.join(dest, name)
    for file_name, md5 in spec["files"].items():
        download_file([m + file_name for m in mirrors_for(name, mirror)], os.path.join(folder, file_name), md5,
                      force=force)
    return folder


# ------------------------------------------------------------------------------------------------------ EDM zips
def write_edm_zip(images: np.ndarray, labels: np.ndarray | None, out_path: str) -> str:
    """uint8 images [N, H, W] or [N, H, W, C] (+ int labels [N]) -> EDM zip with PNGs and dataset.json (atomic)."""
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise ValueError(f"write_edm_zip expects uint8 [N, H, W(, C)] images, got {images.dtype} {images.shape}")
    pairs = zip(images, labels if labels is not None else [None] * len(images))
    return write_edm_zip_stream(pairs, out_path, with_labels=labels is not None)


def write_edm_zip_stream(pairs: Iterable, out_path: str, with_labels: bool = True) -> str:
    """(uint8 image, label) pairs, one at a time (ImageNet does not fit in memory) -> EDM zip (atomic)."""
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    tmp = f"{out_path}.part{os.getpid()}"
    entries = []
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
        for i, (image, label) in enumerate(pairs):
            name = f"{i // 1000:05d}/img{i:08d}.png"
            buffer = io.BytesIO()
            PIL.Image.fromarray(image).save(buffer, format="png", compress_level=0, optimize=False)
            archive.writestr(name, buffer.getvalue())
            if with_labels:
                entries.append([name, int(label)])
        archive.writestr("dataset.json", json.dumps({"labels": entries if with_labels else None}))
    os.replace(tmp, out_path)
    return out_path


# ------------------------------------------------------------------------------------------------------ ImageNet
IMAGENET_LAYOUT = """ImageNet cannot be downloaded automatically (its licence needs a sign-in). Get the ILSVRC 2012 training
images (e.g. Kaggle's "imagenet-object-localization-challenge") so that this layout exists:
    SOURCE/ILSVRC/Data/CLS-LOC/train/n01440764/n01440764_10026.JPEG   (1000 class folders named by WordNet id)
then run:  python scripts/download_data.py --dataset imagenet-64 --imagenet-source SOURCE
It writes $DATA_ROOT_DIR/imagenet-64/imagenet-64x64.zip (EDM layout, labels = index of the sorted class folders),
which ImageNet64_Loader_Config reads. imagenet-256 (imagenet_256_sd.zip) holds SD-VAE latents of 256x256 crops;
encode those with a VAE first: it is not produced by this script."""
IMAGENET_ZIPS = {"imagenet-64": ("imagenet-64", "imagenet-64x64.zip", 64)}


def imagenet_train_dir(source: str) -> str:
    """The folder of class folders: SOURCE itself, or SOURCE/ILSVRC/Data/CLS-LOC/train."""
    for candidate in (os.path.join(source, "ILSVRC", "Data", "CLS-LOC", "train"), source):
        if os.path.isdir(candidate) and any(d.startswith("n") and os.path.isdir(os.path.join(candidate, d))
                                            for d in os.listdir(candidate)):
            return candidate
    raise ValueError(f"--imagenet-source {source} has no class folders (n0xxxxxxx/).\n{IMAGENET_LAYOUT}")


def center_crop_box_resize(image: PIL.Image.Image, resolution: int) -> np.ndarray:
    """Halve with box filters while the short side is >= 2x the target, bicubic to the target, centre crop (the
    ADM/EDM ImageNet preprocessing), uint8 [res, res, 3]."""
    image = image.convert("RGB")
    while min(image.size) >= 2 * resolution:
        image = image.resize(tuple(x // 2 for x in image.size), resample=PIL.Image.BOX)
    scale = resolution / min(image.size)
    image = image.resize(tuple(round(x * scale) for x in image.size), resample=PIL.Image.BICUBIC)
    array = np.asarray(image)
    top, left = (array.shape[0] - resolution) // 2, (array.shape[1] - resolution) // 2
    return array[top:top + resolution, left:left + resolution]


def convert_imagenet(source: str, dest: str, name: str = "imagenet-64", force: bool = False) -> str:
    """ImageNet train folders -> `<dest>/imagenet-64/imagenet-64x64.zip`; returns the zip path."""
    folder, zip_name, resolution = IMAGENET_ZIPS[name]
    out_path = os.path.join(dest, folder, zip_name)
    if os.path.isfile(out_path) and not force:
        return out_path
    train = imagenet_train_dir(source)
    classes = sorted(d for d in os.listdir(train) if os.path.isdir(os.path.join(train, d)))
    files = [(os.path.join(train, c, f), label) for label, c in enumerate(classes)
             for f in sorted(os.listdir(os.path.join(train, c))) if f.lower().endswith((".jpeg", ".jpg", ".png"))]
    if not files:
        raise ValueError(f"no JPEG images under {train}.\n{IMAGENET_LAYOUT}")

    def pairs():
        for path, label in files:
            with PIL.Image.open(path) as image:
                yield center_crop_box_resize(image, resolution), label

    return write_edm_zip_stream(pairs(), out_path)


def idx_to_edm_zip(idx_dir: str, out_path: str, split: str = "train") -> str:
    """An IDX dataset split (MNIST layout) -> EDM zip."""
    images, labels = load_idx_split(idx_dir, split)
    return write_edm_zip(images, labels, out_path)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits only the globals needed to rebuild numpy arrays; anything else is refused (no code execution)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}  # encode: bytes in protocol-2 pickles

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR-10 batch file")
        return super().find_class(module, name)


def read_cifar_batch(data: bytes, name: str = "<batch>") -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch -> (uint8 images [N, 32, 32, 3], int64 labels [N])."""
    try:
        batch = _NumpyOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
        pixels = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, KeyError, EOFError, TypeError, ValueError) as error:
        raise ValueError(f"CIFAR-10 batch {name} is not a valid python batch file: {error}") from error
    if pixels.ndim != 2 or pixels.shape[1] != 3 * 32 * 32 or pixels.shape[0] != labels.shape[0]:
        raise ValueError(f"CIFAR-10 batch {name} has data {pixels.shape} and labels {labels.shape}; "
                         "expected [N, 3072] and [N]")
    return pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def cifar10_tar_to_edm_zip(tar_path: str, out_path: str, split: str = "train") -> str:
    """CIFAR-10 python tarball -> EDM zip (train: data_batch_1..5 in order; test: test_batch)."""
    members = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    images, labels = [], []
    try:
        with tarfile.open(tar_path, "r:gz") as archive:
            by_base = {os.path.basename(m.name): m for m in archive.getmembers() if m.isfile()}
            for member in members:
                if member not in by_base:
                    raise ValueError(f"CIFAR-10 archive {tar_path} has no {member}")
                x, y = read_cifar_batch(archive.extractfile(by_base[member]).read(), name=member)
                images.append(x)
                labels.append(y)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise ValueError(f"CIFAR-10 archive {tar_path} is corrupt or truncated: {error}") from error
    return write_edm_zip(np.concatenate(images), np.concatenate(labels), out_path)


def mirrors_for(name: str, mirror: str | None) -> tuple[str, ...]:
    """The published mirrors, or one given base URL (an internal mirror; file:// works) tried first."""
    published = DATASETS[name]["mirrors"]
    return (mirror.rstrip("/") + "/", *published) if mirror else published


def download_cifar10(dest: str, force: bool = False, mirror: str | None = None, md5: str | None = None) -> str:
    """CIFAR-10 tarball -> `<dest>/cifar10/cifar10-32x32.zip`; returns the zip path. The tarball must match the
    published MD5 (`md5` replaces it only for tests of the conversion on a fake archive)."""
    spec = DATASETS["cifar10"]
    (file_name, published_md5), = spec["files"].items()
    urls = [m + file_name for m in mirrors_for("cifar10", mirror)]
    tar_path = download_file(urls, os.path.join(dest, "cifar10", file_name), md5 or published_md5, force=force)
    out_path = os.path.join(dest, "cifar10", CIFAR10_ZIP_NAME)
    if os.path.isfile(out_path) and not force:
        return out_path
    return cifar10_tar_to_edm_zip(tar_path, out_path)


def download_dataset(name: str, dest: str, force: bool = False, edm_zip: bool = False, mirror: str | None = None,
                     imagenet_source: str | None = None) -> str:
    """Entry point of scripts/download_data.py."""
    if name in IMAGENET_ZIPS:
        if not imagenet_source:
            raise ValueError(f"--dataset {name} needs --imagenet-source.\n{IMAGENET_LAYOUT}")
        return convert_imagenet(imagenet_source, dest, name, force=force)
    if name == "imagenet-256":
        raise ValueError(IMAGENET_LAYOUT)
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASET_NAMES)}")
    if name == "cifar10":
        return download_cifar10(dest, force=force, mirror=mirror)
    folder = download_idx_dataset(name, dest, force=force, mirror=mirror)
    if edm_zip:
        for split in ("train", "test"):
            idx_to_edm_zip(folder, os.path.join(folder, f"{name}-28x28-{split}.zip"), split=split)
    return folder
