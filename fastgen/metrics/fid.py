"""Fréchet distance between feature distributions (FID) as small pure functions.

FID = ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))  (Heusel et al. 2017, eq. 6), with (mu, S) the mean and the
unbiased covariance of a feature network's outputs on real and generated images.

Statistics are accumulated in float64 over batches (`FeatureStats`): a running count, a running sum and a running sum
of outer products, all taken about a fixed shift (the first batch's mean) so that large feature means do not cancel
catastrophically. 50k samples never sit in memory, and ranks merge by summing (`all_reduce`).

Reference statistics live in `.npz` files (`save_stats` / `load_stats`): `mu`, `sigma`, and a JSON `meta` string
naming the feature network, its weights' sha256, the sample count and the data set. `compute_fid` refuses a
reference computed with different feature-network weights: such numbers are not comparable.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.linalg
import torch

STATS_FORMAT_VERSION = 1
IMAGE_QUANTIZE_TYPES = ("uint8", "none")


# --- streaming statistics ---------------------------------------------------------------------------------------------
class FeatureStats:
    """Running float64 sums of features x_i (about a shift K): n, sum(x - K), sum((x - K)(x - K)^T).

    mean = K + s1 / n;  cov = (s2 - s1 s1^T / n) / (n - 1)   (unbiased, as numpy.cov / the EDM reference stats).
    """

    def __init__(self, dim: int | None = None):
        self.dim = dim
        self.count = 0
        self.shift: np.ndarray | None = None
        self.sum: np.ndarray | None = None
        self.sum_outer: np.ndarray | None = None

    def _init(self, shift: np.ndarray) -> None:
        self.dim = shift.shape[0]
        self.shift = shift.astype(np.float64)
        self.sum = np.zeros(self.dim, dtype=np.float64)
        self.sum_outer = np.zeros((self.dim, self.dim), dtype=np.float64)

    def update(self, features: Any) -> None:
        """Add a batch of features [B, D] (torch or numpy; any float dtype, accumulated in float64)."""
        if isinstance(features, torch.Tensor):
            features = features.detach().to("cpu", torch.float64).numpy()
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"features must have shape [batch, dim]; got shape {x.shape}")
        if self.dim is not None and x.shape[1] != self.dim:
            raise ValueError(f"features have dim {x.shape[1]} but these statistics hold dim {self.dim}")
        if not np.all(np.isfinite(x)):
            raise ValueError("features contain NaN or Inf (did the generator diverge?)")
        if x.shape[0] == 0:
            return
        if self.shift is None:
            self._init(x.mean(axis=0))
        centred = x - self.shift
        self.count += x.shape[0]
        self.sum += centred.sum(axis=0)
        self.sum_outer += centred.T @ centred

    def recentre(self, shift: np.ndarray) -> None:
        """Express the sums about another shift K' (exact): s1' = s1 + n d, s2' = s2 + d s1^T + s1 d^T + n d d^T,
        d = K - K'. Lets statistics with different shifts be summed."""
        shift = np.asarray(shift, dtype=np.float64)
        if self.shift is None:
            self._init(shift)
            return
        d = self.shift - shift
        self.sum_outer += np.outer(d, self.sum) + np.outer(self.sum, d) + self.count * np.outer(d, d)
        self.sum += self.count * d
        self.shift = shift.copy()

    def merge(self, other: FeatureStats) -> FeatureStats:
        """Add another accumulator's samples into this one (in place; returns self)."""
        if other.count == 0:
            return self
        if self.shift is None:
            self._init(other.shift)
        if other.dim != self.dim:
            raise ValueError(f"cannot merge statistics of dim {other.dim} into dim {self.dim}")
        other_sum, other_outer = other.sum, other.sum_outer
        if not np.array_equal(other.shift, self.shift):
            moved = FeatureStats()
            moved._init(other.shift)
            moved.count, moved.sum, moved.sum_outer = other.count, other.sum.copy(), other.sum_outer.copy()
            moved.recentre(self.shift)
            other_sum, other_outer = moved.sum, moved.sum_outer
        self.count += other.count
        self.sum += other_sum
        self.sum_outer += other_outer
        return self

    def all_reduce(self) -> FeatureStats:
        """Sum the statistics of all ranks (no-op without an initialised torch.distributed process group).

        Every rank must have seen at least one batch (the shift comes from rank 0 and is broadcast).
        """
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return self
        if self.shift is None:
            raise ValueError("all_reduce needs at least one batch of features on every rank")
        backend_device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        shift = torch.from_numpy(self.shift.copy()).to(backend_device)
        dist.broadcast(shift, src=0)
        self.recentre(shift.cpu().numpy())
        packed = np.concatenate([[float(self.count)], self.sum, self.sum_outer.ravel()])
        tensor = torch.from_numpy(packed).to(backend_device)
        dist.all_reduce(tensor)
        packed = tensor.cpu().numpy()
        self.count = int(round(packed[0]))
        self.sum = packed[1:1 + self.dim].copy()
        self.sum_outer = packed[1 + self.dim:].reshape(self.dim, self.dim).copy()
        return self

    @property
    def mean(self) -> np.ndarray:
        if self.count == 0:
            raise ValueError("no features were accumulated")
        return self.shift + self.sum / self.count

    @property
    def cov(self) -> np.ndarray:
        if self.count < 2:
            raise ValueError(f"a covariance needs at least 2 samples; got {self.count}")
        centred_mean = self.sum / self.count
        cov = (self.sum_outer - self.count * np.outer(centred_mean, centred_mean)) / (self.count - 1)
        return (cov + cov.T) / 2  # exact symmetry despite rounding

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        return self.mean, self.cov


