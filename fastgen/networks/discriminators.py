"""GAN discriminator heads on frozen-teacher features (DMD2, f-distill, LADD).

Every discriminator takes the list of teacher features the teacher returned for `discriminator.feature_indices`
(sorted, increasing; `features[k]` belongs to `feature_indices[k]`) and returns logits [B, n_heads], one
independent head per feature (an nn.ModuleDict keyed by the feature index), so each logit depends on its own
feature only. Ask the teacher for exactly these features:
`teacher(x_t, t, condition, feature_indices=disc.feature_indices, return_features_early=True)`.
The video heads live in discriminators_video.py (still importable from here, see __getattr__ at the end).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def group_norm_groups(channels: int) -> int:
    """GroupNorm group count: the largest divisor of C that is <= 32 (C > 32), else the largest divisor <= C // 4.

    Why not plain "largest divisor <= 32" for small C: it gives one channel per group, and at the heads' 1x1 stage
    a one-channel group normalises a single number to exactly 0, which kills the head (constant logit, no grad).
    """
    if channels < 1:
        raise ValueError(f"channels must be >= 1; got {channels}")
    limit = 32 if channels > 32 else max(1, channels // 4)
    return max(d for d in range(1, limit + 1) if channels % d == 0)


def _conv_gn_act(c_in: int, c_out: int, kernel: int, stride: int, padding: int, act: nn.Module) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, stride, padding), nn.GroupNorm(group_norm_groups(c_out), c_out), act]


def _per_feature(value, n: int, name: str) -> list[int]:
    """int -> the same for all n features; list -> must have n entries."""
    if isinstance(value, int):
        return [value] * n
    value = list(value)
    if len(value) != n:
        raise ValueError(f"{name} has {len(value)} entries; expected one per feature ({n})")
    return [int(v) for v in value]


class Discriminator(nn.Module):
    """Base: `heads[str(i)]` maps feature i to [B, 1]; forward concatenates the heads' logits -> [B, n_heads]."""

    def __init__(self, feature_indices: Sequence[int], num_features: int):
        super().__init__()
        indices = sorted(set(int(i) for i in feature_indices))
        if not indices:
            raise ValueError("feature_indices must name at least one feature")
        bad = [i for i in indices if not 0 <= i < num_features]
        if bad:
            raise ValueError(f"feature_indices {bad} out of range; expected indices in 0..{num_features - 1}")
        self.feature_indices = indices
        self.heads = nn.ModuleDict()

    def forward(self, features: Sequence[torch.Tensor] | dict[int, torch.Tensor]) -> torch.Tensor:
        if isinstance(features, dict):
            missing = [i for i in self.feature_indices if i not in features]
            if missing:
                raise ValueError(f"features dict lacks indices {missing}; needs {self.feature_indices}")
            features = [features[i] for i in self.feature_indices]
        if len(features) != len(self.feature_indices):
            raise ValueError(
                f"got {len(features)} features; expected {len(self.feature_indices)} "
                f"(one per feature index {self.feature_indices}, in that order)"
            )
        logits = [self.heads[str(i)](f).reshape(f.shape[0], -1) for i, f in zip(self.feature_indices, features)]
        return torch.cat(logits, dim=1)


# ------------------------------------------------------------------------------------------------ EDM
def edm_head(channels: int, resolution: int) -> nn.Sequential:
    """Conv head: (Conv4x4 s2 + GN + SiLU) while the map is larger than 4x4 (32->16->8->4), then a conv whose
    kernel covers the whole remaining map (4x4 s4 normally) -> 1x1, GN, SiLU, 1x1 conv -> 1 logit.
    Inputs of 4x4 or smaller skip the down-sampling stages."""
    layers: list[nn.Module] = []
    res = resolution
    while res > 4:
        layers += _conv_gn_act(channels, channels, 4, 2, 1, nn.SiLU())
        res = (res + 2 - 4) // 2 + 1
    layers += _conv_gn_act(channels, channels, res, res, 0, nn.SiLU())
    layers.append(nn.Conv2d(channels, 1, kernel_size=1))
    return nn.Sequential(*layers)


class Discriminator_EDM(Discriminator):
    """Heads for U-Net features: feature i has resolution `all_res[i]` and `in_channels` (int, or one per
    resolution) channels. `feature_indices=None` uses only the last (lowest-resolution) feature."""

    def __init__(self, feature_indices=None, all_res: Sequence[int] = (32, 16, 8), in_channels=256):
        all_res = [int(r) for r in all_res]
        if feature_indices is None:
            feature_indices = [len(all_res) - 1]
        super().__init__(feature_indices, len(all_res))
        self.all_res = all_res
        self.in_channels = _per_feature(in_channels, len(all_res), "in_channels")
        for i in self.feature_indices:
            self.heads[str(i)] = edm_head(self.in_channels[i], all_res[i])


# -------------------------------------------------------------------------------------------- image DiT
class Discriminator_ImageDiT(Discriminator):
    """Heads for image-transformer features [B, inner_dim, H, W]: Conv4x4 s2 (-> inner_dim/2) + GN +
    LeakyReLU(0.2) + 1x1 conv + global average pool. `feature_indices=None` -> the middle block."""

    def __init__(self, feature_indices=None, num_blocks: int = 57, inner_dim: int = 3072):
        if feature_indices is None:
            feature_indices = [num_blocks // 2]
        super().__init__(feature_indices, num_blocks)
        self.inner_dim = inner_dim
        hidden = max(1, inner_dim // 2)
        for i in self.feature_indices:
            self.heads[str(i)] = nn.Sequential(
                *_conv_gn_act(inner_dim, hidden, 4, 2, 1, nn.LeakyReLU(0.2)),
                nn.Conv2d(hidden, 1, kernel_size=1),
                nn.AdaptiveAvgPool2d(1),
            )


# -------------------------------------------------------------------------------------------------- toy
class Discriminator_MLP(Discriminator):
    """Heads for vector features [B, C] of the toy networks: Linear-SiLU-Linear-SiLU-Linear -> 1 logit.
    `in_dims`: one width per feature (list) or the same width for all (int, with `num_features` features).
    `feature_indices=None` -> the last feature."""

    def __init__(self, feature_indices=None, in_dims=128, hidden_dim: int = 128, num_features: int | None = None):
        if isinstance(in_dims, int):
            if num_features is None:
                num_features = 1 if feature_indices is None else max(int(i) for i in feature_indices) + 1
        else:
            num_features = len(list(in_dims))
        if feature_indices is None:
            feature_indices = [num_features - 1]
        super().__init__(feature_indices, num_features)
        self.in_dims = _per_feature(in_dims, num_features, "in_dims")
        for i in self.feature_indices:
            self.heads[str(i)] = nn.Sequential(
                nn.Linear(self.in_dims[i], hidden_dim),
                nn.SiLU(),
                nn.Linear(hidden_dim, hidden_dim),
                nn.SiLU(),
                nn.Linear(hidden_dim, 1),
            )


_VIDEO_NAMES = ("Discriminator_VideoDiT", "VIDEO_DISC_TYPES")


def __getattr__(name: str):
    """Old dotted targets `fastgen.networks.discriminators.Discriminator_VideoDiT` keep working; imported lazily
    because discriminators_video imports the base classes from this module."""
    if name in _VIDEO_NAMES:
        from fastgen.networks import discriminators_video

        return getattr(discriminators_video, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
