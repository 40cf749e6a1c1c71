"""GAN discriminator heads on frozen-teacher features (DMD2, f-distill, LADD).

Every discriminator takes the list of teacher features the teacher returned for `discriminator.feature_indices`
(sorted, increasing; `features[k]` belongs to `feature_indices[k]`) and returns logits [B, n_heads], one
independent head per feature (an nn.ModuleDict keyed by the feature index), so each logit depends on its own
feature only. Ask the teacher for exactly these features:
`teacher(x_t, t, condition, feature_indices=disc.feature_indices, return_features_early=True)`.
The video heads live in discriminators_video.py (still importable from here, see __getattr__ at the end).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import nn


def group_norm_groups(channels: int) -> int:
    """GroupNorm group count: the largest divisor of C that is <= min(32, C // 4), i.e. at least 4 channels per
    group (EDM's own GroupNorm rule); from width 128 on it is the reference's rule (32 groups where 32 divides C).

    Why a minimum group width: the heads end on a 1x1 map, where a group normalises only its own channels. One
    channel per group normalises to exactly 0 (constant logit); two normalise to +-1 whatever the input, and the
    gradient through them vanishes, so everything below that norm stops learning (measured: the Fashion-MNIST DMD2
    head on 64 channels at 32 groups stayed at chance, logits ~0 on real and fake after 500 iterations).
    """
    if channels < 1:
        raise ValueError(f"channels must be >= 1; got {channels}")
    limit = max(1, min(32, channels // 4))
    return max(d for d in range(1, limit + 1) if channels % d == 0)


def _conv_gn_act(c_in: int, c_out: int, kernel: int, stride: int, padding: int, act: nn.Module) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, stride, padding), nn.GroupNorm(group_norm_groups(c_out), c_out), act]


def conv_head(channels: Sequence[int], convs: Sequence[tuple[int, int, int]], act: type[nn.Module] | Callable,
              pool: bool = False) -> nn.Sequential:
    """The conv head every spatial discriminator uses: stage k is Conv2d(channels[k] -> channels[k + 1],
    kernel/stride/padding = convs[k]) + GroupNorm + act(); then a 1x1 conv to one logit, averaged over whatever
    map is left when `pool` (heads that do not reduce the map to 1x1 themselves)."""
    if len(channels) != len(convs) + 1:
        raise ValueError(f"conv_head needs one more channel count than convs; got {len(channels)} and {len(convs)}")
    layers: list[nn.Module] = []
    for c_in, c_out, (kernel, stride, padding) in zip(channels[:-1], channels[1:], convs):
        layers += _conv_gn_act(c_in, c_out, kernel, stride, padding, act())
    layers.append(nn.Conv2d(channels[-1], 1, kernel_size=1))
    if pool:
        layers.append(nn.AdaptiveAvgPool2d(1))
    return nn.Sequential(*layers)


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

    @classmethod
    def smoke_overrides(cls, kwargs: dict, feature_shapes: list[tuple]) -> dict:
        """Constructor kwargs that fit these heads to a tiny teacher for `train.py --smoke`.

        `feature_shapes[i]` is the per-sample shape of the tiny teacher's feature i (e.g. (C, h, w)), for every
        feature it has; the real config's `feature_indices` move to the same relative depth (`smoke_indices`).
        """
        raise NotImplementedError(
            f"{cls.__module__}.{cls.__name__} declares no tiny size for --smoke: give it a classmethod "
            "smoke_overrides(cls, kwargs, feature_shapes) -> dict (see Discriminator.smoke_overrides)"
        )

    @staticmethod
    def smoke_indices(indices, real_count: int, tiny_count: int):
        """Feature indices of a real network moved to the same relative depth of a tiny one (None stays None)."""
        if indices is None:
            return None
        return sorted({min(tiny_count - 1, int(i) * tiny_count // max(1, int(real_count))) for i in indices})

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
    convs, res = [], resolution
    while res > 4:
        convs.append((4, 2, 1))
        res = (res + 2 - 4) // 2 + 1
    convs.append((res, res, 0))
    return conv_head([channels] * (len(convs) + 1), convs, nn.SiLU)


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

    @classmethod
    def smoke_overrides(cls, kwargs: dict, feature_shapes: list[tuple]) -> dict:
        """One head input per tiny feature map (C, h, w): its side and channels."""
        real_count = len(kwargs.get("all_res") or cls.default_all_res(kwargs))
        return {
            "all_res": [int(s[-1]) for s in feature_shapes], "in_channels": [int(s[0]) for s in feature_shapes],
            "feature_indices": cls.smoke_indices(kwargs.get("feature_indices"), real_count, len(feature_shapes)),
        }

    @classmethod
    def default_all_res(cls, kwargs: dict) -> list[int]:
        return [32, 16, 8]


# -------------------------------------------------------------------------------------- Stable Diffusion
# Feature i < len(down_blocks) is the output of U-Net down block i, the last one the mid block's (CONTRACTS.md).
# Every down block but the last halves the latent; the VAE divides pixels by 8.
SD15_CHANNELS = (320, 640, 1280, 1280, 1280)  # down blocks 0-3, mid
SDXL_CHANNELS = (320, 640, 1280, 1280)  # down blocks 0-2, mid


def unet_feature_resolutions(resolution: int, num_down_blocks: int) -> list[int]:
    """Side of each down block's output and the mid block's, for images of `resolution` pixels (VAE factor 8)."""
    latent = int(resolution) // 8
    sides = [latent >> min(i + 1, num_down_blocks - 1) for i in range(num_down_blocks)]
    return sides + [sides[-1]]


class Discriminator_SD15(Discriminator_EDM):
    """EDM-style conv heads on SD1.5 U-Net features; 512 px -> all_res [32, 16, 8, 8, 8]. `feature_indices=None`
    uses the mid block (1280 channels, as the reference); in_channels is per feature so any index is valid."""

    def __init__(self, feature_indices=None, resolution: int = 512, all_res: Sequence[int] | None = None,
                 in_channels=SD15_CHANNELS):
        super().__init__(feature_indices, all_res or unet_feature_resolutions(resolution, 4), in_channels)

    @classmethod
    def default_all_res(cls, kwargs: dict) -> list[int]:
        return unet_feature_resolutions(kwargs.get("resolution", 512), 4)


class Discriminator_SDXL(Discriminator_EDM):
    """EDM-style conv heads on SDXL U-Net features; 512 px -> [32, 16, 16, 16], 1024 px -> [64, 32, 32, 32].
    `feature_indices=None` uses the mid block (1280 channels)."""

    def __init__(self, feature_indices=None, resolution: int = 1024, all_res: Sequence[int] | None = None,
                 in_channels=SDXL_CHANNELS):
        super().__init__(feature_indices, all_res or unet_feature_resolutions(resolution, 3), in_channels)

    @classmethod
    def default_all_res(cls, kwargs: dict) -> list[int]:
        return unet_feature_resolutions(kwargs.get("resolution", 1024), 3)


# -------------------------------------------------------------------------------------------- image DiT
class Discriminator_ImageDiT(Discriminator):
    """Heads for image-transformer features [B, inner_dim, H, W]: Conv4x4 s2 (-> inner_dim/2) + GN +
    LeakyReLU(0.2) + 1x1 conv + global average pool. `feature_indices=None` -> the middle block."""

    def __init__(self, feature_indices=None, num_blocks: int = 57, inner_dim: int = 3072):
        if feature_indices is None:
            feature_indices = [num_blocks // 2]
        super().__init__(feature_indices, num_blocks)
        self.inner_dim = inner_dim
        for i in self.feature_indices:
            self.heads[str(i)] = conv_head([inner_dim, max(1, inner_dim // 2)], [(4, 2, 1)],
                                           partial(nn.LeakyReLU, 0.2), pool=True)

    @classmethod
    def smoke_overrides(cls, kwargs: dict, feature_shapes: list[tuple]) -> dict:
        return _transformer_smoke_overrides(kwargs, feature_shapes, default_blocks=57)


def _transformer_smoke_overrides(kwargs: dict, feature_shapes: list[tuple], default_blocks: int) -> dict:
    """Image/video transformer heads: one feature per block, all of width inner_dim (read at the first used one)."""
    count = len(feature_shapes)
    indices = Discriminator.smoke_indices(kwargs.get("feature_indices"), kwargs.get("num_blocks", default_blocks),
                                          count)
    first = indices[0] if indices else count // 2
    return {"num_blocks": count, "inner_dim": int(feature_shapes[first][0]), "feature_indices": indices}


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

    @classmethod
    def smoke_overrides(cls, kwargs: dict, feature_shapes: list[tuple]) -> dict:
        """One input width per tiny feature vector; 16 hidden units."""
        in_dims = kwargs.get("in_dims", 128)
        real_count = len(in_dims) if not isinstance(in_dims, int) else kwargs.get("num_features") or len(feature_shapes)
        return {
            "in_dims": [int(s[0]) for s in feature_shapes],
            "hidden_dim": min(16, int(kwargs.get("hidden_dim", 128))),
            "feature_indices": cls.smoke_indices(kwargs.get("feature_indices"), real_count, len(feature_shapes)),
        }


_VIDEO_NAMES = ("Discriminator_VideoDiT", "VIDEO_DISC_TYPES")


def __getattr__(name: str):
    """Old dotted targets `fastgen.networks.discriminators.Discriminator_VideoDiT` keep working; imported lazily
    because discriminators_video imports the base classes from this module."""
    if name in _VIDEO_NAMES:
        from fastgen.networks import discriminators_video

        return getattr(discriminators_video, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
