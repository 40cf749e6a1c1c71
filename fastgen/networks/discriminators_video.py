"""GAN heads on video-transformer features [B, inner_dim, T, H, W] (Wan, CogVideoX, Cosmos teachers).

Every head is the same pipeline, `reduce -> trunk -> pooled vector -> MLP -> 1 logit`, and the 14 `disc_type`s of
the reference differ only in the trunk and in three sizes (VIDEO_DISC_TYPES):
  reduce       1x1x1 conv cutting the channels first ("efficient" 4x, "medium" 2x), so wide features stay cheap;
               the trunk width is also capped at `max_width` (1024): a full-width 3^3 conv on Cosmos-14B's 5120
               channels would have 708M weights per stage;
  trunk        conv3d: Conv3d 3^3 stride-2 stages (joint space-time);
               conv1d_2d: each stage a spatial 1x3x3 conv (stride 1,2,2) then a temporal 3x1x1 conv (stride 2,1,1),
                 the (2+1)-D factorisation: fewer weights, and a non-linearity between space and time;
               attention: conv3d stages, then one pre-norm self-attention block over the remaining space-time
                 tokens (global interactions a few 3^3 convs cannot reach);
               multiscale: conv3d stages whose pooled statistics are all concatenated (coarse and fine);
               factorized: two branches, appearance (per-frame spatial stages, pooled over T, H, W) and motion
                 (temporal stages on the spatially pooled sequence [B, C, T], pooled over T), concatenated;
  MLP width    "large" / "medium" double the hidden width.
`dit_simple_conv3d` is the smallest: (the width cap's reduce,) one stage and a 1x1x1 logit map, averaged. Kernel 3 / padding 1 / stride 2
keeps every T, H, W >= 1 valid (a single frame at 2x2 works).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fastgen.networks.discriminators import Discriminator, group_norm_groups


def conv3d_block(c_in: int, c_out: int, kernel=(3, 3, 3), stride=(2, 2, 2)) -> nn.Sequential:
    """Conv3d (padding k // 2 per dim) + GroupNorm + SiLU: the one building block of every video head."""
    kernel, stride = _triple(kernel), _triple(stride)
    return nn.Sequential(
        nn.Conv3d(c_in, c_out, kernel, stride, tuple(k // 2 for k in kernel)),
        nn.GroupNorm(group_norm_groups(c_out), c_out),
        nn.SiLU(),
    )


def reducer(channels: int, width: int) -> nn.Module:
    """The 1x1x1 channel cut to the trunk width (identity when there is nothing to cut)."""
    return conv3d_block(channels, width, 1, 1) if width < channels else nn.Identity()


def _triple(v) -> tuple[int, int, int]:
    return (int(v),) * 3 if isinstance(v, int) else tuple(int(x) for x in v)


def _spatial(c: int) -> nn.Sequential:
    return conv3d_block(c, c, (1, 3, 3), (1, 2, 2))


def _temporal(c: int) -> nn.Sequential:
    return conv3d_block(c, c, (3, 1, 1), (2, 1, 1))


STAGES = {
    "conv3d": lambda c: conv3d_block(c, c),
    "conv1d_2d": lambda c: nn.Sequential(_spatial(c), _temporal(c)),
}


class TokenAttention(nn.Module):
    """x + MHA(LayerNorm(x)) over the flattened T*H*W tokens of [B, C, T, H, W] (shape kept)."""

    def __init__(self, channels: int):
        super().__init__()
        heads = next(h for h in (8, 4, 2, 1) if channels % h == 0)
        self.norm = nn.LayerNorm(channels)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *grid = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # [B, N, C]
        q = self.norm(tokens)
        tokens = tokens + self.attn(q, q, q, need_weights=False)[0]
        return tokens.transpose(1, 2).reshape(b, c, *grid)


class DownTrunk(nn.Module):
    """`num_down` stages of `stage` kind; pooled output of the last stage, or of every stage concatenated when
    `multiscale`; `attention` adds a TokenAttention block after the last stage."""

    def __init__(self, width: int, stage: str, num_down: int, multiscale: bool = False, attention: bool = False):
        super().__init__()
        self.stages = nn.ModuleList([STAGES[stage](width) for _ in range(num_down)])
        self.mixer = TokenAttention(width) if attention else nn.Identity()
        self.multiscale = multiscale
        self.out_features = width * (num_down if multiscale else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = []
        for k, stage in enumerate(self.stages):
            x = stage(x)
            if k == len(self.stages) - 1:
                x = self.mixer(x)
            pooled.append(x.mean(dim=(2, 3, 4)))
        return torch.cat(pooled, dim=1) if self.multiscale else pooled[-1]


class FactorizedTrunk(nn.Module):
    """Appearance branch (spatial stages per frame) and motion branch (temporal stages on the spatial mean)."""

    def __init__(self, width: int, num_down: int):
        super().__init__()
        self.spatial = nn.Sequential(*[_spatial(width) for _ in range(num_down)])
        self.temporal = nn.Sequential(*[_temporal(width) for _ in range(num_down)])
        self.out_features = 2 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        appearance = self.spatial(x).mean(dim=(2, 3, 4))
        motion = self.temporal(x.mean(dim=(3, 4), keepdim=True)).mean(dim=(2, 3, 4))
        return torch.cat([appearance, motion], dim=1)


@dataclass(frozen=True)
class VideoHeadSpec:
    """trunk: conv3d | conv1d_2d | attention | factorized; reduce: channel cut of the 1x1x1 input conv;
    num_down: stride-2 stages; hidden_mult: MLP hidden width / trunk width; multiscale: pool every stage."""

    trunk: str
    reduce: int = 1
    num_down: int = 2
    hidden_mult: int = 1
    multiscale: bool = False


class VideoHead(nn.Module):
    """[B, C, T, H, W] -> [B, 1]: reduce -> trunk -> MLP (see the module docstring)."""

    def __init__(self, channels: int, spec: VideoHeadSpec, max_width: int = 1024):
        super().__init__()
        width = max(1, min(channels // spec.reduce, max_width))
        self.reduce = reducer(channels, width)
        if spec.trunk == "factorized":
            self.trunk = FactorizedTrunk(width, spec.num_down)
        else:
            stage = "conv3d" if spec.trunk == "attention" else spec.trunk
            self.trunk = DownTrunk(width, stage, spec.num_down, spec.multiscale, attention=spec.trunk == "attention")
        hidden = width * spec.hidden_mult
        self.mlp = nn.Sequential(nn.Linear(self.trunk.out_features, hidden), nn.SiLU(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.trunk(self.reduce(x)))


class SimpleConv3dHead(nn.Module):
    """The smallest video head: one Conv3d stage, then a 1x1x1 conv to a logit map, averaged."""

    def __init__(self, channels: int, max_width: int = 1024):
        super().__init__()
        width = max(1, min(channels, max_width))
        self.net = nn.Sequential(reducer(channels, width), conv3d_block(width, width), nn.Conv3d(width, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).mean(dim=(2, 3, 4))


# the reference's 14 head names; None = SimpleConv3dHead
VIDEO_DISC_TYPES: dict[str, VideoHeadSpec | None] = {
    "dit_simple_conv3d": None,
    "conv3d_down_mlp": VideoHeadSpec("conv3d"),
    "conv3d_down_mlp_efficient": VideoHeadSpec("conv3d", reduce=4),
    "conv1d_2d_down_mlp": VideoHeadSpec("conv1d_2d"),
    "conv1d_2d_down_mlp_efficient": VideoHeadSpec("conv1d_2d", reduce=4),
    "attention_down_mlp": VideoHeadSpec("attention"),
    "attention_down_mlp_efficient": VideoHeadSpec("attention", reduce=4),
    "multiscale_down_mlp": VideoHeadSpec("conv3d", num_down=3, multiscale=True),
    "multiscale_down_mlp_efficient": VideoHeadSpec("conv3d", reduce=4, num_down=3, multiscale=True),
    "multiscale_down_mlp_medium": VideoHeadSpec("conv3d", reduce=2, num_down=3, hidden_mult=2, multiscale=True),
    "multiscale_down_mlp_large": VideoHeadSpec("conv3d", num_down=3, hidden_mult=2, multiscale=True),
    "factorized_down_mlp": VideoHeadSpec("factorized"),
    "factorized_down_mlp_efficient": VideoHeadSpec("factorized", reduce=4),
    "factorized_down_mlp_large": VideoHeadSpec("factorized", hidden_mult=2),
}


def video_head(disc_type: str, channels: int, max_width: int = 1024) -> nn.Module:
    if disc_type not in VIDEO_DISC_TYPES:
        raise ValueError(f"disc_type={disc_type!r} is not supported; expected one of {list(VIDEO_DISC_TYPES)}")
    spec = VIDEO_DISC_TYPES[disc_type]
    return SimpleConv3dHead(channels, max_width) if spec is None else VideoHead(channels, spec, max_width)


# feature indices of a real network moved to the same relative depth of a tiny one (shared with the image heads)
relative_indices = Discriminator.smoke_indices


class Discriminator_VideoDiT(Discriminator):
    """Heads for video-transformer features [B, inner_dim, T, H, W]; `disc_type` picks the head architecture
    (see VIDEO_DISC_TYPES). `feature_indices=None` -> the middle block. `max_width` caps the trunk width."""

    def __init__(
        self,
        feature_indices=None,
        num_blocks: int = 30,
        disc_type: str = "conv3d_down_mlp_efficient",
        inner_dim: int = 384,
        max_width: int = 1024,
    ):
        if feature_indices is None:
            feature_indices = [num_blocks // 2]
        super().__init__(feature_indices, num_blocks)
        self.disc_type = disc_type
        self.inner_dim, self.max_width = inner_dim, max_width
        for i in self.feature_indices:
            self.heads[str(i)] = video_head(disc_type, inner_dim, max_width)

    @classmethod
    def smoke_overrides(cls, kwargs: dict, feature_shapes: list[tuple]) -> dict:
        """For `--smoke`: one block per tiny teacher feature (C, T, h, w), inner_dim = its C, the configured
        feature indices moved to the same relative depth; disc_type is kept (the tiny run exercises it)."""
        if not feature_shapes or len(feature_shapes[0]) != 4:
            raise ValueError(
                f"Discriminator_VideoDiT needs video features (C, T, h, w) per sample; got shapes {feature_shapes}"
            )
        real_count = kwargs.get("num_blocks", 30)
        indices = relative_indices(kwargs.get("feature_indices"), real_count, len(feature_shapes))
        return {"num_blocks": len(feature_shapes), "inner_dim": int(feature_shapes[0][0]), "feature_indices": indices}
