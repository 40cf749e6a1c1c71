"""MeanFlow (Geng et al. 2025): learn the average velocity u(x_t, t, r) = 1/(t - r) int_r^t v(x_tau, tau) dtau.

The MeanFlow identity u = v - (t - r) du/dt, with du/dt = v . d_x u + d_t u the total derivative along the
trajectory (a JVP along (v, 1, 0) in (x_t, t, r)), gives a regression target that needs no integral:
    u_tgt = sg(v - w (t - r) du/dt),  w = min(1, it / tangent_warmup_steps).
v is the conditional velocity d x_t/dt = alpha'(t) x + sigma'(t) eps (training) or the teacher's PF-ODE velocity
(distillation, `use_cd`, with classifier-free guidance inside [guidance_t_start, guidance_t_end]). Training with
guidance but no teacher uses the paper's guided target v~ = g v + k u(x_t, t, t | c) + (1 - g - k) u(x_t, t, t)
(k = guidance_mixture_ratio), with condition dropout (`cond_dropout_prob`) teaching the unconditional u.
Losses: "l2" = adaptive-weighted ||u - u_tgt||^2; "opt_grad" = normalised update direction (losses.py).
The network's u is its "flow" output at (x_t, t) with the extra time r (`r_timestep=True`); r = t is plain flow
matching. Sampling (`meanflow_sample`): x_{t'} = x_t - (t - t') u(x_t, t, t') ("ode"), or x0 = x_t - t u(x_t, t, 0)
re-noised to t' ("sde"); one step from max_t is 1-NFE generation.

`path_schedule` learns u on another probability path than the network's own schedule, through SNR matching (as sCM
runs an EDM network in TrigFlow): path time t maps to the network time tau with the same alpha/sigma, the path state
x to x alpha_net(tau) / alpha_path(t), and u is the path's velocity of the network's x0 prediction. Why it matters:
on the EDM schedule x0 = x_t - t u, so a 1-step sample from t = 80 multiplies every error of u by 80, while the loss
weighs errors of u alike at every t; on the rf path (x_t = (1 - t) x0 + t eps, t <= 1) an error of u is at most the
same error of x0. Training times (sample_t_cfg) and sampling times (t_list) stay in the network's schedule and are
mapped the same way, so a config keeps its noise levels when it changes its path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from fastgen.methods.consistency_model.cm import TeacherMixin, per_sample
from fastgen.methods.consistency_model.jvp import capture_rng, jvp, replay_rng
from fastgen.methods.consistency_model.losses import (
    MF_LOSS_TYPES,
    meanflow_l2_loss,
    meanflow_opt_grad_loss,
    meanflow_target,
    parse_norm_method,
    per_sample_sq_norm,
)
from fastgen.methods.consistency_model.scm import SCMModel, require_closed_form_snr_inverse
from fastgen.methods.fine_tuning.sft import drop_condition, sample_t_kwargs
from fastgen.methods.model import FastGenModel
from fastgen.networks.noise_schedule import BaseNoiseSchedule, get_noise_schedule
from fastgen.networks.samplers import STUDENT_SAMPLE_TYPES, _check_t_list, cfg_combine, cfg_pair, negative_condition


def meanflow_sample(u_fn, noise: torch.Tensor, t_list: torch.Tensor, schedule, sample_type: str = "ode",
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Few-step MeanFlow sampling with u_fn(x, t, r) -> average velocity over [r, t]:
    ode: x <- x - (t - t_next) u(x, t, t_next);  sde: x0 = x - t u(x, t, 0), x <- alpha(t_next) x0 + sigma(t_next) eps
    (fresh eps). The last step (t_next = 0) is the same in both: x0 = x - t u(x, t, 0)."""
    if sample_type not in STUDENT_SAMPLE_TYPES:
        raise ValueError(f"sample_type must be one of {STUDENT_SAMPLE_TYPES}; got {sample_type!r}")
    t_list = _check_t_list(t_list).to(noise.device)
    x = schedule.latents(noise, t_list[0])
    batch = noise.shape[0]
    for t, t_next in zip(t_list[:-1], t_list[1:]):
        t_b = t.expand(batch)
        if sample_type == "ode" or t_next == 0:
            u = u_fn(x, t_b, t_next.expand(batch))
            x = (x.to(torch.float64) - (t - t_next) * u.to(torch.float64)).to(noise.dtype)
        else:
            u = u_fn(x, t_b, torch.zeros_like(t_b))
            x0 = (x.to(torch.float64) - t * u.to(torch.float64)).to(noise.dtype)
            eps = torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)
            x = schedule.forward_process(x0, eps, t_next)
    return x.to(noise.dtype)


