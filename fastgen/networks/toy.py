"""Toy networks for the Gaussian-mixture experiments: a small trainable MLP and the exact (closed-form) teacher.

Both follow the FastGenNetwork contract, so every method can be run end to end on 2-D data in seconds, and its
1-step student compared against the exact distribution (fastgen.utils.gmm).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from fastgen.networks.network import FastGenNetwork
from fastgen.utils.gmm import make_gmm

TIME_LABELS = ("default", "trigflow")


class FourierTimeEmbedding(nn.Module):
    """[sin, cos](2 pi f c) on fixed log-spaced frequencies f in [1/4, max_freq]: resolves coarse and fine times.

    Methods that differentiate along time (sCM, MeanFlow: a JVP with tangent 1 in t) want a low max_freq: fast
    oscillations of the embedding dominate dF/dt and make their training target noise (Lu & Song 2024, Sec. 4.1).
    """

    def __init__(self, num_channels: int = 32, max_freq: float = 16.0):
        super().__init__()
        if not max_freq > 0.25:
            raise ValueError(f"max_time_freq must be > 0.25 (the lowest frequency); got {max_freq}")
        self.num_channels, self.max_freq = num_channels, float(max_freq)
        self.register_buffer("freqs", torch.empty(num_channels // 2), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.freqs.copy_(torch.logspace(-2, math.log2(self.max_freq), self.num_channels // 2, base=2.0,
                                            device=self.freqs.device))

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        arg = 2 * math.pi * c[:, None] * self.freqs[None].to(c.dtype)
        return torch.cat([arg.sin(), arg.cos()], dim=1)


class ToyMLP(FastGenNetwork):
    """Residual MLP denoiser for vectors x_t [B, dim].

    With net_pred_type="x0" it uses EDM preconditioning generalised to any schedule (Karras et al. 2022, Table 1,
    with x_t = alpha x0 + sigma eps): c_in = 1/sqrt(alpha^2 sd^2 + sigma^2), c_skip = alpha sd^2/(alpha^2 sd^2 +
    sigma^2), c_out = sigma sd/sqrt(alpha^2 sd^2 + sigma^2), so the raw network only predicts a unit-variance
    residual and trains in a few hundred steps. Other prediction types output the raw MLP on c_in-scaled input.
    The noise label (time_label="default") is log(t)/4 on edm and t elsewhere; time_label="trigflow" feeds the
    TrigFlow time s = arctan(sigma / (alpha sd)) in [0, pi/2] on any schedule (sCM's identity time transformation,
    Lu & Song 2024, Sec. 4.1): all high noise levels map close to pi/2, so a consistency model trained mostly at
    moderate noise generalises to the 1-step time, where log(sigma) would put it far outside what was trained.
    features: hidden activations after block i.
    """

    @classmethod
    def smoke_overrides(cls, kwargs: dict) -> dict:
        """Same depth (feature indices stay valid), 16 hidden units."""
        return {"hidden_dim": min(16, int(kwargs.get("hidden_dim", 128))), "time_emb_dim": 8}

    def __init__(
        self,
        dim: int = 2,
        hidden_dim: int = 128,
        num_layers: int = 3,
        label_dim: int = 0,
        net_pred_type: str = "x0",
        schedule_type: str = "edm",
        r_timestep: bool = False,
        sigma_data: float = 0.5,
        time_emb_dim: int = 32,
        max_time_freq: float = 16.0,
        time_label: str = "default",
        **schedule_kwargs,
    ):
        super().__init__(net_pred_type=net_pred_type, schedule_type=schedule_type, **schedule_kwargs)
        if time_label not in TIME_LABELS:
            raise ValueError(f"time_label must be one of {TIME_LABELS}; got {time_label!r}")
        self.time_label = time_label
        self.dim, self.hidden_dim, self.num_layers = dim, hidden_dim, num_layers
        self.label_dim, self.r_timestep, self.sigma_data = label_dim, r_timestep, float(sigma_data)
        self.time_embed = FourierTimeEmbedding(time_emb_dim, max_time_freq)
        self.time_mlp = nn.Sequential(nn.Linear(time_emb_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, hidden_dim))
        self.r_mlp = (
            nn.Sequential(nn.Linear(time_emb_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, hidden_dim))
            if r_timestep
            else None
        )
        self.label_embed = nn.Linear(label_dim, hidden_dim, bias=False) if label_dim > 0 else None
        self.in_proj = nn.Linear(dim, hidden_dim)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.SiLU(), nn.Linear(hidden_dim, hidden_dim)) for _ in range(num_layers)
        )
        self.out_proj = nn.Sequential(nn.SiLU(), nn.Linear(hidden_dim, dim))
        self.logvar_linear = nn.Linear(time_emb_dim, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Linear, FourierTimeEmbedding)):
                m.reset_parameters()
        # zero output layer: the x0 net starts as the c_skip-only denoiser, a good initial guess.
        nn.init.zeros_(self.out_proj[1].weight)
        nn.init.zeros_(self.out_proj[1].bias)
        nn.init.zeros_(self.logvar_linear.weight)
        nn.init.zeros_(self.logvar_linear.bias)
        super().reset_parameters()

    def noise_label(self, t: torch.Tensor) -> torch.Tensor:
        if self.time_label == "trigflow":
            schedule = self.noise_scheduler
            return torch.atan2(schedule.sigma(t), schedule.alpha(t) * self.sigma_data)
        if self.schedule_type == "edm":
            return torch.log(t.clamp_min(1e-20)) / 4
        return t

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
        feature_indices = sorted(set(feature_indices or ()))
        for i in feature_indices:
            if not 0 <= i < self.num_layers:
                raise ValueError(f"feature_indices must lie in [0, {self.num_layers}); got {i}")
        if return_features_early and not feature_indices:
            return []  # no feature requested: nothing to compute
        t = self.expand_t(t, x_t)
        t64 = t.to(torch.float64)
        alpha, sigma = self.noise_scheduler.alpha(t64)[:, None], self.noise_scheduler.sigma(t64)[:, None]
        sd = self.sigma_data
        denom = torch.sqrt(alpha**2 * sd**2 + sigma**2)
        c_in = (1 / denom).to(x_t.dtype)

        t_emb = self.time_embed(self.noise_label(t64).to(x_t.dtype))
        h = self.in_proj(c_in * x_t) + self.time_mlp(t_emb)
        if self.r_mlp is not None:
            r = t if r is None else self.expand_t(r, x_t)
            h = h + self.r_mlp(self.time_embed(self.noise_label(r.to(torch.float64)).to(x_t.dtype)))
        if self.label_embed is not None and condition is not None:
            h = h + self.label_embed(condition.to(x_t.dtype))

        features = []
        for i, block in enumerate(self.blocks):
            h = h + block(h)
            if i in feature_indices:
                features.append(h)
                if return_features_early and len(features) == len(feature_indices):
                    return features
        raw = self.out_proj(h)
        if self.net_pred_type == "x0":
            c_skip = (alpha * sd**2 / denom**2).to(x_t.dtype)
            c_out = (sigma * sd / denom).to(x_t.dtype)
            out = c_skip * x_t + c_out * raw
        else:
            out = raw
        out = self.convert_output(x_t, out, t, fwd_pred_type)
        logvar = self.logvar_linear(t_emb) if return_logvar else None
        return self.pack_outputs(out, features, logvar, feature_indices, return_logvar)


class GMMDenoiser(FastGenNetwork):
    """The exact teacher: E[x0 | x_t] of a Gaussian mixture (fastgen.utils.gmm) under any schedule.

    condition [B, K] (one-hot or class weights, K = label_dim = number of components) replaces the mixture
    prior, giving the conditional posterior mean; a zero row means unconditional. Feature index 0 is
    cat([x_t, x0_pred], dim=1) [B, 2*dim] so GAN heads can attach. No trainable parameters.
    """

    @classmethod
    def smoke_overrides(cls, kwargs: dict) -> dict:
        """No weights: already tiny."""
        return {}

    def __init__(
        self,
        gmm_name: str = "ring8",
        dim: int = 2,
        schedule_type: str = "edm",
        label_dim: int = 0,
        net_pred_type: str = "x0",
        **schedule_kwargs,
    ):
        super().__init__(net_pred_type=net_pred_type, schedule_type=schedule_type, **schedule_kwargs)
        self.gmm_name, self.dim, self.label_dim = gmm_name, dim, label_dim
        self.gmm = make_gmm(gmm_name, dim)
        if label_dim not in (0, self.gmm.num_components):
            raise ValueError(
                f"label_dim must be 0 or the number of mixture components ({self.gmm.num_components}) of "
                f"{gmm_name!r}; got {label_dim}"
            )
        self.register_buffer("_dummy", torch.zeros(0))  # carries device/dtype; keeps state_dict non-trivial

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
        feature_indices = sorted(set(feature_indices or ()))
        if any(i != 0 for i in feature_indices):
            raise ValueError(f"GMMDenoiser has one feature (index 0); got feature_indices={feature_indices}")
        if return_features_early and not feature_indices:
            return []  # no feature requested: nothing to compute
        t = self.expand_t(t, x_t)
        t64 = t.to(torch.float64)
        labels = None
        if self.label_dim > 0 and condition is not None and condition.shape[-1] > 0:
            labels = condition.to(torch.float64)
        x0 = self.gmm.posterior_mean(
            x_t, self.noise_scheduler.alpha(t64), self.noise_scheduler.sigma(t64), labels=labels
        ).to(x_t.dtype)
        features = [torch.cat([x_t, x0], dim=1)] if feature_indices else []
        if return_features_early:
            return features  # [] when no feature is requested
        out = self.noise_scheduler.convert_model_output(x_t, x0, t, "x0", fwd_pred_type or self.net_pred_type)
        logvar = torch.zeros(x_t.shape[0], 1, dtype=x_t.dtype, device=x_t.device) if return_logvar else None
        return self.pack_outputs(out, features, logvar, feature_indices, return_logvar)
