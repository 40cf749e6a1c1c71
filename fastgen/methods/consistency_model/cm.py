"""Consistency models (Song et al. 2023) trained the ECT way (Geng et al. 2024): consistency training (CT) or
distillation (CD, `loss_config.use_cd`) on pairs of times t > r that close in during training.

Algorithm per step:
  t ~ sample_t_cfg; r = t - t (1 - ratio)(1 + 8 sigmoid(-t)) (ECT), ratio from CTScheduleCallback (`model.ratio`);
  one eps for both points: y_t = alpha(t) x + sigma(t) eps;
    CT: y_r = alpha(r) x + sigma(r) eps;   CD: y_r = y_t + (r - t) v_teacher(y_t, t) (one Euler step of the PF-ODE,
    with classifier-free guidance of the teacher when `guidance_scale` is set);
  D_t = G(y_t, t) (trained), D_r = sg(G(y_r, r)) with the same dropout mask, and D_r = y_r at the boundary r = 0;
  loss = mean_i lambda(t_i, r_i) d(D_t, D_r)_i with d the pseudo-Huber / L2 distance (losses.cm_distance).
Sampling: 1 step from max_t, or several via t_list (FastGenModel.generator_fn).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from fastgen.methods.consistency_model.jvp import capture_rng, replay_rng
from fastgen.methods.consistency_model.losses import (
    CM_WEIGHTINGS,
    cm_distance,
    cm_weight,
    ect_r_from_t,
    quantize_to_grid,
)
from fastgen.methods.fine_tuning.sft import sample_t_kwargs
from fastgen.methods.model import FastGenModel
from fastgen.networks.samplers import guided_x0_fn, pf_ode_velocity

# ratio before CTScheduleCallback sets one: the first ECT stage (1 - 1/q with q = 2)
DEFAULT_CT_RATIO = 0.5


def per_sample(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """[B] -> [B, 1, ...] broadcastable against x (float64)."""
    return v.to(device=x.device, dtype=torch.float64).reshape(v.shape[0], *([1] * (x.ndim - 1)))


def edm_sigma(schedule, t: torch.Tensor) -> torch.Tensor:
    """The EDM noise level sigma(t) / alpha(t) of schedule time t (equal SNR), float64."""
    return schedule.sigma(t) / schedule.alpha(t).clamp_min(1e-12)


def sigma_data_of(net, default: float = 0.5) -> float:
    return float(getattr(net, "sigma_data", default))


class TeacherMixin:
    """Consistency distillation: the frozen teacher exists only when `loss_config.use_cd`."""

    @property
    def needs_teacher(self) -> bool:
        return bool(self.config.loss_config.use_cd)

    def teacher_x0(self, x_t: torch.Tensor, t: torch.Tensor, condition: Any, neg_condition: Any) -> torch.Tensor:
        """The teacher's x0 at (x_t, t), guided by `guidance_scale` (pred_neg + g (pred - pred_neg)) when set."""
        if self.teacher is None:
            raise ValueError("consistency distillation (loss_config.use_cd=True) needs a teacher; it was not built")
        x0_fn = guided_x0_fn(self.teacher, condition, neg_condition, self.config.guidance_scale)
        with torch.no_grad():
            return x0_fn(x_t, t)


