"""Samplers as pure functions of (denoiser, noise, time list, schedule).

A denoiser is any callable `x0_fn(x, t) -> x0` with x in the noise's dtype and t a float64 tensor [B]. Working
through x0 predictions makes every sampler schedule-agnostic: the probability-flow ODE is
    d x_t / dt = alpha'(t) x0 + sigma'(t) eps,   eps = (x_t - alpha(t) x0) / sigma(t),
which is exact for the ideal denoiser x0 = E[x0 | x_t] on any schedule. The ODE state is kept in float64.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from fastgen.networks.noise_schedule import BaseNoiseSchedule, EDMNoiseSchedule

SAMPLER_TYPES = ("euler", "heun", "ancestral")
STUDENT_SAMPLE_TYPES = ("sde", "ode")


def cfg_combine(pred, pred_neg, guidance_scale):
    """Classifier-free guidance: pred_neg + g * (pred - pred_neg)."""
    return pred_neg + guidance_scale * (pred - pred_neg)


def negative_condition(condition, neg_condition=None):
    """CFG's negative: `neg_condition` when given, else zeros shaped like the condition (a tensor: the
    unconditional one-hot row; a mapping: zeros per key, as SDXL's pipeline does for an empty negative prompt)."""
    if neg_condition is not None:
        return neg_condition
    if isinstance(condition, torch.Tensor):
        return torch.zeros_like(condition)
    if isinstance(condition, Mapping):
        return {k: torch.zeros_like(v) if isinstance(v, torch.Tensor) else v for k, v in condition.items()}
    raise ValueError(f"guidance needs neg_condition for a condition of type {type(condition).__name__}")


def cat_conditions(condition, neg_condition):
    """`condition` and `neg_condition` stacked along the batch: tensors, mappings of tensors (key by key, same keys),
    lists (e.g. captions); equal non-tensor values (flags) are kept once. None with None stays None."""
    if condition is None and neg_condition is None:
        return None
    if isinstance(condition, torch.Tensor) and isinstance(neg_condition, torch.Tensor):
        neg = neg_condition.to(device=condition.device, dtype=condition.dtype).expand_as(condition)
        return torch.cat([condition, neg])
    if isinstance(condition, Mapping) and isinstance(neg_condition, Mapping):
        if set(condition) != set(neg_condition):
            raise ValueError(f"condition and neg_condition must have the same keys for batched CFG; got "
                             f"{sorted(condition)} and {sorted(neg_condition)}")
        return {k: cat_conditions(condition[k], neg_condition[k]) for k in condition}
    if isinstance(condition, (list, tuple)) and isinstance(neg_condition, (list, tuple)):
        return list(condition) + list(neg_condition)
    if not isinstance(condition, torch.Tensor) and condition == neg_condition:
        return condition
    raise TypeError(f"cannot batch condition ({type(condition).__name__}) with neg_condition "
                    f"({type(neg_condition).__name__}) for classifier-free guidance")


def split_batch(out, n: int):
    """(first n rows, the rest) of a tensor, or of every tensor inside a tuple/list (structure kept)."""
    if isinstance(out, torch.Tensor):
        return out[:n], out[n:]
    if isinstance(out, (list, tuple)):
        halves = [split_batch(o, n) for o in out]
        return type(out)(h[0] for h in halves), type(out)(h[1] for h in halves)
    return out, out


def cfg_pair(fn: Callable, x: torch.Tensor, t, condition, neg_condition):
    """(fn(x, t, condition), fn(x, t, neg_condition)) from ONE call of fn on the doubled batch [x; x], [t; t],
    [condition; neg_condition]: one forward instead of two (the conditional and unconditional teacher passes of
    classifier-free guidance). Equal to two calls for networks without cross-sample ops (GroupNorm, attention
    within a sample) in eval mode; outputs may be tensors or tuples/lists of them (features)."""
    n = x.shape[0]
    t = torch.as_tensor(t, device=x.device)
    t = t.expand(n) if t.ndim == 0 else t
    both = cat_conditions(condition, negative_condition(condition, neg_condition))
    return split_batch(fn(torch.cat([x, x]), torch.cat([t, t]), both), n)


