"""Improved precision and recall (Kynkaanniemi et al. 2019) of generated against real features.

Why next to FID: FID is one number for two different failures. A student that draws sharp samples from too few of
the real modes (the failure of reverse-KL distribution matching) and one that covers every mode with blurry samples
can have the same FID; precision (how many generated samples fall inside the real data's manifold) and recall (how
many real samples fall inside the generated manifold) tell them apart.

Each set's manifold is the union of balls around its points, the radius of a ball the distance to the point's k-th
nearest neighbour in its own set (k = 3, the paper's choice). Distances are Euclidean in the feature space (for
Fashion-MNIST the shipped LeNet's 128-d features). Both numbers depend on the sample counts: compare them only at
equal counts.
"""

from __future__ import annotations

from typing import Any

import torch


def _as_features(x: Any, name: str) -> torch.Tensor:
    x = torch.as_tensor(x, dtype=torch.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"{name} must be a [N, D] feature matrix with N >= 2; got shape {tuple(x.shape)}")
    return x


def knn_radii(features: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """Distance of each row to its k-th nearest other row [N] (the point itself, at distance 0, is not counted)."""
    radii = []
    for start in range(0, features.shape[0], chunk):
        d = torch.cdist(features[start:start + chunk], features)
        radii.append(d.kthvalue(k + 1, dim=1).values)
    return torch.cat(radii)


def _inside(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Per point: whether it lies within radii[j] of some centre j [N] (bool)."""
    hits = []
    for start in range(0, points.shape[0], chunk):
        d = torch.cdist(points[start:start + chunk], centres)
        hits.append((d <= radii[None, :]).any(dim=1))
    return torch.cat(hits)


def precision_recall(real: Any, fake: Any, k: int = 3) -> dict[str, float]:
    """{"precision", "recall"} of `fake` [N, D] against `real` [M, D] features (arrays or tensors), both in [0, 1]."""
    real, fake = _as_features(real, "real"), _as_features(fake, "fake")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake features differ in dimension: {real.shape[1]} vs {fake.shape[1]}")
    if not 1 <= k < min(real.shape[0], fake.shape[0]):
        raise ValueError(f"k must be in [1, min(N_real, N_fake) - 1] = [1, {min(real.shape[0], fake.shape[0]) - 1}]; "
                         f"got {k}")
    precision = _inside(fake, real, knn_radii(real, k)).double().mean().item()
    recall = _inside(real, fake, knn_radii(fake, k)).double().mean().item()
    return {"precision": precision, "recall": recall}