class CMModel(TeacherMixin, FastGenModel):
    """ECT consistency training / distillation (see module docstring)."""

    def __init__(self, config: Any):
        weighting = config.loss_config.weighting_ct_loss
        if weighting not in CM_WEIGHTINGS:
            raise ValueError(f"loss_config.weighting_ct_loss={weighting!r} is not supported; "
                             f"expected one of {CM_WEIGHTINGS}")
        super().__init__(config)
        self.ratio = DEFAULT_CT_RATIO  # set before every step by CTScheduleCallback

    # --- times ---------------------------------------------------------------------------------------------------
    def sample_t(self, n: int, device: torch.device) -> torch.Tensor:
        schedule = self.net.noise_scheduler
        return schedule.sample_t(n, **{**sample_t_kwargs(self.config.sample_t_cfg), "device": device})

    def sample_t_r(self, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(t, r) with r from the ECT mapping at the current ratio; optionally snapped to the schedule's grid."""
        cfg = self.config.sample_t_cfg
        t = self.sample_t(n, device)
        r = ect_r_from_t(t, float(self.ratio), float(getattr(cfg, "min_r", 0.0)))
        if getattr(cfg, "quantize", False):
            grid = self.time_grid(device)
            t = quantize_to_grid(t, grid)
            r = torch.where(r > 0, quantize_to_grid(r.clamp_min(grid.min()), grid), r)
        # a pair needs t > r: where rounding made them meet, move t up by a hair (never r below the boundary)
        t = torch.maximum(t, r + 1e-6)
        return t, r

    def time_grid(self, device: torch.device) -> torch.Tensor:
        """Grid for `quantize`: the schedule's Karras sigmas (EDM) or its uniform grid of num_steps points."""
        schedule = self.net.noise_scheduler
        if hasattr(schedule, "karras_sigmas"):
            return schedule.karras_sigmas(schedule.num_steps, device=device).to(torch.float64)
        return torch.linspace(schedule.min_t, schedule.max_t, schedule.num_steps, dtype=torch.float64, device=device)

    # --- the pair (y_t, y_r) -------------------------------------------------------------------------------------
    def pair_points(self, real: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, r: torch.Tensor, condition: Any,
                    neg_condition: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """y_t on the forward process; y_r on the same noise (CT) or one teacher PF-ODE Euler step away (CD)."""
        schedule = self.net.noise_scheduler
        y_t = schedule.forward_process(real, eps, t)
        if not self.config.loss_config.use_cd:
            return y_t, schedule.forward_process(real, eps, r)
        x0_teacher = self.teacher_x0(y_t, t, condition, neg_condition)
        velocity = pf_ode_velocity(y_t, x0_teacher, t, schedule)
        y_r = y_t.to(torch.float64) + per_sample(r - t, y_t) * velocity
        return y_t, y_r.to(real.dtype)

    # --- consistency outputs -------------------------------------------------------------------------------------
    def student_x0(self, y_t: torch.Tensor, t: torch.Tensor, condition: Any) -> torch.Tensor:
        """D_t = G(y_t, t), the trained output."""
        return self.gen_data_from_net(self.net, y_t, t, condition=condition)

    def target_x0(self, y_r: torch.Tensor, r: torch.Tensor, condition: Any) -> torch.Tensor:
        """D_r = G(y_r, r) (called under no_grad, with the dropout mask of D_t)."""
        return self.gen_data_from_net(self.net, y_r, r, condition=condition)

    def consistency_outputs(self, y_t, y_r, t, r, condition) -> tuple[torch.Tensor, torch.Tensor]:
        rng = capture_rng(y_t.device)
        d_t = self.student_x0(y_t, t, condition)
        with torch.no_grad(), replay_rng(rng):
            d_r = self.target_x0(y_r, r, condition)
        at_boundary = per_sample((r <= 0).to(torch.float64), y_r) > 0
        d_r = torch.where(at_boundary, y_r, d_r).detach()  # f(x, 0) = x exactly
        return d_t, d_r

    def reduce_loss(self, weighted: torch.Tensor, t: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Batch reduction of the per-sample weighted losses (TCM overrides it)."""
        return weighted.mean(), {}

    def single_train_step(self, data: Mapping[str, Any], iteration: int) -> tuple[dict, dict]:
        real, condition, neg_condition = self._prepare_training_data(data)
        loss_cfg = self.config.loss_config
        schedule = self.net.noise_scheduler
        t, r = self.sample_t_r(real.shape[0], real.device)
        eps = torch.randn_like(real)
        y_t, y_r = self.pair_points(real, eps, t, r, condition, neg_condition)
        d_t, d_r = self.consistency_outputs(y_t, y_r, t, r, condition)

        distance = cm_distance(d_t, d_r, float(loss_cfg.huber_const), bool(loss_cfg.use_squared_l2))
        weight = cm_weight(loss_cfg.weighting_ct_loss, t, r, edm_sigma(schedule, t), sigma_data_of(self.net))
        total, extra = self.reduce_loss(weight * distance, t, r)
        total = total.to(torch.float32)
        loss_map = {
            "total_loss": total,
            "cm_loss": total.detach(),
            "unweighted_cm_loss": distance.mean().detach().float(),
            "ct_ratio": torch.tensor(float(self.ratio)),
            **extra,
        }
        outputs = self.sample_outputs(torch.randn_like(real), condition=condition)
        return loss_map, outputs
