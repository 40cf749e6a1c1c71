"""EDMPrecond: EDM's preconditioned denoiser (Karras et al. 2022) around a SongUNet (DDPM++/NCSN++) or DhariwalUNet
(ADM), behind the FastGenNetwork interface.

D(x; t) = c_skip(t) x + c_out(t) F(c_in(t) x; c_noise(t)) on the edm schedule (sigma = t). With
`drop_precond="input"` F sees x unscaled, with "output" D = F, with "both" the raw UNet output is the native
prediction (`net_pred_type`); schedules other than edm require "both" (MeanFlow's CIFAR-10 config: rf + flow).

Extensions over EDM used by distillation methods:
  * `r_timestep`: a second time r (MeanFlow's average-velocity end point) embedded like t through a zero-initialised
    linear map (an r-net starts equal to the t-only net); r defaults to t when not given; r < min_t embeds as min_t;
  * `enable_logvar`: a linear head on the noise embedding giving log u(t) for adaptive loss weighting (sCM);
  * features: the encoder output after the last block of every resolution (index 0 = highest resolution) for
    GAN discriminators; `return_features_early` stops after the deepest requested one;
  * `sigma_shift`: subtracted from t in eval mode only (a sampling-time noise-level offset).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from fastgen.networks.EDM import precond as P
from fastgen.networks.EDM.dhariwal_unet import DhariwalUNet
from fastgen.networks.EDM.layers import Linear
from fastgen.networks.EDM.song_unet import SongUNet
from fastgen.networks.network import SMOKE_SPATIAL_SIZE, FastGenNetwork

MODEL_TYPES = ("SongUNet", "DhariwalUNet")
# architecture defaults = the EDM classes' defaults (so converted official checkpoints rebuild exactly)
ARCH_DEFAULTS = {
    "SongUNet": dict(
        model_channels=128, channel_mult=[1, 2, 2, 2], channel_mult_emb=4, num_blocks=4, attn_resolutions=[16],
        dropout=0.10, label_dropout=0.0, embedding_type="positional", channel_mult_noise=1,
        encoder_type="standard", decoder_type="standard", resample_filter=[1, 1],
    ),
    "DhariwalUNet": dict(
        model_channels=192, channel_mult=[1, 2, 3, 4], channel_mult_emb=4, num_blocks=3, attn_resolutions=[32, 16, 8],
        dropout=0.10, label_dropout=0.0,
    ),
}  # fmt: skip
# SongUNet-only options and the value DhariwalUNet implicitly has
_SONG_ONLY = dict(
    embedding_type="positional", channel_mult_noise=1, encoder_type="standard", decoder_type="standard",
    resample_filter=[1, 1],
)  # fmt: skip


def resolve_arch_kwargs(model_type: str, **given) -> dict:
    """Per-architecture kwargs: the given (non-None) values over the architecture's defaults."""
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type must be one of {MODEL_TYPES}; got {model_type!r}")
    kwargs = copy.deepcopy(ARCH_DEFAULTS[model_type])  # never hand out the module-level lists
    for name, value in given.items():
        if value is None:
            continue
        value = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else value
        if model_type == "DhariwalUNet" and name in _SONG_ONLY:
            if value != _SONG_ONLY[name]:
                raise ValueError(
                    f"{name}={value!r} is a SongUNet option; DhariwalUNet only supports "
                    f"{name}={_SONG_ONLY[name]!r} (or leave it unset)"
                )
            continue
        kwargs[name] = value
    return kwargs


