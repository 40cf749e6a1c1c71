"""SongUNet: the DDPM++ / NCSN++ UNet of Song et al. 2021 in the form EDM (Karras et al. 2022) trains it.

DDPM++ (EDM's CIFAR-10 "VP" networks): positional noise embedding, standard encoder/decoder, box resampling
filter [1, 1], channel_mult_noise 1. NCSN++: Fourier embedding, residual encoder, filter [1, 3, 3, 1],
channel_mult_noise 2. Block and module names match the EDM checkpoints (`enc.32x32_block0`, ...).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fastgen.networks.EDM.layers import (
    Conv2d,
    FourierEmbedding,
    GroupNorm,
    Linear,
    PositionalEmbedding,
    UNetBlock,
    level_feature_names,
)

EMBEDDING_TYPES = ("positional", "fourier")
ENCODER_TYPES = ("standard", "skip", "residual")
DECODER_TYPES = ("standard", "skip")


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}; got {value!r}")


class SongUNet(nn.Module):
    """DDPM++/NCSN++ UNet. forward -> (output or None, {level: feature}); see `forward`."""

    def __init__(
        self,
        img_resolution,
        in_channels,
        out_channels,
        label_dim=0,
        augment_dim=0,
        model_channels=128,
        channel_mult=(1, 2, 2, 2),
        channel_mult_emb=4,
        num_blocks=4,
        attn_resolutions=(16,),
        dropout=0.10,
        label_dropout=0.0,
        embedding_type="positional",
        channel_mult_noise=1,
        encoder_type="standard",
        decoder_type="standard",
        resample_filter=(1, 1),
        r_timestep=False,
    ):
        super().__init__()
        _check_choice("embedding_type", embedding_type, EMBEDDING_TYPES)
        _check_choice("encoder_type", encoder_type, ENCODER_TYPES)
        _check_choice("decoder_type", decoder_type, DECODER_TYPES)
        channel_mult, attn_resolutions = list(channel_mult), list(attn_resolutions)
        self.img_resolution, self.num_levels, self.num_blocks = img_resolution, len(channel_mult), num_blocks
        self.label_dropout = float(label_dropout)
        emb_channels = model_channels * channel_mult_emb
        self.noise_channels = noise_channels = model_channels * channel_mult_noise
        self.feature_channels = [model_channels * m for m in channel_mult]
        init = dict(init_mode="xavier_uniform")
        init_zero = dict(init_mode="xavier_uniform", init_weight=1e-5)
        init_attn = dict(init_mode="xavier_uniform", init_weight=math.sqrt(0.2))
        block_kwargs = dict(
            emb_channels=emb_channels, num_heads=1, dropout=dropout, skip_scale=math.sqrt(0.5), eps=1e-6,
            resample_filter=resample_filter, resample_proj=True, adaptive_scale=False,
            init=init, init_zero=init_zero, init_attn=init_attn,
        )  # fmt: skip

        # Mapping network: noise (+ r) + class + augment labels -> embedding
        if embedding_type == "positional":
            self.map_noise = PositionalEmbedding(noise_channels, endpoint=True)
        else:
            self.map_noise = FourierEmbedding(noise_channels)
        # r (MeanFlow's second time): zero-initialised so an r-net starts equal to the plain net
        self.map_r = Linear(noise_channels, noise_channels, bias=False, init_weight=0.0, **init) if r_timestep else None
        self.map_label = Linear(label_dim, noise_channels, **init) if label_dim else None
        self.map_augment = Linear(augment_dim, noise_channels, bias=False, **init) if augment_dim else None
        self.map_layer0 = Linear(noise_channels, emb_channels, **init)
        self.map_layer1 = Linear(emb_channels, emb_channels, **init)

        # Encoder
        self.enc = nn.ModuleDict()
        cout = caux = in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                cin, cout = cout, model_channels
                self.enc[f"{res}x{res}_conv"] = Conv2d(cin, cout, kernel=3, **init)
            else:
                self.enc[f"{res}x{res}_down"] = UNetBlock(cout, cout, down=True, **block_kwargs)
                if encoder_type == "skip":
                    self.enc[f"{res}x{res}_aux_down"] = Conv2d(
                        caux, caux, kernel=0, down=True, resample_filter=resample_filter
                    )
                    self.enc[f"{res}x{res}_aux_skip"] = Conv2d(caux, cout, kernel=1, **init)
                if encoder_type == "residual":
                    self.enc[f"{res}x{res}_aux_residual"] = Conv2d(
                        caux, cout, kernel=3, down=True, resample_filter=resample_filter, fused_resample=True, **init
                    )
                    caux = cout
            for idx in range(num_blocks):
                cin, cout = cout, model_channels * mult
                attn = res in attn_resolutions
                self.enc[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=attn, **block_kwargs)
        skips = [block.out_channels for name, block in self.enc.items() if "aux" not in name]

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
                attn = idx == num_blocks and res in attn_resolutions
                self.dec[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=attn, **block_kwargs)
            if decoder_type == "skip" or level == 0:
                if decoder_type == "skip" and level < len(channel_mult) - 1:
                    self.dec[f"{res}x{res}_aux_up"] = Conv2d(
                        out_channels, out_channels, kernel=0, up=True, resample_filter=resample_filter
                    )
                self.dec[f"{res}x{res}_aux_norm"] = GroupNorm(cout, eps=1e-6)
                self.dec[f"{res}x{res}_aux_conv"] = Conv2d(cout, out_channels, kernel=3, **init_zero)
        self._feature_names = level_feature_names(img_resolution, self.num_levels, num_blocks)

    def noise_features(self, noise_labels: torch.Tensor) -> torch.Tensor:
        """Embedding of the (float32 / float64) noise labels, [sin, cos] order (DDPM++ convention)."""
        emb = self.map_noise(noise_labels)
        return emb.reshape(emb.shape[0], 2, -1).flip(1).reshape(emb.shape)

    def embed(self, noise_labels, class_labels=None, augment_labels=None, r_noise_labels=None) -> torch.Tensor:
        emb = self.noise_features(noise_labels)
        if self.map_r is not None:
            emb = emb + self.map_r(self.noise_features(r_noise_labels))
        if self.map_label is not None:
            labels = class_labels
            if self.training and self.label_dropout:
                keep = torch.rand([labels.shape[0], 1], device=labels.device) >= self.label_dropout
                labels = labels * keep.to(labels.dtype)
            emb = emb + self.map_label(labels * math.sqrt(self.map_label.in_features))
        if self.map_augment is not None and augment_labels is not None:
            emb = emb + self.map_augment(augment_labels)
        emb = F.silu(self.map_layer0(emb))
        return F.silu(self.map_layer1(emb))

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
        skips, aux = [], x
        for name, block in self.enc.items():
            if "aux_down" in name:
                aux = block(aux)
            elif "aux_skip" in name:
                x = skips[-1] = x + block(aux)
            elif "aux_residual" in name:
                x = skips[-1] = aux = (x + block(aux)) / math.sqrt(2)
            else:
                x = block(x, emb) if isinstance(block, UNetBlock) else block(x)
                skips.append(x)
                if name in wanted:
                    features[wanted[name]] = x
                    if return_features_early and len(features) == len(wanted):
                        return None, features

        aux = tmp = None
        for name, block in self.dec.items():
            if "aux_up" in name:
                aux = block(aux)
            elif "aux_norm" in name:
                tmp = block(x)
            elif "aux_conv" in name:
                tmp = block(F.silu(tmp))
                aux = tmp if aux is None else tmp + aux
            else:
                if "_block" in name:
                    x = torch.cat([x, skips.pop()], dim=1)
                x = block(x, emb)
        return aux, features
