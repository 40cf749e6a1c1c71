"""f-distill (Xu et al. 2025, "One-step Diffusion Models with f-Divergence Distribution Matching").

DMD2 minimises the reverse KL between the generator's and the data distribution. f-distill minimises an
f-divergence D_f(p || q) instead; its generator gradient is the VSD gradient with a per-sample weight
h(r) = r^2 f''(r) of the density ratio r = p_data(x_t) / q_gen(x_t) (paper, Thm. 1). The ratio comes for free
from the GAN discriminator trained with the logistic loss, whose optimal logit is log r, so f-distill needs the
GAN (gan_loss_weight_gen > 0). Per step (generator iterations; critic iterations are DMD2's):
  r = clamp(exp(clamp(mean_heads D(feat(x_t)), -10, 10)), ratio_lower, ratio_upper);
  optional normalisation: r /= m_k, m_k = EMA over steps of the mean ratio in the time bin k of each sample
  (bin_num equal bins over [min_t, max_t]; sums and counts all-reduced across ranks);
  h = f_weight(r) / mean(h) (the mean over the global batch);   L_G = VSD(x; T, F, scale = h) + lambda_gan L_GAN.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fastgen.methods.distribution_matching.dmd2 import DMD2Model
from fastgen.utils import distributed as dist_utils

F_DIVERGENCES = ("rkl", "kl", "js", "sf", "neyman", "sh", "jf")


def f_divergence_weight(ratio: torch.Tensor, f_div: str) -> torch.Tensor:
    """h(r) = r^2 f''(r) up to a constant (f-distill, Table 1): reverse-KL 1, KL r, Jensen-Shannon r/(1+r),
    softened RKL 1/(1+r), Neyman chi^2 1/r, squared Hellinger sqrt(r), Jeffreys 1+r."""
    if f_div == "rkl":
        return torch.ones_like(ratio)
    if f_div == "kl":
        return ratio
    if f_div == "js":
        return 1.0 - 1.0 / (1.0 + ratio)
    if f_div == "sf":
        return 1.0 / (1.0 + ratio)
    if f_div == "neyman":
        return 1.0 / ratio
    if f_div == "sh":
        return ratio.sqrt()
    if f_div == "jf":
        return 1.0 + ratio
    raise ValueError(f"f_distill.f_div={f_div!r} is not supported; expected one of {F_DIVERGENCES}")


def density_ratio(logits: torch.Tensor, lower: float, upper: float) -> torch.Tensor:
    """r = exp(mean over heads of D's logits) (the logistic-loss optimum is log p/q), clamped to [lower, upper]."""
    log_r = logits.detach().float().mean(dim=1).clamp(-10.0, 10.0)
    return log_r.exp().clamp(lower, upper)


def time_bin_index(t: torch.Tensor, min_t: float, max_t: float, bin_num: int) -> torch.Tensor:
    """Index of the equal-width bin of [min_t, max_t] holding each t (int64 [B])."""
    frac = (t.to(torch.float64) - min_t) / (max_t - min_t)
    return (frac * bin_num).floor().clamp(0, bin_num - 1).long()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks when torch.distributed is initialised (in place; returned for chaining)."""
    if dist_utils.is_initialized():
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
    return tensor


class RatioNormalizer(nn.Module):
    """Per-time-bin running mean of the density ratio (a checkpointed buffer `bins`, ones at start).

    Why: the discriminator's ratio scale drifts with t and over training; dividing by the bin's running mean keeps
    the f-weights of different noise levels comparable."""

    def __init__(self, bin_num: int, min_t: float, max_t: float, ema_rate: float):
        super().__init__()
        if bin_num < 1:
            raise ValueError(f"f_distill.bin_num must be >= 1; got {bin_num}")
        if not 0.0 <= ema_rate < 1.0:
            raise ValueError(f"f_distill.ratio_ema_rate must be in [0, 1); got {ema_rate}")
        self.min_t, self.max_t, self.ema_rate = float(min_t), float(max_t), float(ema_rate)
        self.register_buffer("bins", torch.ones(bin_num, dtype=torch.float64))

    @torch.no_grad()
    def update(self, ratio: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """EMA of the global (all-rank) per-bin mean ratio; bins without samples keep their value. Returns the bin
        index of every sample."""
        idx = time_bin_index(t, self.min_t, self.max_t, len(self.bins)).to(self.bins.device)
        stats = torch.zeros(2, len(self.bins), dtype=torch.float64, device=self.bins.device)
        stats[0].index_add_(0, idx, ratio.to(stats))
        stats[1].index_add_(0, idx, torch.ones_like(ratio, dtype=torch.float64).to(stats))
        all_reduce_sum(stats)
        seen = stats[1] > 0
        batch_mean = stats[0] / stats[1].clamp_min(1.0)
        updated = self.ema_rate * self.bins + (1.0 - self.ema_rate) * batch_mean
        self.bins.copy_(torch.where(seen, updated, self.bins))
        return idx

    def forward(self, ratio: torch.Tensor, t: torch.Tensor, update: bool = True) -> torch.Tensor:
        """ratio / running mean of its bin; `update=False` (validation) only reads the statistics."""
        if update:
            idx = self.update(ratio, t)
        else:
            idx = time_bin_index(t, self.min_t, self.max_t, len(self.bins)).to(self.bins.device)
        return ratio / self.bins[idx].to(ratio)


def global_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of every rank."""
    stats = torch.stack([values.double().sum(), torch.tensor(float(values.numel()), dtype=torch.float64,
                                                            device=values.device)])
    all_reduce_sum(stats)
    return (stats[0] / stats[1]).to(values.dtype)


class FdistillModel(DMD2Model):
    """DMD2 with f-divergence weights on the VSD gradient (see module docstring)."""

    extra_checkpointed = ("fake_score", "discriminator", "ratio_normalizer")

    def __init__(self, config: Any):
        f_cfg = config.f_distill
        if f_cfg.f_div not in F_DIVERGENCES:
            raise ValueError(f"f_distill.f_div={f_cfg.f_div!r} is not supported; expected one of {F_DIVERGENCES}")
        if not float(config.gan_loss_weight_gen) > 0:
            raise ValueError("f-distill estimates the density ratio with the GAN discriminator: set "
                             f"model.gan_loss_weight_gen > 0 (got {config.gan_loss_weight_gen})")
        if not 0 < f_cfg.ratio_lower <= f_cfg.ratio_upper:
            raise ValueError(f"f_distill needs 0 < ratio_lower <= ratio_upper; got {f_cfg.ratio_lower}, "
                             f"{f_cfg.ratio_upper}")
        super().__init__(config)

    def build_critics(self) -> None:
        super().build_critics()
        f_cfg = self.config.f_distill
        self.ratio_normalizer = None
        if f_cfg.ratio_normalization:
            t_cfg, schedule = self.config.sample_t_cfg, self.schedule
            min_t = schedule.min_t if t_cfg.min_t is None else max(float(t_cfg.min_t), schedule.min_t)
            max_t = schedule.max_t if t_cfg.max_t is None else min(float(t_cfg.max_t), schedule.max_t)
            self.ratio_normalizer = RatioNormalizer(int(f_cfg.bin_num), min_t, max_t, float(f_cfg.ratio_ema_rate))

    @property
    def fsdp_dict(self) -> nn.ModuleDict:
        """As FastGenModel's, without the parameter-free ratio statistics (nothing to shard; kept whole per rank)."""
        return nn.ModuleDict({k: v for k, v in super().fsdp_dict.items() if k != "ratio_normalizer"})

    def on_train_begin(self, is_fsdp: bool = False) -> None:
        super().on_train_begin(is_fsdp)
        if self.ratio_normalizer is not None:  # a float64 buffer: moved to the device, never cast
            self.ratio_normalizer.to(device=self.device, dtype=torch.float64)

    def vsd_scale(self, fake_logits: torch.Tensor | None, t: torch.Tensor) -> tuple[torch.Tensor, dict]:
        f_cfg = self.config.f_distill
        ratio = density_ratio(fake_logits, float(f_cfg.ratio_lower), float(f_cfg.ratio_upper))
        if self.ratio_normalizer is not None:
            # the trainer's validation runs under no_grad: it must not move the training statistics
            ratio = self.ratio_normalizer(ratio, t, update=torch.is_grad_enabled())
        weight = f_divergence_weight(ratio, f_cfg.f_div)
        weight = weight / global_mean(weight).clamp_min(1e-12)
        stats = {"min_h": weight.min(), "avg_h": weight.mean(), "max_h": weight.max(), "avg_ratio": ratio.mean()}
        return weight, stats

    def generator_losses(self, gen, t, eps, condition, neg_condition) -> dict[str, torch.Tensor]:
        losses = super().generator_losses(gen, t, eps, condition, neg_condition)
        losses["f_distill_loss"] = losses["vsd_loss"]
        return losses
