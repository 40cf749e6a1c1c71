"""An offline feature network for FID on Fashion-MNIST: a small LeNet-style classifier trained here.

Why: no pretrained Inception weights can be downloaded on these machines, yet methods need a sample-quality number
that moves with distribution mismatch. A classifier's penultimate layer is the same idea as Inception's pool
features (FID in a space that separates the classes), just trained on the data set itself. Numbers are comparable
only between runs that use the same weights (their sha256 is recorded in every statistics file and fid.json); they are
not comparable with published Inception FIDs.

Architecture (inputs [B, 1, 32, 32] in [-1, 1]; 28x28 inputs are padded with the -1 background, as the loaders do):
    [conv3x3 BatchNorm ReLU maxpool2] x 3 (channels 1->16->32->64; BatchNorm: 91% instead of 90% in 3 epochs)
    -> fc(1024->128)
    = features (128-d, before the ReLU: closer to Gaussian and without the exact zeros that make covariances singular)
    -> ReLU -> fc(128->10) = logits.

Weights: `fastgen/metrics/assets/fmnist_lenet.safetensors`, checked against `SHIPPED_WEIGHTS_SHA256` on load.
Produced by (see assets/README.md for the recorded accuracy):
    python -m fastgen.metrics.feature_net --out_dir fastgen/metrics/assets
When the shipped file is missing, the first `load_feature_net()` trains one (seed 0; about 2 minutes of CPU time,
5 minutes wall on a busy 2-core machine) and caches it with its reference statistics under
`$FASTGEN_OUTPUT_ROOT/.cache/fastgen_metrics/`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from loguru import logger
from torch import nn

from fastgen.metrics.fid import FeatureStats, save_stats, sha256_of_file

FEATURE_NET_NAME = "fmnist-lenet"
ASSETS_DIR = Path(__file__).resolve().parent / "assets"
WEIGHTS_FILENAME = "fmnist_lenet.safetensors"
MANIFEST_FILENAME = "fmnist_lenet.json"
STATS_FILENAMES = {"train": "fmnist_lenet_stats_train.npz", "test": "fmnist_lenet_stats_test.npz"}
CACHE_SUBDIR = os.path.join(".cache", "fastgen_metrics")
# sha256 of the shipped weights file; a file that does not match is refused (re-train or restore it).
SHIPPED_WEIGHTS_SHA256 = "0fbb0fb5a912a327dedd0d9ffcb76c8c5094197abb570987a4e0650c7b39fe01"
TRAIN_COMMAND = "python -m fastgen.metrics.feature_net --out_dir fastgen/metrics/assets"


class FashionMNISTFeatureNet(nn.Module):
    """LeNet-style classifier; `forward` returns the 128-d penultimate features, `logits` the class scores."""

    name = FEATURE_NET_NAME
    feature_dim = 128
    num_classes = 10
    resolution = 32

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1)
        self.bn1, self.bn2, self.bn3 = nn.BatchNorm2d(16), nn.BatchNorm2d(32), nn.BatchNorm2d(64)
        self.fc1 = nn.Linear(64 * 4 * 4, self.feature_dim)
        self.fc2 = nn.Linear(self.feature_dim, self.num_classes)
        self.weights_sha256 = ""  # set by load_feature_net: identifies the weights in statistics files

    def _check_input(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 1:
            raise ValueError(f"{self.name} takes 1-channel images [B, 1, 32, 32] in [-1, 1]; got shape "
                             f"{tuple(images.shape)} (use --feature_net inception for RGB data)")
        size = tuple(images.shape[-2:])
        if size == (28, 28):  # the raw Fashion-MNIST size: pad with the background as the loaders do
            return F.pad(images, (2, 2, 2, 2), value=-1.0)
        if size != (self.resolution, self.resolution):
            raise ValueError(f"{self.name} takes 32x32 (or 28x28) images; got {size[0]}x{size[1]}")
        return images

    def features(self, images: torch.Tensor) -> torch.Tensor:
        x = self._check_input(images)
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        x = F.max_pool2d(F.relu(self.bn3(self.conv3(x))), 2)
        return self.fc1(x.flatten(1))

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.features(images)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images)


# --- data -----------------------------------------------------------------------------------------------------------
def load_fashion_mnist(split: str, root: str | None = None, max_size: int | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(images float32 [N, 1, 32, 32] in [-1, 1] padded like FashionMNISTLoader, labels int64 [N]); the first
    `max_size` images only when given."""
    from fastgen.datasets.idx_loader import FashionMNISTLoader, IDXImageDataset, load_idx_split, locate_idx_root

    root = locate_idx_root(root, FashionMNISTLoader.dataset_name, FashionMNISTLoader.system_dirs,
                           FashionMNISTLoader.how_to_get)
    images, labels = load_idx_split(root, split)
    images, labels = images[:max_size], labels[:max_size]
    dataset = IDXImageDataset(images, labels, resolution=32, resize_type="pad", use_labels=True)
    items = dataset.__getitems__(list(range(len(dataset))))
    return items["real"], torch.from_numpy(labels)


