"""Sample-quality metrics: FID with an offline Fashion-MNIST feature network or the standard FID InceptionV3.

    from fastgen.metrics import compute_fid, load_feature_extractor, load_stats
    net = load_feature_extractor("fmnist")                 # or ("inception", weights="pt_inception-....pth")
    fid = compute_fid(generate_fn, net, load_stats(path), num_samples=10000, batch_size=500)

See README.md in this folder.
"""

from __future__ import annotations

import os
from typing import Any

from fastgen.metrics.fid import (
    FeatureStats,
    RefStats,
    batch_stats,
    compute_feature_stats,
    compute_fid,
    frechet_distance,
    load_stats,
    save_stats,
    sha256_of_file,
)
from fastgen.metrics.precision_recall import precision_recall

FEATURE_NET_TYPES = ("fmnist", "inception")

__all__ = [
    "FEATURE_NET_TYPES", "FeatureStats", "RefStats", "batch_stats", "compute_feature_stats", "compute_fid",
    "frechet_distance", "load_feature_extractor", "load_stats", "precision_recall", "save_stats",
    "sha256_of_file",
]


def load_feature_extractor(feature_net_type: str = "fmnist", weights: str | os.PathLike | None = None,
                           device: Any = "cpu"):
    """'fmnist': the shipped Fashion-MNIST LeNet (128-d; `weights` overrides the file);
    'inception': the FID InceptionV3 (2048-d) from `weights` or $FASTGEN_INCEPTION_WEIGHTS."""
    if feature_net_type == "fmnist":
        from fastgen.metrics.feature_net import load_feature_net

        return load_feature_net(path=weights, device=device)
    if feature_net_type == "inception":
        from fastgen.metrics.inception import load_inception

        return load_inception(path=weights, device=device)
    raise ValueError(f"feature_net_type must be one of {FEATURE_NET_TYPES}; got {feature_net_type!r}")