def guided_x0_fn(net, condition=None, neg_condition=None, guidance_scale=None, **net_kwargs) -> Callable:
    """x0_fn(x, t) from a FastGenNetwork; with guidance_scale, the CFG mix of conditional and negative x0, both
    from one batched forward (cfg_pair).

    neg_condition defaults to `negative_condition(condition)`.
    """

    def net_x0(x, t, cond):
        return net(x, t, condition=cond, fwd_pred_type="x0", **net_kwargs)

    def x0_fn(x, t):
        if guidance_scale is None:
            return net_x0(x, t, condition)
        pred, pred_neg = cfg_pair(net_x0, x, t, condition, neg_condition)
        return cfg_combine(pred, pred_neg, guidance_scale)

    return x0_fn


def pf_ode_velocity(x, x0, t, schedule: BaseNoiseSchedule) -> torch.Tensor:
    """Probability-flow ODE velocity dx/dt = alpha'(t) x0 + sigma'(t) eps(x, x0), float64."""
    return schedule.convert_model_output(x.to(torch.float64), x0.to(torch.float64), t, "x0", "flow")


def edm_t_list(num_steps, min_t=0.002, max_t=80.0, rho=7.0, device="cpu") -> torch.Tensor:
    """EDM's sampling grid (Karras et al. eq. 5): num_steps points from max_t to min_t, then a final 0."""
    i = torch.arange(num_steps, dtype=torch.float64, device=device)
    frac = i / max(num_steps - 1, 1)
    a, b = max_t ** (1 / rho), min_t ** (1 / rho)
    t = (a + frac * (b - a)) ** rho
    return torch.cat([t, torch.zeros(1, dtype=torch.float64, device=device)])


def teacher_t_list(schedule: BaseNoiseSchedule, num_intervals: int, device="cpu") -> torch.Tensor:
    """The multi-step grid: EDM's Karras grid (ending ..., min_t, 0) for edm; the schedule's get_t_list otherwise."""
    if isinstance(schedule, EDMNoiseSchedule):
        return edm_t_list(num_intervals, schedule.min_t, schedule.max_t, schedule.rho, device=device)
    return schedule.get_t_list(num_intervals, device=device).to(torch.float64)


def _check_t_list(t_list) -> torch.Tensor:
    t_list = torch.as_tensor(t_list, dtype=torch.float64)
    if t_list.ndim != 1 or len(t_list) < 2 or float(t_list[-1]) != 0.0 or (t_list[1:] >= t_list[:-1]).any():
        raise ValueError(f"t_list must be strictly decreasing with at least 2 entries and end in 0; got {t_list}")
    return t_list


def _call(x0_fn, x, t, dtype):
    t_batch = t.to(x.device).expand(x.shape[0])
    return x0_fn(x.to(dtype), t_batch).to(torch.float64)


def _solve(x0_fn, noise, t_list, schedule: BaseNoiseSchedule, step) -> torch.Tensor:
    """The loop every multi-step sampler shares: x = noise * sigma(t_0) (float64); at each (t, t_next) one x0
    prediction, then `step(x, x0, t, t_next)` gives the next state; the last step to t = 0 returns the x0 prediction."""
    t_list = _check_t_list(t_list).to(noise.device)
    x = schedule.latents(noise.to(torch.float64), t_list[0])
    for t, t_next in zip(t_list[:-1], t_list[1:]):
        x0 = _call(x0_fn, x, t, noise.dtype)
        if t_next == 0:
            return x0.to(noise.dtype)
        x = step(x, x0, t, t_next)
    raise AssertionError("unreachable: _check_t_list makes t_list end in 0")


def euler_sample(x0_fn, noise, t_list, schedule: BaseNoiseSchedule) -> torch.Tensor:
    """First-order PF-ODE solver: x <- x + (t_next - t) dx/dt; the last step to t = 0 returns the x0 prediction."""

    def step(x, x0, t, t_next):
        return x + (t_next - t) * pf_ode_velocity(x, x0, t, schedule)

    return _solve(x0_fn, noise, t_list, schedule, step)


def heun_sample(x0_fn, noise, t_list, schedule: BaseNoiseSchedule) -> torch.Tensor:
    """EDM's second-order solver (Karras et al. Alg. 1 without churn): Euler predictor, trapezoidal corrector.

    2 * (len(t_list) - 1) - 1 network evaluations; the last step to t = 0 returns the x0 prediction.
    """

    def step(x, x0, t, t_next):
        d = pf_ode_velocity(x, x0, t, schedule)
        x_pred = x + (t_next - t) * d
        d_next = pf_ode_velocity(x_pred, _call(x0_fn, x_pred, t_next, noise.dtype), t_next, schedule)
        return x + (t_next - t) * 0.5 * (d + d_next)

    return _solve(x0_fn, noise, t_list, schedule, step)