def batch_stats(features: Any) -> tuple[np.ndarray, np.ndarray]:
    """(mean, unbiased covariance) of all features at once in float64: the reference for `FeatureStats`."""
    x = np.asarray(features.detach().cpu().double().numpy() if isinstance(features, torch.Tensor) else features,
                   dtype=np.float64)
    return x.mean(axis=0), np.cov(x, rowvar=False)


# --- the distance -----------------------------------------------------------------------------------------------------
def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))  (Fréchet distance of two Gaussians).

    (S1 S2)^(1/2) by scipy.linalg.sqrtm. When the product is singular the square root can come out non-finite; then
    eps*I is added to both covariances. Rounding can leave a small imaginary part: ignored when below 1e-3 on the
    diagonal, else an error (the covariances are not valid).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"mismatched statistics: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs "
                         f"{sigma2.shape}; expected mu [D] and sigma [D, D] on both sides (same feature network?)")
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.all(np.isfinite(covmean)):
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        max_imag = float(np.max(np.abs(np.diagonal(covmean).imag)))
        if max_imag > 1e-3:
            raise ValueError(f"sqrtm(sigma1 @ sigma2) has an imaginary component of {max_imag:.3g} on its diagonal; "
                             "the covariances are not positive semi-definite (too few samples for the feature dim?)")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