# paths u can be learnt on through SNR matching: the schedules whose sqrt_snr_to_t has a closed form
PATH_SCHEDULES = ("edm", "rf", "trig")


def map_time(t: torch.Tensor, source: BaseNoiseSchedule, target: BaseNoiseSchedule) -> torch.Tensor:
    """The time of `target` with the same signal-to-noise ratio as time t of `source` (t = 0 maps to 0)."""
    return target.sqrt_snr_to_t(source.sqrt_snr(t))


def matched_path(path_name: str, schedule: BaseNoiseSchedule) -> BaseNoiseSchedule:
    """Schedule `path_name` on exactly the SNR range of the network's `schedule` [min_t, max_t]."""
    unit = get_noise_schedule(path_name)
    ends = map_time(torch.tensor([schedule.min_t, schedule.max_t], dtype=torch.float64), schedule, unit)
    return get_noise_schedule(path_name, min_t=float(ends.min()), max_t=float(ends.max()))


class MeanFlowModel(TeacherMixin, FastGenModel):
    """MeanFlow training / distillation (see module docstring)."""

    def __init__(self, config: Any):
        loss_cfg = config.loss_config
        if loss_cfg.loss_type not in MF_LOSS_TYPES:
            raise ValueError(f"loss_config.loss_type={loss_cfg.loss_type!r} is not supported; "
                             f"expected one of {MF_LOSS_TYPES}")
        parse_norm_method(loss_cfg.norm_method)  # fail at construction, not at the first step
        ratio = float(config.sample_t_cfg.r_sample_ratio)
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"sample_t_cfg.r_sample_ratio must be in [0, 1]; got {ratio}")
        super().__init__(config)
        if getattr(self.net, "r_timestep", True) is False:
            raise ValueError("MeanFlow needs a network that takes the second time r: set model.net.r_timestep=True")
        path_name = getattr(config, "path_schedule", None)
        if path_name is not None and path_name not in PATH_SCHEDULES:
            raise ValueError(f"model.path_schedule={path_name!r} must be None (the network's own schedule) or one of "
                             f"{PATH_SCHEDULES}")
        self.path = None if path_name is None else matched_path(path_name, self.net.noise_scheduler)
        if self.path is not None and not loss_cfg.use_jvp_finite_diff:
            require_closed_form_snr_inverse(self.net.noise_scheduler, f"MeanFlow on path_schedule={path_name!r}")

    @property
    def path_schedule(self) -> BaseNoiseSchedule:
        """The schedule of the path u is learnt on: model.path_schedule, else the network's own."""
        return self.net.noise_scheduler if self.path is None else self.path

    tangent_warmup_weight = SCMModel.tangent_warmup_weight
    jvp_autocast = SCMModel.jvp_autocast

    # --- times ---------------------------------------------------------------------------------------------------
    def sample_t_r(self, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """t, r drawn independently (r from sample_r_cfg when enabled), ordered t >= r; each sample keeps r != t
        with probability r_sample_ratio, else r = t (flow matching on that sample). Drawn in the network's time (like
        t_list) and returned on the path u is learnt on."""
        schedule = self.net.noise_scheduler
        t_cfg = self.config.sample_t_cfg
        r_cfg = self.config.sample_r_cfg if self.config.sample_r_cfg.enabled else t_cfg
        t = schedule.sample_t(n, **{**sample_t_kwargs(t_cfg), "device": device})
        r = schedule.sample_t(n, **{**sample_t_kwargs(r_cfg), "device": device})
        t, r = torch.maximum(t, r), torch.minimum(t, r)
        keep_r = torch.rand(n, device=device) < float(t_cfg.r_sample_ratio)
        r = torch.where(keep_r, r, t)
        if self.path is not None:
            t, r = map_time(t, schedule, self.path), map_time(r, schedule, self.path)
        return t, r

    # --- velocities ----------------------------------------------------------------------------------------------
    def u(self, net, x, t, r, condition):
        """The average velocity: the network's flow output with the second time r (on the path: see path_flow)."""
        if self.path is None:
            return net(x, t, condition=condition, r=r, fwd_pred_type="flow")
        return self.path_flow(net, x, t, condition, r=r)

    def path_flow(self, net, x, t, condition, r=None):
        """The path's velocity dx/dt of `net`'s x0 prediction, the network called at the SNR-matched time and input
        (r, when given, mapped the same way). Differentiable in (x, t, r) for closed-form sqrt_snr_to_t."""
        schedule, path = net.noise_scheduler, self.path
        tau = map_time(t, path, schedule)
        scale = per_sample(schedule.alpha(tau) / path.alpha(t), x)
        x_net = (x.to(torch.float64) * scale).to(x.dtype)
        kwargs = {} if r is None else {"r": map_time(r, path, schedule)}
        x0 = net(x_net, tau, condition=condition, fwd_pred_type="x0", **kwargs)
        return path.x0_to_flow(x, x0, t).to(x.dtype)

    def velocity(self, net, x, t, condition):
        """A teacher's PF-ODE velocity on the path u is learnt on."""
        if self.path is None:
            return net(x, t, condition=condition, fwd_pred_type="flow")
        return self.path_flow(net, x, t, condition)

    def in_guidance_window(self, t: torch.Tensor) -> torch.Tensor:
        return (t >= float(self.config.guidance_t_start)) & (t <= float(self.config.guidance_t_end))

    def teacher_velocity(self, x_t, t, condition, neg_condition) -> torch.Tensor:
        """CD: the teacher's PF-ODE velocity, CFG-combined for times inside the guidance window."""
        if self.teacher is None:
            raise ValueError("MeanFlow distillation (loss_config.use_cd=True) needs a teacher; it was not built")
        with torch.no_grad():
            scale = self.config.guidance_scale
            if scale is None:
                return self.velocity(self.teacher, x_t, t, condition)
            v, v_neg = cfg_pair(lambda x, tt, c: self.velocity(self.teacher, x, tt, c),
                                x_t, t, condition, neg_condition)  # conditional and negative passes in one forward
            guided = cfg_combine(v, v_neg, scale)
            return torch.where(per_sample(self.in_guidance_window(t).double(), v) > 0, guided, v)

    def guided_ct_velocity(self, v, x_t, t, condition, neg_condition, kept) -> torch.Tensor:
        """MeanFlow with CFG (Geng et al. 2025, Sec. 4.2 / App. B.1): v~ = g v + k u_c + (1 - g - k) u_u with
        u_c = u(x_t, t, t | c), u_u = u(x_t, t, t | neg), on samples that kept their condition and lie in the
        guidance window; v elsewhere."""
        scale = float(self.config.guidance_scale)
        mix = float(self.config.guidance_mixture_ratio or 0.0)
        neg = negative_condition(condition, neg_condition)
        with torch.no_grad():
            u_uncond = self.u(self.net, x_t, t, t, neg)
            guided = scale * v.to(torch.float64) + (1.0 - scale - mix) * u_uncond.to(torch.float64)
            if mix:
                guided = guided + mix * self.u(self.net, x_t, t, t, condition).to(torch.float64)
        use = self.in_guidance_window(t) & kept
        return torch.where(per_sample(use.double(), v) > 0, guided.to(v.dtype), v)

    # --- training step -------------------------------------------------------------------------------------------
    def uses_forward_ad(self) -> bool:
        return not self.config.loss_config.use_jvp_finite_diff

    def single_train_step(self, data: Mapping[str, Any], iteration: int) -> tuple[dict, dict]:
        real, condition, neg_condition = self._prepare_training_data(data)
        cfg, loss_cfg = self.config, self.config.loss_config
        schedule = self.path_schedule
        batch = real.shape[0]
        t, r = self.sample_t_r(batch, real.device)
        eps = torch.randn_like(real)
        x_t = schedule.forward_process(real, eps, t)

        condition_in = drop_condition(condition, neg_condition, cfg.cond_dropout_prob, cfg.cond_keys_no_dropout)
        if loss_cfg.use_cd:
            v = self.teacher_velocity(x_t, t, condition, neg_condition)
        else:
            v = schedule.cond_velocity(real, eps, t)
            if cfg.guidance_scale is not None and isinstance(condition, torch.Tensor):
                kept = (condition_in == condition).flatten(1).all(1) if condition.shape[1] else torch.zeros_like(t) > 0
                v = self.guided_ct_velocity(v, x_t, t, condition, neg_condition, kept)

        rng = capture_rng(real.device)
        with self.jvp_autocast():
            u_minus, du_dt = jvp(
                lambda x, tt, rr: self.u(self.net, x, tt, rr, condition_in),
                (x_t, t, r),
                (v, torch.ones_like(t), torch.zeros_like(r)),
                jvp_type="finite_diff" if loss_cfg.use_jvp_finite_diff else "autograd",
                finite_diff_eps=float(loss_cfg.jvp_finite_diff_eps),
                rng_state=rng,
            )
        with replay_rng(rng):
            u = self.u(self.net, x_t, t, r, condition_in)

        warmup = self.tangent_warmup_weight(iteration)
        u_tgt = meanflow_target(v, du_dt, t, r, warmup)
        spatial = bool(loss_cfg.tangent_spatial_invariance)
        adaptive = not loss_cfg.use_squared_l2
        if loss_cfg.loss_type == "l2":
            per_sample_loss, weight = meanflow_l2_loss(u, u_tgt, loss_cfg.norm_method, float(loss_cfg.norm_const),
                                                       spatial, adaptive)
            tangent_norm = torch.sqrt(per_sample_sq_norm(u_tgt - u_minus, spatial))
        else:
            per_sample_loss, weight, tangent_norm = meanflow_opt_grad_loss(
                u, u_minus, u_tgt, loss_cfg.norm_method, float(loss_cfg.norm_const), spatial, adaptive)
        total = per_sample_loss.mean().to(torch.float32)
        loss_map = {
            "total_loss": total,
            "mf_loss": total.detach(),
            "v_loss": per_sample_sq_norm(u.detach() - v, mean_over_dims=True).mean().float(),
            "jvp_norm": torch.sqrt(per_sample_sq_norm(du_dt, mean_over_dims=True)).mean().float(),
            "tangent_norm": tangent_norm.mean().float(),
            "v_norm": torch.sqrt(per_sample_sq_norm(v, mean_over_dims=True)).mean().float(),
            "loss_weight": weight.mean().float(),
            "tangent_warmup_weight": torch.tensor(warmup),
        }
        outputs = self.sample_outputs(torch.randn_like(real), condition=condition)
        return loss_map, outputs

    # --- sampling ------------------------------------------------------------------------------------------------
    def generator_fn(self, net: torch.nn.Module, noise: torch.Tensor, condition: Any = None,
                     student_sample_steps: int = 1, t_list=None, sample_type: str | None = None,
                     precision_amp: Any = "infer", generator: torch.Generator | None = None,
                     **kwargs: Any) -> torch.Tensor:
        """MeanFlow's own few-step sampler (meanflow_sample) over t_list (network times; default: the schedule's
        grid), stepping on the path u is learnt on."""
        sample_type = sample_type or self.config.student_sample_type
        t_list = self.student_t_list(net, student_sample_steps, t_list)
        schedule = net.noise_scheduler
        if self.path is not None:
            t_list, schedule = map_time(t_list, schedule, self.path), self.path

        def u_fn(x, t, r):
            return self.u(net, x, t, r, condition)

        with self.inference_mode(net, precision_amp):
            return meanflow_sample(u_fn, noise, t_list, schedule, sample_type, generator)