def ancestral_sample(x0_fn, noise, t_list, schedule: BaseNoiseSchedule, generator=None) -> torch.Tensor:
    """Reverse-SDE sampler: at each (t, s) draw x_s from the diffusion posterior q(x_s | x_t, x0 = x0_fn(x_t, t)).

    Why it exists next to the ODE solvers: with an imperfect denoiser the two need not sample the same distribution,
    and distribution-matching students (DMD2, SiD, f-distill) are trained towards the distribution the teacher's
    *scores* imply, which this sampler approaches as steps grow (slowly: about as 1/steps;
    benchmarks/fashion_mnist_diagnose.py compares both teachers with students).
    For x_t = a_t x0 + s_t eps and s < t, with a = a_t / a_s and v = s_t^2 - a^2 s_s^2: mean = (a s_s^2 / s_t^2) x_t
    + (a_s v / s_t^2) x0, variance = v s_s^2 / s_t^2 (DDPM's posterior on any schedule; on EDM's,
    x_s = x0 + (s/t)^2 (x_t - x0) + s sqrt(1 - (s/t)^2) z). One network evaluation per interval; the last step to
    t = 0 returns the x0 prediction. `generator` seeds the fresh noise.
    """

    def step(x, x0, t, s):
        a_t, s_t, a_s, s_s = (v.to(torch.float64) for v in (schedule.alpha(t), schedule.sigma(t),
                                                              schedule.alpha(s), schedule.sigma(s)))
        a_ts = a_t / a_s
        var_ts = s_t ** 2 - a_ts ** 2 * s_s ** 2
        mean = (a_ts * s_s ** 2 / s_t ** 2) * x + (a_s * var_ts / s_t ** 2) * x0
        z = torch.randn(x.shape, dtype=torch.float64, device=x.device, generator=generator)
        return mean + torch.sqrt(var_ts.clamp_min(0) * s_s ** 2 / s_t ** 2) * z

    return _solve(x0_fn, noise, t_list, schedule, step)


def ode_sample(x0_fn, noise, schedule, num_steps=35, sampler_type="heun", t_list=None, generator=None) -> torch.Tensor:
    """Multi-step teacher sampling. num_steps counts network evaluations: Euler and the (stochastic) ancestral
    sampler use num_steps intervals, Heun (num_steps + 1) // 2 intervals (35 -> 18 Heun steps, as in EDM). An
    explicit t_list overrides num_steps. `generator` seeds the ancestral sampler's noise (the ODEs draw none)."""
    if sampler_type not in SAMPLER_TYPES:
        raise ValueError(f"sampler_type must be one of {SAMPLER_TYPES}; got {sampler_type!r}")
    if t_list is None:
        intervals = (num_steps + 1) // 2 if sampler_type == "heun" else num_steps
        t_list = teacher_t_list(schedule, max(intervals, 1), device=noise.device)
    if sampler_type == "ancestral":
        return ancestral_sample(x0_fn, noise, t_list, schedule, generator=generator)
    solver = euler_sample if sampler_type == "euler" else heun_sample
    return solver(x0_fn, noise, t_list, schedule)


def student_sample(x0_fn, noise, t_list, schedule: BaseNoiseSchedule, sample_type="sde", generator=None):
    """Few-step student sampler (FastGenModel.generator_fn): x = noise * sigma(t_0); at each (t, t_next):
    x0 = x0_fn(x, t); if t_next > 0, x = alpha(t_next) x0 + sigma(t_next) eps with eps fresh noise ("sde") or the
    noise implied by x and x0 ("ode", DDIM). Returns the last x0 in the noise's dtype."""
    if sample_type not in STUDENT_SAMPLE_TYPES:
        raise ValueError(f"sample_type must be one of {STUDENT_SAMPLE_TYPES}; got {sample_type!r}")
    t_list = _check_t_list(t_list).to(noise.device)
    x = schedule.latents(noise, t_list[0])
    x0 = x
    for t, t_next in zip(t_list[:-1], t_list[1:]):
        t_batch = t.expand(noise.shape[0])
        x0 = x0_fn(x, t_batch)
        if t_next > 0:
            if sample_type == "sde":
                eps = torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)
            else:
                eps = schedule.x0_to_eps(x, x0, t_batch)
            x = schedule.forward_process(x0, eps, t_next)
    return x0.to(noise.dtype)