# --- reference statistics files ---------------------------------------------------------------------------------------
def sha256_of_file(path: str, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class RefStats:
    """Reference statistics: mean [D], covariance [D, D] (float64) and where they came from.

    meta keys: feature_net, feature_net_sha256, num_samples, dataset (plus anything the writer added).
    sha256: of the .npz file it was loaded from ("" when built in memory).
    """

    mu: np.ndarray
    sigma: np.ndarray
    meta: dict = field(default_factory=dict)
    sha256: str = ""
    path: str = ""


def save_stats(path: str, mu: Any, sigma: Any, *, feature_net: str, feature_net_sha256: str, num_samples: int,
               dataset: str, **extra_meta: Any) -> str:
    """Write `{mu, sigma, meta}` to `path` (.npz, atomically); returns the file's sha256."""
    meta = {"format_version": STATS_FORMAT_VERSION, "feature_net": feature_net,
            "feature_net_sha256": feature_net_sha256, "num_samples": int(num_samples), "dataset": dataset,
            **extra_meta}
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as file:
            np.savez(file, mu=np.asarray(mu, np.float64), sigma=np.asarray(sigma, np.float64),
                     meta=np.array(json.dumps(meta, sort_keys=True)))
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return sha256_of_file(path)


def load_stats(path: str) -> RefStats:
    """Read a statistics .npz (ours, or EDM / pytorch-fid style files holding just `mu` and `sigma`)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"reference statistics file not found: {path} (compute it with "
                                "`python scripts/fid/fid.py ref ...`)")
    try:
        with np.load(path, allow_pickle=False) as data:
            if "mu" not in data or "sigma" not in data:
                raise ValueError(f"{path} holds {sorted(data.files)}; expected arrays 'mu' and 'sigma'")
            mu, sigma = data["mu"].astype(np.float64), data["sigma"].astype(np.float64)
            meta = json.loads(str(data["meta"])) if "meta" in data else {}
    except (OSError, EOFError) as error:
        raise ValueError(f"cannot read reference statistics {path} (truncated or not an .npz?): {error}") from error
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"{path}: mu {mu.shape} / sigma {sigma.shape} are not a [D] mean and a [D, D] covariance")
    return RefStats(mu=mu, sigma=sigma, meta=meta, sha256=sha256_of_file(path), path=path)


def check_compatible(ref: RefStats, feature_extractor: Any) -> None:
    """The reference must come from the same feature network (name, and weights sha256 when both are known)."""
    name = getattr(feature_extractor, "name", None)
    sha = getattr(feature_extractor, "weights_sha256", None)
    ref_name, ref_sha = ref.meta.get("feature_net"), ref.meta.get("feature_net_sha256")
    where = ref.path or "the reference statistics"
    if ref_name and name and ref_name != name:
        raise ValueError(f"{where} were computed with feature network {ref_name!r} but FID is being computed with "
                         f"{name!r}; use a reference of the same network (scripts/fid/fid.py ref)")
    if ref_sha and sha and ref_sha != sha:
        raise ValueError(f"{where} were computed with {ref_name} weights sha256 {ref_sha[:12]}... but the loaded "
                         f"weights have sha256 {sha[:12]}...; recompute the reference with these weights")
    dim = getattr(feature_extractor, "feature_dim", None)
    if dim is not None and dim != ref.mu.shape[0]:
        raise ValueError(f"{where} hold {ref.mu.shape[0]}-d statistics but the feature network gives {dim}-d features")


# --- computing statistics and FID -------------------------------------------------------------------------------------
def quantize_images(images: torch.Tensor) -> torch.Tensor:
    """Round [-1, 1] images to the 256 uint8 levels a saved PNG would hold (EDM: u8 = floor(x*127.5 + 128)).

    Real data is already uint8, so this is the identity on it; generated images are measured as they would be saved.
    """
    u8 = torch.floor(images.float() * 127.5 + 128.0).clamp_(0, 255)
    return u8 / 127.5 - 1.0


@torch.no_grad()
def extract_features(feature_extractor: Callable, images: torch.Tensor, device: Any = None,
                     quantize_type: str = "uint8") -> torch.Tensor:
    """Features [B, D] (float64, CPU) of a batch of images [B, C, H, W] in [-1, 1]."""
    if quantize_type not in IMAGE_QUANTIZE_TYPES:
        raise ValueError(f"quantize_type must be one of {IMAGE_QUANTIZE_TYPES}; got {quantize_type!r}")
    if device is None:
        device = next((p.device for p in getattr(feature_extractor, "parameters", list)()), torch.device("cpu"))
    images = images.to(device)
    if quantize_type == "uint8":
        images = quantize_images(images)
    return feature_extractor(images.float()).double().cpu()


def compute_feature_stats(images: Iterable[torch.Tensor], feature_extractor: Callable,
                          num_samples: int | None = None, device: Any = None, quantize_type: str = "uint8",
                          stats: FeatureStats | None = None, progress: Callable[[int], None] | None = None
                          ) -> FeatureStats:
    """Accumulate features of image batches (a batch dict's "real" entry is used) until `num_samples` are seen.

    Fewer than `num_samples` available is an error (FID depends strongly on the sample count).
    """
    stats = stats if stats is not None else FeatureStats()
    seen = 0
    for batch in images:
        if isinstance(batch, Mapping):
            batch = batch["real"]
        if num_samples is not None:
            batch = batch[: num_samples - seen]
        stats.update(extract_features(feature_extractor, batch, device=device, quantize_type=quantize_type))
        seen += batch.shape[0]
        if progress is not None:
            progress(seen)
        if num_samples is not None and seen >= num_samples:
            break
    if num_samples is not None and seen < num_samples:
        raise ValueError(f"only {seen} images were available but num_samples={num_samples} were requested")
    return stats


def generated_batches(generate_fn: Callable[[int, int], torch.Tensor], num_samples: int, batch_size: int,
                      rank: int = 0, world_size: int = 1) -> Iterable[torch.Tensor]:
    """Batches `generate_fn(start, count)` covering sample indices [0, num_samples); rank r of W takes every W-th
    batch, so the set of samples (and with per-index seeds, each sample) does not depend on the world size."""
    if batch_size < 1 or num_samples < 1:
        raise ValueError(f"batch_size and num_samples must be positive; got {batch_size}, {num_samples}")
    num_batches = math.ceil(num_samples / batch_size)
    for k in range(rank, num_batches, world_size):
        start = k * batch_size
        yield generate_fn(start, min(batch_size, num_samples - start))


def compute_fid(source: Callable[[int, int], torch.Tensor] | Iterable[torch.Tensor], feature_extractor: Callable,
                ref_stats: RefStats | str, num_samples: int, batch_size: int = 100, device: Any = None,
                quantize_type: str = "uint8", check_reference: bool = True) -> float:
    """FID of `num_samples` images against reference statistics.

    source: `generate_fn(start_index, count) -> images [count, C, H, W] in [-1, 1]` (called in batches of
    `batch_size`, split over torch.distributed ranks when initialised), or an iterable of image batches / batch dicts.
    ref_stats: a RefStats or the path of a statistics .npz.
    """
    ref = load_stats(ref_stats) if isinstance(ref_stats, (str, os.PathLike)) else ref_stats
    if check_reference:
        check_compatible(ref, feature_extractor)
    if callable(source) and not hasattr(source, "__iter__"):
        rank, world = _rank_world()
        stats = compute_feature_stats(generated_batches(source, num_samples, batch_size, rank, world),
                                      feature_extractor, device=device, quantize_type=quantize_type)
        dim = getattr(feature_extractor, "feature_dim", None)
        if stats.count == 0 and dim:  # more ranks than batches: this rank contributes zeros
            stats.recentre(np.zeros(dim))
        stats.all_reduce()
        if stats.count != num_samples:
            raise ValueError(f"generated {stats.count} samples, expected {num_samples}")
    else:
        stats = compute_feature_stats(source, feature_extractor, num_samples=num_samples, device=device,
                                      quantize_type=quantize_type)
    mu, sigma = stats.mean_cov()
    return frechet_distance(mu, sigma, ref.mu, ref.sigma)


def _rank_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
