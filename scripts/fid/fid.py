"""FID from the command line: reference statistics of a data set, and FID of an image set against them.

    # reference statistics (mu, sigma + metadata) of a data set in a feature network's space
    python scripts/fid/fid.py ref --data fashion_mnist:train --dest fmnist_train.npz [--feature_net fmnist]
    python scripts/fid/fid.py ref --data cifar10-32x32.zip --dest cifar10.npz --feature_net inception \
        --inception_weights pt_inception-2015-12-05-6726825d.pth
    # FID of generated images (a folder / EDM zip of PNGs, or an .npz of uint8 NHWC or float NCHW in [-1, 1])
    python scripts/fid/fid.py calc --images samples/ --ref fmnist_train.npz [--num_samples 10000]

--data: `fashion_mnist[:train|:test]`, `mnist[:train|:test]` (IDX files, see fastgen/datasets), or a path to an image
folder / EDM-format zip. With --feature_net fmnist and no --ref, calc uses the shipped Fashion-MNIST train statistics.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator

import numpy as np
import torch

IDX_DATASETS = ("fashion_mnist", "mnist")


def _batches_of(images: torch.Tensor | np.ndarray, batch_size: int) -> Iterator[torch.Tensor]:
    for start in range(0, images.shape[0], batch_size):
        yield torch.as_tensor(images[start:start + batch_size])


def npz_images(path: str) -> np.ndarray:
    """Images [N, C, H, W] from an .npz: uint8 NHWC/NCHW (mapped to [-1, 1]) or float NCHW already in [-1, 1]."""
    with np.load(path, allow_pickle=False) as data:
        key = next((k for k in ("samples", "images", "arr_0") if k in data), None)
        if key is None:
            raise ValueError(f"{path} holds {sorted(data.files)}; expected an array named samples, images or arr_0")
        array = data[key]
    if array.ndim != 4:
        raise ValueError(f"{path}[{key}] has shape {array.shape}; expected 4-d images")
    if array.shape[-1] in (1, 3) and array.shape[1] not in (1, 3):
        array = array.transpose(0, 3, 1, 2)  # NHWC -> NCHW
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    return array.astype(np.float32)


def image_batches(source: str, batch_size: int) -> tuple[Iterator[torch.Tensor], int, str]:
    """(batches [-1, 1], number of images, a dataset label) for an IDX data set name, a folder/zip or an .npz."""
    name, _, split = source.partition(":")
    if name in IDX_DATASETS:
        from fastgen.datasets.idx_loader import (
            FashionMNISTLoader,
            IDXImageDataset,
            MNISTLoader,
            load_idx_split,
            locate_idx_root,
        )

        split = split or "train"
        loader_cls = FashionMNISTLoader if name == "fashion_mnist" else MNISTLoader
        root = locate_idx_root(None, loader_cls.dataset_name, loader_cls.system_dirs, loader_cls.how_to_get)
        images, labels = load_idx_split(root, split)
        dataset = IDXImageDataset(images, labels, resolution=32, resize_type="pad", use_labels=False)
        real = dataset.__getitems__(list(range(len(dataset))))["real"]
        return _batches_of(real, batch_size), len(dataset), f"{name}:{split}"
    if source.endswith(".npz"):
        images = npz_images(source)
        return _batches_of(images, batch_size), images.shape[0], os.path.basename(source)
    from fastgen.datasets.image_folder import ImageFolderDataset

    dataset = ImageFolderDataset(source, use_labels=False, cache=False)

    def batches():
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i]["real"] for i in range(start, min(start + batch_size, len(dataset)))]
            yield torch.as_tensor(np.stack([np.asarray(x) for x in items]))

    return batches(), len(dataset), os.path.basename(os.path.normpath(source))


def default_reference(feature_net: str) -> str:
    if feature_net != "fmnist":
        raise ValueError("--ref FILE is required with --feature_net inception (compute it with `fid.py ref`)")
    from fastgen.metrics.feature_net import reference_stats_path

    return str(reference_stats_path("train"))


def cmd_ref(args) -> dict:
    from fastgen.metrics import compute_feature_stats, load_feature_extractor, save_stats

    net = load_feature_extractor(args.feature_net, weights=args.inception_weights, device=args.device)
    batches, available, label = image_batches(args.data, args.batch_size)
    num = available if args.num_samples is None else args.num_samples
    stats = compute_feature_stats(batches, net, num_samples=num)
    sha = save_stats(args.dest, stats.mean, stats.cov, feature_net=net.name, feature_net_sha256=net.weights_sha256,
                     num_samples=stats.count, dataset=label)
    return {"dest": args.dest, "sha256": sha, "num_samples": stats.count, "feature_net": net.name, "dataset": label}


def cmd_calc(args) -> dict:
    from fastgen.metrics import compute_fid, load_feature_extractor, load_stats

    net = load_feature_extractor(args.feature_net, weights=args.inception_weights, device=args.device)
    ref = load_stats(args.ref or default_reference(args.feature_net))
    batches, available, _ = image_batches(args.images, args.batch_size)
    num = available if args.num_samples is None else args.num_samples
    fid = compute_fid(batches, net, ref, num_samples=num, batch_size=args.batch_size)
    return {"fid": fid, "num_samples": num, "ref": ref.path, "ref_sha256": ref.sha256, "feature_net": net.name,
            "feature_net_sha256": net.weights_sha256}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Reference statistics and FID (see the module docstring).")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, helptext in (("ref", "compute reference statistics of a data set"),
                           ("calc", "compute FID of images against reference statistics")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--feature_net", choices=("fmnist", "inception"), default="fmnist")
        p.add_argument("--inception_weights", default=None,
                       help="FID Inception state dict (default: $FASTGEN_INCEPTION_WEIGHTS)")
        p.add_argument("--batch_size", type=int, default=250)
        p.add_argument("--num_samples", type=int, default=None, help="default: all available images")
        p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
        if name == "ref":
            p.add_argument("--data", required=True, help="fashion_mnist[:split], mnist[:split], or a folder/zip")
            p.add_argument("--dest", required=True, help="output .npz")
        else:
            p.add_argument("--images", required=True, help="folder / zip of images, or an .npz")
            p.add_argument("--ref", default=None, help="reference statistics .npz")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = cmd_ref(args) if args.command == "ref" else cmd_calc(args)
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    try:
        sys.exit(main())
    except (ValueError, FileNotFoundError) as error:
        sys.stderr.write(f"error: {error}\n")
        sys.exit(2)
