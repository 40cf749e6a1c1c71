"""DhariwalUNet: the ADM UNet of Dhariwal & Nichol 2021 as EDM (Karras et al. 2022) trains it on ImageNet-64.

Adaptive GroupNorm scale/shift from the embedding, multi-head attention with 64 channels per head at the listed
resolutions, class labels added after the mapping MLP. Module names match the EDM checkpoints.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fastgen.networks.EDM.layers import Conv2d, GroupNorm, Linear, PositionalEmbedding, UNetBlock, level_feature_names


class DhariwalUNet(nn.Module):
    """ADM UNet. forward -> (output or None, {level: feature}), like SongUNet."""

    def __init__(
        self,
        img_resolution,
        in_channels,
        out_channels,
        label_dim=0,
        augment_dim=0,
        model_channels=192,
        channel_mult=(1, 2, 3, 4),
        channel_mult_emb=4,
        num_blocks=3,
        attn_resolutions=(32, 16, 8),
        dropout=0.10,
        label_dropout=0.0,
        r_timestep=False,
    ):
        super().__init__()
        channel_mult, attn_resolutions = list(channel_mult), list(attn_resolutions)
        self.img_resolution, self.num_levels, self.num_blocks = img_resolution, len(channel_mult), num_blocks
        self.label_dropout = float(label_dropout)
        emb_channels = model_channels * channel_mult_emb
        self.noise_channels = model_channels
        self.feature_channels = [model_channels * m for m in channel_mult]
        init = dict(init_mode="kaiming_uniform", init_weight=math.sqrt(1 / 3), init_bias=math.sqrt(1 / 3))
        init_zero = dict(init_mode="kaiming_uniform", init_weight=0.0, init_bias=0.0)
        block_kwargs = dict(emb_channels=emb_channels, channels_per_head=64, dropout=dropout, init=init,
                            init_zero=init_zero)  # fmt: skip

        # Mapping network
        self.map_noise = PositionalEmbedding(model_channels)
        self.map_r = Linear(model_channels, model_channels, bias=False, **init_zero) if r_timestep else None
        self.map_augment = Linear(augment_dim, model_channels, bias=False, **init_zero) if augment_dim else None
        self.map_layer0 = Linear(model_channels, emb_channels, **init)
        self.map_layer1 = Linear(emb_channels, emb_channels, **init)
        self.map_label = None
        if label_dim:
            self.map_label = Linear(
                label_dim, emb_channels, bias=False, init_mode="kaiming_normal", init_weight=math.sqrt(label_dim)
            )

        # Encoder
        self.enc = nn.ModuleDict()
        cout = in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                cin, cout = cout, model_channels * mult
                self.enc[f"{res}x{res}_conv"] = Conv2d(cin, cout, kernel=3, **init)
            else:
                self.enc[f"{res}x{res}_down"] = UNetBlock(cout, cout, down=True, **block_kwargs)
            for idx in range(num_blocks):
                cin, cout = cout, model_channels * mult
                attn = res in attn_resolutions
                self.enc[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=attn, **block_kwargs)
        skips = [block.out_channels for block in self.enc.values()]

        # Decoder
        self.dec = nn.ModuleDict()
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            if level == len(channel_mult) - 1:
                self.dec[f"{res}x{res}_in0"] = UNetBlock(cout, cout, attention=True, **block_kwargs)
                self.dec[f"{res}x{res}_in1"] = UNetBlock(cout, cout, **block_kwargs)
            else:
                self.dec[f"{res}x{res}_up"] = UNetBlock(cout, cout, up=True, **block_kwargs)
            for idx in range(num_blocks + 1):
                cin, cout = cout + skips.pop(), model_channels * mult
                attn = res in attn_resolutions
                self.dec[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=attn, **block_kwargs)
        self.out_norm = GroupNorm(cout)
        self.out_conv = Conv2d(cout, out_channels, kernel=3, **init_zero)
        self._feature_names = level_feature_names(img_resolution, self.num_levels, num_blocks)

    def noise_features(self, noise_labels: torch.Tensor) -> torch.Tensor:
        """Embedding of the (float32 / float64) noise labels, [cos, sin] order (ADM convention)."""
        return self.map_noise(noise_labels)

    def embed(self, noise_labels, class_labels=None, augment_labels=None, r_noise_labels=None) -> torch.Tensor:
        emb = self.noise_features(noise_labels)
        if self.map_r is not None:
            emb = emb + self.map_r(self.noise_features(r_noise_labels))
        if self.map_augment is not None and augment_labels is not None:
            emb = emb + self.map_augment(augment_labels)
        emb = self.map_layer1(F.silu(self.map_layer0(emb)))
        if self.map_label is not None:
            labels = class_labels
            if self.training and self.label_dropout:
                keep = torch.rand([labels.shape[0], 1], device=labels.device) >= self.label_dropout
                labels = labels * keep.to(labels.dtype)
            emb = emb + self.map_label(labels)
        return F.silu(emb)

    def blocks(self) -> list[nn.Module]:
        """The residual blocks (FSDP units)."""
        return [m for m in list(self.enc.values()) + list(self.dec.values()) if isinstance(m, UNetBlock)]

    def forward(
        self,
        x,
        noise_labels,
        class_labels=None,
        augment_labels=None,
        r_noise_labels=None,
        feature_levels=(),
        return_features_early=False,
    ):
        """x [B, C, H, W]; noise labels [B] (float32, or float64 for a float64 network). Returns (F(x) or None if stopped early, {level: feature})."""
        emb = self.embed(noise_labels, class_labels, augment_labels, r_noise_labels)
        wanted = {self._feature_names[i]: i for i in feature_levels}
        features = {}
        skips = []
        for name, block in self.enc.items():
            x = block(x, emb) if isinstance(block, UNetBlock) else block(x)
            skips.append(x)
            if name in wanted:
                features[wanted[name]] = x
                if return_features_early and len(features) == len(wanted):
                    return None, features
        for name, block in self.dec.items():
            if "_block" in name:
                x = torch.cat([x, skips.pop()], dim=1)
            x = block(x, emb)
        return self.out_conv(F.silu(self.out_norm(x))), features