# --- training ---------------------------------------------------------------------------------------------------------
@torch.no_grad()
def accuracy(net: FashionMNISTFeatureNet, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    net.eval()
    correct = 0
    for start in range(0, images.shape[0], batch_size):
        pred = net.logits(images[start:start + batch_size]).argmax(dim=1)
        correct += int((pred == labels[start:start + batch_size]).sum())
    return correct / images.shape[0]


def train_classifier(images: torch.Tensor, labels: torch.Tensor, seed: int = 0, epochs: int = 3,
                     batch_size: int = 128, lr: float = 3e-3) -> FashionMNISTFeatureNet:
    """Adam with a cosine learning-rate decay to 0; the initialisation and the batch order come from `seed`, so the
    result depends only on (seed, data, hyper-parameters, CPU kernels)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = FashionMNISTFeatureNet()
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    steps_per_epoch = images.shape[0] // batch_size
    total = epochs * steps_per_epoch
    cosine = lambda step: 0.5 * (1.0 + math.cos(math.pi * step / total))  # noqa: E731
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine)
    net.train()
    for epoch in range(epochs):
        order = torch.randperm(images.shape[0], generator=generator)
        for step in range(steps_per_epoch):
            index = order[step * batch_size:(step + 1) * batch_size]
            loss = F.cross_entropy(net.logits(images[index]), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        logger.info(f"feature net epoch {epoch + 1}/{epochs}: last batch loss {loss.item():.4f}")
    return net.eval()


@torch.no_grad()
def dataset_stats(net: nn.Module, images: torch.Tensor, batch_size: int = 1000) -> FeatureStats:
    stats = FeatureStats()
    for start in range(0, images.shape[0], batch_size):
        stats.update(net(images[start:start + batch_size]))
    return stats


def train_feature_net(out_dir: str | os.PathLike = ASSETS_DIR, seed: int = 0, epochs: int = 3, batch_size: int = 128,
                      lr: float = 3e-3, root: str | None = None, num_threads: int = 1,
                      command: str = TRAIN_COMMAND, max_size: int | None = None) -> dict[str, Any]:
    """Train the feature network on the Fashion-MNIST train split and write into `out_dir`:
    the weights (safetensors), a manifest (sha256, accuracies, command, settings) and the reference statistics of the
    train and test splits in its feature space. Returns the manifest.

    num_threads: torch CPU threads during training (1 by default: kernel reductions then do not depend on the core
    count, so the same machine type reproduces the same bits).
    max_size: use only the first `max_size` images of each split (quick runs and tests; not for real statistics).
    """
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        start_time = time.time()
        train_x, train_y = load_fashion_mnist("train", root, max_size)
        test_x, test_y = load_fashion_mnist("test", root, max_size)
        net = train_classifier(train_x, train_y, seed=seed, epochs=epochs, batch_size=batch_size, lr=lr)
        train_seconds = time.time() - start_time
        test_acc = accuracy(net, test_x, test_y)
        train_acc = accuracy(net, train_x[:10000], train_y[:10000])  # a 10k slice: enough to see over-fitting
        weights_path = out_dir / WEIGHTS_FILENAME
        tmp = out_dir / f".{WEIGHTS_FILENAME}.tmp{os.getpid()}"
        state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
        # one metadata key: safetensors writes several keys in hash-map order, which would change the file's bytes
        save_file(state, str(tmp), metadata={"fastgen": json.dumps({"name": FEATURE_NET_NAME, "seed": seed,
                                                                   "epochs": epochs, "lr": lr}, sort_keys=True)})
        os.chmod(tmp, 0o644)  # safetensors creates owner-only files; the asset is meant to be shared
        os.replace(tmp, weights_path)
        sha = sha256_of_file(str(weights_path))
        net.weights_sha256 = sha
        manifest = {
            "name": FEATURE_NET_NAME, "weights_file": WEIGHTS_FILENAME, "sha256": sha,
            "test_accuracy": test_acc, "train_accuracy_first_10k": train_acc, "max_size": max_size,
            "seed": seed, "epochs": epochs,
            "batch_size": batch_size, "lr": lr, "num_threads": num_threads, "train_seconds": round(train_seconds, 1),
            "torch_version": torch.__version__, "command": command,
            "stats": {},
        }
        for split, (x, _) in (("train", (train_x, train_y)), ("test", (test_x, test_y))):
            stats = dataset_stats(net, x)
            stats_path = out_dir / STATS_FILENAMES[split]
            stats_sha = save_stats(str(stats_path), stats.mean, stats.cov, feature_net=FEATURE_NET_NAME,
                                   feature_net_sha256=sha, num_samples=stats.count, dataset=f"fashion_mnist:{split}",
                                   image_size=[1, 32, 32], preprocessing="pad 28->32 with -1; uint8 levels")
            manifest["stats"][split] = {"file": STATS_FILENAMES[split], "sha256": stats_sha,
                                        "num_samples": stats.count}
        with open(out_dir / MANIFEST_FILENAME, "w") as file:
            json.dump(manifest, file, indent=2, sort_keys=True)
            file.write("\n")
    finally:
        torch.set_num_threads(previous_threads)
    logger.info(f"feature net: test accuracy {test_acc:.4f}, train accuracy {train_acc:.4f}, sha256 {sha}, "
                f"{train_seconds:.0f} s -> {out_dir}")
    return manifest


# --- loading ----------------------------------------------------------------------------------------------------------
def cache_dir() -> Path:
    from fastgen.utils.env import output_root

    return Path(output_root()) / CACHE_SUBDIR


def _locate(train_if_missing: bool, train_kwargs: dict | None = None) -> tuple[Path, str]:
    """(weights path, expected sha256): the shipped asset, else the cache (trained there on first use)."""
    shipped = ASSETS_DIR / WEIGHTS_FILENAME
    if shipped.is_file():
        return shipped, SHIPPED_WEIGHTS_SHA256
    cached = cache_dir() / WEIGHTS_FILENAME
    if not cached.is_file():
        if not train_if_missing:
            raise FileNotFoundError(f"feature network weights not found at {shipped} or {cached}; train them with "
                                    f"`{TRAIN_COMMAND}`")
        logger.warning(f"{shipped} is missing: training the Fashion-MNIST feature network into {cached.parent} "
                       "(once; takes a few minutes on CPU)")
        train_feature_net(out_dir=cached.parent, command=f"load_feature_net() on first use -> {cached.parent}",
                          **(train_kwargs or {}))
    with open(cached.parent / MANIFEST_FILENAME) as file:
        return cached, json.load(file)["sha256"]


def load_feature_net(path: str | os.PathLike | None = None, expected_sha256: str | None = None,
                     device: Any = "cpu", train_if_missing: bool = True,
                     train_kwargs: dict | None = None) -> FashionMNISTFeatureNet:
    """The trained feature network in eval mode, its file's sha256 verified before loading (safetensors only).

    path None: the shipped asset, else `$FASTGEN_OUTPUT_ROOT/.cache/fastgen_metrics/` (trained there if missing).
    An explicit `path` is checked against `expected_sha256` when given. train_kwargs: passed to train_feature_net
    when it has to train (defaults: the shipped recipe).
    """
    from safetensors.torch import load_file

    if path is None:
        path, expected_sha256 = _locate(train_if_missing, train_kwargs)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"feature network weights not found: {path}")
    if path.suffix != ".safetensors":
        raise ValueError(f"feature network weights must be a .safetensors file; got {path}")
    sha = sha256_of_file(str(path))
    if expected_sha256 and sha != expected_sha256:
        raise ValueError(f"{path} has sha256 {sha} but {expected_sha256} was expected (corrupt or replaced file); "
                         f"restore it or re-train with `{TRAIN_COMMAND}`")
    net = FashionMNISTFeatureNet()
    state = load_file(str(path), device="cpu")
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path} does not match {FEATURE_NET_NAME}: missing keys {missing}, unexpected {unexpected}")
    net.weights_sha256 = sha
    return net.to(device).eval().requires_grad_(False)


def reference_stats_path(split: str = "train", train_if_missing: bool = True) -> Path:
    """Path of the reference statistics of a Fashion-MNIST split that belongs to the weights `load_feature_net()`
    picks (shipped assets, else the cache)."""
    if split not in STATS_FILENAMES:
        raise ValueError(f"split must be one of {sorted(STATS_FILENAMES)}; got {split!r}")
    weights, _ = _locate(train_if_missing)
    return weights.parent / STATS_FILENAMES[split]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the Fashion-MNIST FID feature network and its reference "
                                                 "statistics.")
    parser.add_argument("--out_dir", default=str(ASSETS_DIR), help="where to write weights, manifest and statistics")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--num_threads", type=int, default=1)
    parser.add_argument("--root", default=None, help="Fashion-MNIST IDX directory (default: auto-detect)")
    args = parser.parse_args(argv)
    command = "python -m fastgen.metrics.feature_net " + " ".join(sys.argv[1:] if argv is None else argv)
    manifest = train_feature_net(out_dir=args.out_dir, seed=args.seed, epochs=args.epochs, batch_size=args.batch_size,
                                 lr=args.lr, root=args.root, num_threads=args.num_threads, command=command.strip())
    print(json.dumps(manifest, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
