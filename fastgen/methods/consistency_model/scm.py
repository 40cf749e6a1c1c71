"""sCM: continuous-time consistency models in TrigFlow (Lu & Song 2024), training (sCT) or distillation (sCD).

TrigFlow: x_s = cos(s) x0 + sin(s) z, z ~ N(0, sd^2 I), s in [0, pi/2]; the consistency function is
f(x_s, s) = cos(s) x_s - sin(s) sd F(x_s, s). Any x0-predicting FastGenNetwork serves as F through SNR matching
(`trigflow_flow`): the schedule time t with alpha(t)/sigma(t) = cot(s)/sd, input x_t = x_s alpha(t)/cos(s), and
F = (cos(s) x_s - x0_pred) / (sd sin(s)). So an EDM UNet is trained in TrigFlow and sampled as an EDM denoiser.

Per step: sigma ~ sample_t_cfg (EDM noise level), s = arctan(sigma / sd);
  dx/ds = -sin(s) x0 + cos(s) z (sCT) or sd F_teacher(x_s, s) (sCD, with classifier-free guidance);
  (F^-, cos sin dF^-/ds) = JVP of F along (cos(s) sin(s) dx/ds, cos(s) sin(s)) (torch.func.jvp or central
  differences), with the dropout mask of the trained pass;
  g = -cos^2(s)(sd F^- - dx/ds) - w_r (cos sin x_s + sd cos sin dF^-/ds), w_r = min(1, it / tangent_warmup_steps);
  g <- g / (||g|| + c) (tangent normalisation, c = tangent_warmup_const; RMS norm with g_norm_spatial_invariance);
  loss = prior(s) / e^{logvar(s)} ||F_theta - F^- - g||^2 / D + logvar(s), prior = 1/(sd tan s) (= 1/sigma),
  logvar from the network's adaptive-weighting head (`return_logvar`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import torch

from fastgen.methods.consistency_model.cm import TeacherMixin, edm_sigma, per_sample
from fastgen.methods.consistency_model.jvp import capture_rng, jvp, replay_rng
from fastgen.methods.consistency_model.losses import (
    normalize_tangent,
    scm_loss,
    scm_tangent,
    trigflow_sigma,
    trigflow_time,
    trigflow_velocity_ct,
)
from fastgen.methods.fine_tuning.sft import sample_t_kwargs
from fastgen.methods.model import FastGenModel, to_dtype
from fastgen.networks.samplers import cfg_combine, cfg_pair


def trigflow_flow(net, x_s: torch.Tensor, s: torch.Tensor, sigma_data: float, condition: Any = None,
                  return_logvar: bool = False):
    """F(x_s, s) of an x0-predicting network, by SNR matching to the network's own schedule (module docstring).

    Differentiable in (x_s, s) for schedules with a closed-form sqrt_snr_to_t (edm, rf, trig), so forward-mode AD
    gives dF/ds. Returns F (x_s's dtype), or (F, logvar) with return_logvar.
    """
    schedule = net.noise_scheduler
    s64 = s.to(torch.float64)
    cos, sin = torch.cos(s64), torch.sin(s64)
    t = schedule.sqrt_snr_to_t(cos / (sigma_data * sin))
    scale = torch.sqrt(schedule.alpha(t) ** 2 + (schedule.sigma(t) / sigma_data) ** 2)  # = alpha(t) / cos(s)
    x_t = (x_s.to(torch.float64) * per_sample(scale, x_s)).to(x_s.dtype)
    out = net(x_t, t, condition=condition, fwd_pred_type="x0", return_logvar=return_logvar)
    x0, logvar = out if return_logvar else (out, None)
    flow = (per_sample(cos, x_s) * x_s.to(torch.float64) - x0.to(torch.float64)) / per_sample(sigma_data * sin, x_s)
    flow = flow.to(x_s.dtype)
    return (flow, logvar) if return_logvar else flow


def require_closed_form_snr_inverse(schedule, who: str) -> None:
    """SNR matching under an autograd JVP differentiates the network time through sqrt_snr_to_t: refuse schedules
    that invert it by bisection (no derivative), naming the two ways out."""
    generic = getattr(type(schedule).sqrt_snr_to_t, "__qualname__", "").startswith("BaseNoiseSchedule")
    if generic:
        raise ValueError(f"{who}'s autograd JVP needs a closed-form sqrt_snr_to_t (edm, rf, trig schedules); the "
                         f"{schedule.name!r} schedule inverts it by bisection, which has no derivative. Set "
                         "model.loss_config.use_jvp_finite_diff=true or use one of those schedules")


class SCMModel(TeacherMixin, FastGenModel):
    """sCT / sCD (see module docstring). Inference: FastGenModel.generator_fn with the x0 network (1 or more steps)."""

    def __init__(self, config: Any):
        super().__init__(config)
        if not config.loss_config.use_jvp_finite_diff:
            require_closed_form_snr_inverse(self.net.noise_scheduler, "sCM")

    @property
    def sigma_data(self) -> float:
        return float(getattr(self.config.sample_t_cfg, "sigma_data", 0.5))

    def tangent_warmup_weight(self, iteration: int) -> float:
        steps = int(self.config.loss_config.tangent_warmup_steps)
        return 1.0 if steps <= 0 else min(1.0, max(int(iteration), 0) / steps)

    def jvp_autocast(self):
        """Autocast for the JVP pass: `precision_amp_jvp` (equal to `precision` means autocast off), else the
        surrounding (training) autocast."""
        name = getattr(self.config, "precision_amp_jvp", None)
        if name is None:
            return contextlib.nullcontext()
        dtype = to_dtype(name, "precision_amp_jvp")
        if dtype == self.precision:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=dtype)

    def teacher_velocity(self, x_s, s, condition, neg_condition) -> torch.Tensor:
        """sCD: dx/ds = sd F_teacher(x_s, s), CFG-combined when guidance_scale is set."""
        if self.teacher is None:
            raise ValueError("sCD (loss_config.use_cd=True) needs a teacher; it was not built")
        with torch.no_grad():
            scale = self.config.guidance_scale
            if scale is None:
                flow = trigflow_flow(self.teacher, x_s, s, self.sigma_data, condition)
            else:  # conditional and negative passes in one forward
                flow, flow_neg = cfg_pair(lambda x, ss, c: trigflow_flow(self.teacher, x, ss, self.sigma_data, c),
                                          x_s, s, condition, neg_condition)
                flow = cfg_combine(flow, flow_neg, scale)
        return self.sigma_data * flow

    def uses_forward_ad(self) -> bool:
        return not self.config.loss_config.use_jvp_finite_diff

    def single_train_step(self, data: Mapping[str, Any], iteration: int) -> tuple[dict, dict]:
        real, condition, neg_condition = self._prepare_training_data(data)
        loss_cfg, sd = self.config.loss_config, self.sigma_data
        schedule = self.net.noise_scheduler
        batch = real.shape[0]

        t = schedule.sample_t(batch, **{**sample_t_kwargs(self.config.sample_t_cfg), "device": real.device})
        s = trigflow_time(edm_sigma(schedule, t), sd)
        z = sd * torch.randn_like(real)
        x_s = (per_sample(torch.cos(s), real) * real.to(torch.float64)
               + per_sample(torch.sin(s), real) * z.to(torch.float64)).to(real.dtype)
        if loss_cfg.use_cd:
            dx_ds = self.teacher_velocity(x_s, s, condition, neg_condition)
        else:
            dx_ds = trigflow_velocity_ct(real, z, s)

        cos_sin = torch.cos(s) * torch.sin(s)
        rng = capture_rng(real.device)
        jvp_type = "finite_diff" if loss_cfg.use_jvp_finite_diff else "autograd"
        with self.jvp_autocast():
            f_minus, jvp_scaled = jvp(
                lambda x, tt: trigflow_flow(self.net, x, tt, sd, condition),
                (x_s, s),
                ((per_sample(cos_sin, dx_ds) * dx_ds.to(torch.float64)).to(x_s.dtype), cos_sin),
                jvp_type=jvp_type,
                finite_diff_eps=float(loss_cfg.jvp_finite_diff_eps) * s.abs(),
                rng_state=rng,
            )
        with replay_rng(rng):
            f_theta, logvar = trigflow_flow(self.net, x_s, s, sd, condition, return_logvar=True)

        warmup = self.tangent_warmup_weight(iteration)
        g = scm_tangent(f_minus, dx_ds, x_s, jvp_scaled, s, sd, warmup)
        g = normalize_tangent(g, float(loss_cfg.tangent_warmup_const), bool(loss_cfg.g_norm_spatial_invariance))
        prior = 1.0 / trigflow_sigma(s, sd) if loss_cfg.prior_weighting_enabled else None
        per_sample_loss, unweighted = scm_loss(f_theta, f_minus, g, logvar, prior, bool(loss_cfg.divide_x_0_spatial_dim))
        total = per_sample_loss.mean().to(torch.float32)
        loss_map = {
            "total_loss": total,
            "scm_loss": total.detach(),
            "unweighted_scm_loss": unweighted.mean().detach().float(),
            "logvar_loss": logvar.detach().float().mean() if logvar is not None else torch.zeros(()),
            "warmup_weight": torch.tensor(warmup),
        }
        outputs = self.sample_outputs(torch.randn_like(real), condition=condition)
        return loss_map, outputs