class EDMPrecond(FastGenNetwork):
    """EDM denoiser (native prediction x0 on the edm schedule); see the module docstring."""

    def __init__(
        self,
        img_resolution: int = 32,
        img_channels: int = 3,
        label_dim: int = 0,
        sigma_data: float = 0.5,
        model_type: str = "SongUNet",
        augment_dim: int = 0,
        model_channels: int | None = None,
        channel_mult=None,
        channel_mult_emb: int | None = None,
        channel_mult_noise: int | None = None,
        num_blocks: int | None = None,
        attn_resolutions=None,
        dropout: float | None = None,
        label_dropout: float | None = None,
        embedding_type: str | None = None,
        encoder_type: str | None = None,
        decoder_type: str | None = None,
        resample_filter=None,
        r_timestep: bool = False,
        drop_precond: str | None = None,
        sigma_shift: float = 0.0,
        enable_logvar: bool = False,
        net_pred_type: str = "x0",
        schedule_type: str = "edm",
        **schedule_kwargs,
    ):
        super().__init__(net_pred_type=net_pred_type, schedule_type=schedule_type, **schedule_kwargs)
        P.check_drop_precond(drop_precond, schedule_type)
        self.img_resolution, self.img_channels = int(img_resolution), int(img_channels)
        self.label_dim, self.augment_dim = int(label_dim), int(augment_dim)
        self.sigma_data, self.sigma_shift = float(sigma_data), float(sigma_shift)
        self.model_type, self.drop_precond, self.r_timestep = model_type, drop_precond, bool(r_timestep)
        arch = resolve_arch_kwargs(
            model_type, model_channels=model_channels, channel_mult=channel_mult, channel_mult_emb=channel_mult_emb,
            channel_mult_noise=channel_mult_noise, num_blocks=num_blocks, attn_resolutions=attn_resolutions,
            dropout=dropout, label_dropout=label_dropout, embedding_type=embedding_type, encoder_type=encoder_type,
            decoder_type=decoder_type, resample_filter=resample_filter,
        )  # fmt: skip
        if img_resolution % (2 ** (len(arch["channel_mult"]) - 1)):
            raise ValueError(
                f"img_resolution={img_resolution} must be divisible by 2^(len(channel_mult) - 1) = "
                f"{2 ** (len(arch['channel_mult']) - 1)}"
            )
        self.arch_kwargs = arch
        unet_cls = SongUNet if model_type == "SongUNet" else DhariwalUNet
        self.unet = unet_cls(
            img_resolution=self.img_resolution, in_channels=self.img_channels, out_channels=self.img_channels,
            label_dim=self.label_dim, augment_dim=self.augment_dim, r_timestep=self.r_timestep, **arch,
        )  # fmt: skip
        # log u(t) head for adaptive weighting; zero init -> u = 1 (plain loss) at the start
        self.logvar_linear = (
            Linear(self.unet.noise_channels, 1, init_mode="xavier_uniform", init_weight=0.0) if enable_logvar else None
        )

    @classmethod
    def smoke_overrides(cls, kwargs: dict) -> dict:
        """Tiny U-Net of the same type for --smoke: 8x8, 16 channels, one block per level, at most 3 levels, and
        attention at 4x4 when the real net has any (so the attention path still runs)."""
        arch = resolve_arch_kwargs(kwargs.get("model_type", "SongUNet"), channel_mult=kwargs.get("channel_mult"),
                                   attn_resolutions=kwargs.get("attn_resolutions"),
                                   model_channels=kwargs.get("model_channels"))
        return {
            "img_resolution": SMOKE_SPATIAL_SIZE, "model_channels": min(16, arch["model_channels"]),
            "channel_mult": list(arch["channel_mult"])[:3], "num_blocks": 1,
            "attn_resolutions": [SMOKE_SPATIAL_SIZE // 2] if arch["attn_resolutions"] else [],
        }

    # -- introspection used by methods / discriminators --
    @property
    def feature_channels(self) -> list[int]:
        """Channels of feature i (resolution img_resolution >> i)."""
        return list(self.unet.feature_channels)

    @property
    def feature_resolutions(self) -> list[int]:
        return [self.img_resolution >> i for i in range(self.unet.num_levels)]

    def fsdp_units(self):
        return self.unet.blocks()

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
        levels = P.check_feature_indices(feature_indices, self.unet.num_levels, return_features_early)
        if return_features_early and not levels:
            return []  # no feature requested: nothing to compute
        if return_logvar and self.logvar_linear is None:
            raise ValueError("return_logvar=True needs a network built with enable_logvar=True")
        if r is not None and not self.r_timestep:
            raise ValueError("r was given but this network has r_timestep=False; build it with r_timestep=True")
        batch, device = x_t.shape[0], x_t.device
        t_vec = P.flatten_time(t, x_t)
        time = t_vec - self.sigma_shift if (self.sigma_shift and not self.training) else t_vec
        labels, aug = P.split_condition(condition)
        r_labels = None
        if self.r_timestep:
            r_time = time if r is None else P.flatten_time(r, x_t, "r")
            # r below the schedule's smallest time (MeanFlow's last step ends at r = 0) embeds as min_t: on edm the
            # label log(r)/4 would otherwise leave the trained range for log(1e-20)/4 = -11.5 at r = 0, where the
            # learned r-map has never been fitted; the trajectory below min_t is the data itself (0.002 on edm)
            r_time = r_time.clamp(min=float(self.noise_scheduler.min_t))
            r_labels = P.noise_labels(r_time, self.schedule_type)

        # preconditioning and the embedding path run in float32 (float64 for a float64 input)
        x_in, noise, c_skip, c_out = P.precondition_input(x_t, time, self.sigma_data, self.schedule_type,
                                                          self.drop_precond)  # fmt: skip
        labels = P.class_labels(labels, self.label_dim, batch, device, noise.dtype)
        aug = P.augment_labels(aug, self.augment_dim, batch, device, noise.dtype)
        r_labels = None if r_labels is None else r_labels.to(noise.dtype)
        raw, feats = self.unet(x_in, noise, labels, aug, r_labels, levels, return_features_early)
        features = [feats[i] for i in levels]
        if return_features_early:
            return features
        out = P.precondition_output(x_t, raw, c_skip, c_out)
        out = self.convert_output(x_t, out, t_vec, fwd_pred_type)
        logvar = self.logvar_linear(self.unet.noise_features(noise)) if return_logvar else None
        return self.pack_outputs(out, features, logvar, levels, return_logvar)
