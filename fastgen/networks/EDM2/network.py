"""EDM2Precond: the EDM2 magnitude-preserving UNet (Karras et al. 2024) with EDM preconditioning and the
uncertainty (log-variance) head, behind the FastGenNetwork interface.

D(x; t) = c_skip x + c_out F(c_in x; c_noise) exactly as EDM (sigma = t), F the EDM2 UNet; `return_logvar` gives
log u(t) = logvar_linear(logvar_fourier(c_noise)) (EDM2 eq. 21), the learned per-noise-level loss weighting.
Extensions: `dropout_resolutions` (dropout only in blocks at these resolutions), `embedding_type`
("mp_fourier" = EDM2, "positional" = deterministic MP sinusoids), `mp_fourier_bandwidth`, features for
discriminators (encoder output after the last block of each resolution, index 0 = highest resolution).
Weights need `forced_weight_normalization()` before every optimiser step (ForcedWeightNormCallback does it).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from fastgen.networks.EDM import precond as P
from fastgen.networks.EDM.layers import level_feature_names
from fastgen.networks.EDM2.layers import Block, MPConv, MPFourier, MPPositional, mp_cat, mp_silu, mp_sum
from fastgen.networks.network import SMOKE_SPATIAL_SIZE, FastGenNetwork

EMBEDDING_TYPES = ("mp_fourier", "positional")


class EDM2UNet(nn.Module):
    """EDM2 UNet (Figure 21). forward -> (F(x) or None if stopped early, {level: feature})."""

    def __init__(
        self,
        img_resolution: int,
        img_channels: int,
        label_dim: int,
        model_channels: int = 192,
        channel_mult=(1, 2, 3, 4),
        channel_mult_noise: int | None = None,
        channel_mult_emb: int | None = None,
        num_blocks: int = 3,
        attn_resolutions=(16, 8),
        label_balance: float = 0.5,
        concat_balance: float = 0.5,
        embedding_type: str = "mp_fourier",
        mp_fourier_bandwidth: float = 1.0,
        dropout: float = 0.0,
        dropout_resolutions=None,
        **block_kwargs,
    ):
        super().__init__()
        if embedding_type not in EMBEDDING_TYPES:
            raise ValueError(f"embedding_type must be one of {EMBEDDING_TYPES}; got {embedding_type!r}")
        cblock = [model_channels * m for m in channel_mult]
        cnoise = model_channels * channel_mult_noise if channel_mult_noise is not None else cblock[0]
        cemb = model_channels * channel_mult_emb if channel_mult_emb is not None else max(cblock)
        self.img_resolution, self.num_levels, self.num_blocks = img_resolution, len(cblock), num_blocks
        self.feature_channels = list(cblock)
        self.label_balance, self.concat_balance = label_balance, concat_balance
        self.out_gain = nn.Parameter(torch.zeros([1]))  # shape [1], not [] (FSDP2 cannot shard 0-d params)
        attn_resolutions = list(attn_resolutions)
        drop_res = None if dropout_resolutions is None else list(dropout_resolutions)

        def block(cin, cout, res, **kw):
            p = dropout if (drop_res is None or res in drop_res) else 0.0
            return Block(cin, cout, cemb, dropout=p, **kw, **block_kwargs)

        # Embedding
        if embedding_type == "mp_fourier":
            self.emb_fourier = MPFourier(cnoise, bandwidth=mp_fourier_bandwidth)
        else:
            self.emb_fourier = MPPositional(cnoise)
        self.emb_noise = MPConv(cnoise, cemb, kernel=[])
        self.emb_label = MPConv(label_dim, cemb, kernel=[]) if label_dim else None

        # Encoder (input gets a constant ones channel, so the first conv can learn a bias)
        self.enc = nn.ModuleDict()
        cout = img_channels + 1
        for level, channels in enumerate(cblock):
            res = img_resolution >> level
            if level == 0:
                cin, cout = cout, channels
                self.enc[f"{res}x{res}_conv"] = MPConv(cin, cout, kernel=[3, 3])
            else:
                self.enc[f"{res}x{res}_down"] = block(cout, cout, res, flavor="enc", resample_mode="down")
            for idx in range(num_blocks):
                cin, cout = cout, channels
                attn = res in attn_resolutions
                self.enc[f"{res}x{res}_block{idx}"] = block(cin, cout, res, flavor="enc", attention=attn)

        # Decoder
        self.dec = nn.ModuleDict()
        skips = [b.out_channels for b in self.enc.values()]
        for level, channels in reversed(list(enumerate(cblock))):
            res = img_resolution >> level
            if level == len(cblock) - 1:
                self.dec[f"{res}x{res}_in0"] = block(cout, cout, res, flavor="dec", attention=True)
                self.dec[f"{res}x{res}_in1"] = block(cout, cout, res, flavor="dec")
            else:
                self.dec[f"{res}x{res}_up"] = block(cout, cout, res, flavor="dec", resample_mode="up")
            for idx in range(num_blocks + 1):
                cin, cout = cout + skips.pop(), channels
                attn = res in attn_resolutions
                self.dec[f"{res}x{res}_block{idx}"] = block(cin, cout, res, flavor="dec", attention=attn)
        self.out_conv = MPConv(cout, img_channels, kernel=[3, 3])
        self._feature_names = level_feature_names(img_resolution, self.num_levels, num_blocks)

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.out_gain.zero_()

    def blocks(self) -> list[nn.Module]:
        return [m for m in list(self.enc.values()) + list(self.dec.values()) if isinstance(m, Block)]

    def forward(self, x, noise_labels, class_labels=None, feature_levels=(), return_features_early=False):
        emb = self.emb_noise(self.emb_fourier(noise_labels))
        if self.emb_label is not None:
            label_emb = self.emb_label(class_labels * math.sqrt(class_labels.shape[1]))
            emb = mp_sum(emb, label_emb, t=self.label_balance)
        emb = mp_silu(emb)

        x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
        wanted = {self._feature_names[i]: i for i in feature_levels}
        features, skips = {}, []
        for name, blk in self.enc.items():
            x = blk(x) if isinstance(blk, MPConv) else blk(x, emb)
            skips.append(x)
            if name in wanted:
                features[wanted[name]] = x
                if return_features_early and len(features) == len(wanted):
                    return None, features
        for name, blk in self.dec.items():
            if "_block" in name:
                x = mp_cat(x, skips.pop(), t=self.concat_balance)
            x = blk(x, emb)
        return self.out_conv(x, gain=self.out_gain), features


class EDM2Precond(FastGenNetwork):
    """EDM2 denoiser with EDM preconditioning and the log-variance head; see the module docstring."""

    def __init__(
        self,
        img_resolution: int = 64,
        img_channels: int = 3,
        label_dim: int = 0,
        sigma_data: float = 0.5,
        logvar_channels: int = 128,
        model_channels: int = 192,
        channel_mult=(1, 2, 3, 4),
        channel_mult_noise: int | None = None,
        channel_mult_emb: int | None = None,
        num_blocks: int = 3,
        attn_resolutions=(16, 8),
        label_balance: float = 0.5,
        concat_balance: float = 0.5,
        dropout: float = 0.0,
        dropout_resolutions=None,
        embedding_type: str = "mp_fourier",
        mp_fourier_bandwidth: float = 1.0,
        channels_per_head: int = 64,
        res_balance: float = 0.3,
        attn_balance: float = 0.3,
        clip_act: float | None = 256,
        resample_filter=(1, 1),
        drop_precond: str | None = None,
        net_pred_type: str = "x0",
        schedule_type: str = "edm",
        **schedule_kwargs,
    ):
        super().__init__(net_pred_type=net_pred_type, schedule_type=schedule_type, **schedule_kwargs)
        P.check_drop_precond(drop_precond, schedule_type)
        if img_resolution % (2 ** (len(channel_mult) - 1)):
            raise ValueError(
                f"img_resolution={img_resolution} must be divisible by 2^(len(channel_mult) - 1) = "
                f"{2 ** (len(channel_mult) - 1)}"
            )
        self.img_resolution, self.img_channels, self.label_dim = int(img_resolution), int(img_channels), int(label_dim)
        self.sigma_data, self.drop_precond = float(sigma_data), drop_precond
        self.unet = EDM2UNet(
            img_resolution=self.img_resolution, img_channels=self.img_channels, label_dim=self.label_dim,
            model_channels=model_channels, channel_mult=list(channel_mult), channel_mult_noise=channel_mult_noise,
            channel_mult_emb=channel_mult_emb, num_blocks=num_blocks, attn_resolutions=list(attn_resolutions),
            label_balance=label_balance, concat_balance=concat_balance, embedding_type=embedding_type,
            mp_fourier_bandwidth=mp_fourier_bandwidth, dropout=dropout, dropout_resolutions=dropout_resolutions,
            channels_per_head=channels_per_head, res_balance=res_balance, attn_balance=attn_balance,
            clip_act=clip_act, resample_filter=list(resample_filter),
        )  # fmt: skip
        self.logvar_fourier = MPFourier(logvar_channels)
        self.logvar_linear = MPConv(logvar_channels, 1, kernel=[])

    @classmethod
    def smoke_overrides(cls, kwargs: dict) -> dict:
        """Tiny EDM2 U-Net for --smoke: 8x8, 16 channels (8 per attention head), one block per level, at most 3
        levels, attention at 4x4 when the real net has any."""
        mult = list(kwargs.get("channel_mult") or (1, 2, 3, 4))[:3]
        attn = kwargs.get("attn_resolutions", (16, 8))
        return {
            "img_resolution": SMOKE_SPATIAL_SIZE, "model_channels": 16, "channel_mult": mult, "num_blocks": 1,
            "attn_resolutions": [SMOKE_SPATIAL_SIZE // 2] if attn else [], "logvar_channels": 16,
            "channels_per_head": 8,
        }

    @property
    def feature_channels(self) -> list[int]:
        """Channels of feature i (resolution img_resolution >> i)."""
        return list(self.unet.feature_channels)

    @property
    def feature_resolutions(self) -> list[int]:
        return [self.img_resolution >> i for i in range(self.unet.num_levels)]

    def fsdp_units(self):
        return self.unet.blocks()

    @torch.no_grad()
    def forced_weight_normalization(self) -> None:
        """Project every MPConv weight back to unit RMS per output channel (EDM2 eq. 66); call before each step."""
        for module in self.modules():
            if isinstance(module, MPConv):
                module.normalize_weight_()

    def reset_parameters(self) -> None:
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        super().reset_parameters()

    def forward(
        self,
        x_t,
        t,
        condition=None,
        r=None,
        feature_indices=None,
        return_features_early=False,
        return_logvar=False,
        fwd_pred_type=None,
        **kwargs,
    ):
        P.check_extra_kwargs(kwargs, type(self).__name__)
        if r is not None:
            raise ValueError("EDM2Precond takes no second time r (MeanFlow needs a network with r_timestep)")
        levels = P.check_feature_indices(feature_indices, self.unet.num_levels, return_features_early)
        if return_features_early and not levels:
            return []  # no feature requested: nothing to compute
        batch, device = x_t.shape[0], x_t.device
        t_vec = P.flatten_time(t, x_t)
        labels, _ = P.split_condition(condition)  # EDM2 has no augmentation conditioning

        # preconditioning and the embedding path run in float32 (float64 for a float64 input)
        x_in, noise, c_skip, c_out = P.precondition_input(x_t, t_vec, self.sigma_data, self.schedule_type,
                                                          self.drop_precond)  # fmt: skip
        labels = P.class_labels(labels, self.label_dim, batch, device, noise.dtype)
        raw, feats = self.unet(x_in, noise, labels, levels, return_features_early)
        features = [feats[i] for i in levels]
        if return_features_early:
            return features
        out = P.precondition_output(x_t, raw, c_skip, c_out)
        out = self.convert_output(x_t, out, t_vec, fwd_pred_type)
        logvar = self.logvar_linear(self.logvar_fourier(noise)) if return_logvar else None
        return self.pack_outputs(out, features, logvar, levels, return_logvar)
