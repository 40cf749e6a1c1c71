"""Loss functions shared by the methods, as small pure functions of tensors (no module state).

Convention: x_t = alpha(t) x0 + sigma(t) eps; time tensors are float64 [B] (broadcast over trailing dims).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fastgen.networks.noise_schedule import broadcast_t

PRED_TYPES = ("x0", "eps", "v", "flow")


def _per_sample(coef: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """[B] (or [B, T]) coefficients broadcast over the trailing dims of x, kept in float64."""
    coef = coef.to(device=x.device, dtype=torch.float64)
    return coef.reshape(*coef.shape, *([1] * (x.ndim - coef.ndim)))


def dsm_target(pred_type: str, x0: torch.Tensor, eps: torch.Tensor, noise_scheduler, t: torch.Tensor) -> torch.Tensor:
    """Regression target of denoising score matching in `pred_type`:
    x0 -> x0;  eps -> eps;  v -> alpha(t) eps - sigma(t) x0;  flow -> d x_t/dt = alpha'(t) x0 + sigma'(t) eps
    (= eps - x0 for rectified flow)."""
    if pred_type == "x0":
        return x0
    if pred_type == "eps":
        return eps
    if pred_type == "v":
        alpha, sigma = _per_sample(noise_scheduler.alpha(t), x0), _per_sample(noise_scheduler.sigma(t), x0)
        return (alpha * eps.to(torch.float64) - sigma * x0.to(torch.float64)).to(x0.dtype)
    if pred_type == "flow":
        return noise_scheduler.cond_velocity(x0, eps, t)
    raise ValueError(f"pred_type={pred_type!r} is not supported; expected one of {PRED_TYPES}")


DSM_WEIGHTINGS = ("none", "edm")


def dsm_weight(weighting: str, pred_type: str, noise_scheduler, t: torch.Tensor, sigma_data: float = 0.5,
               ) -> torch.Tensor | None:
    """Per-sample weight (shaped like t: [B] or [B, T]; float64) of the squared DSM error in `pred_type` space;
    None means unweighted.

    "edm" (Karras et al. 2022, eq. 8): lambda(s) = (s^2 + sigma_data^2) / (s sigma_data)^2 on the x0 error, with
    s = sigma(t) / alpha(t) the noise level of the equivalent VE process. It makes the loss of the preconditioned
    network's raw output F unit-scale at every noise level; relative to it, plain x0 MSE weights level s by
    c_out(s)^2 ~ s^2 below sigma_data, so the low-noise levels that carry fine detail are barely trained (the demo
    teacher's 35-step FID went from 156 to 10 with this weighting and a longer run). An error in another
    prediction type maps to the x0 error by a per-sample factor c(t) (the conversions are linear in the output at
    fixed x_t), so the weight there is lambda(s) c(t)^2 and the loss is the same function of the network whatever
    it predicts.
    """
    if weighting not in DSM_WEIGHTINGS:
        raise ValueError(f"DSM weighting must be one of {DSM_WEIGHTINGS}; got {weighting!r}")
    if weighting == "none":
        return None
    t64 = torch.as_tensor(t, dtype=torch.float64)
    s = noise_scheduler.sigma(t64).to(torch.float64) / noise_scheduler.alpha(t64).to(torch.float64)
    lam = (s**2 + sigma_data**2) / (s * sigma_data) ** 2
    # d x0 / d output at fixed x_t: the conversion of a unit output from x_t = 0
    unit = torch.ones(*t64.shape, 1, dtype=torch.float64, device=t64.device)
    c = noise_scheduler.convert_model_output(torch.zeros_like(unit), unit, t64, pred_type, "x0").reshape(t64.shape)
    return lam * c**2


def denoising_score_matching_loss(pred_type: str, net_pred: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor,
                                  noise_scheduler, t: torch.Tensor, weighting: str = "none",
                                  sigma_data: float = 0.5) -> torch.Tensor:
    """DSM (Vincent 2011; Ho et al. 2020 eq. 14 for eps): mean ||net_pred - target(pred_type)||^2, per-sample
    weighted by `dsm_weight(weighting, ...)` ("none": unweighted, the reference's loss)."""
    target = dsm_target(pred_type, x0, eps, noise_scheduler, t)
    weight = dsm_weight(weighting, pred_type, noise_scheduler, t, sigma_data)
    if weight is None:
        return F.mse_loss(net_pred.float(), target.float())
    err = (net_pred.float() - target.float()) ** 2
    return (broadcast_t(weight, err).float() * err).mean()


def variational_score_distillation_loss(gen: torch.Tensor, teacher_x0: torch.Tensor, fake_x0: torch.Tensor,
                                        additional_scale: torch.Tensor | None = None) -> torch.Tensor:
    """VSD / DMD gradient (Yin et al. 2024, DMD2 eq. 2-3) as a surrogate loss:
    w = 1 / (mean_{CHW} |gen - teacher_x0| + 1e-6) per sample, grad = (fake_x0 - teacher_x0) w,
    loss = 0.5 * mean (gen - sg(gen - grad))^2, whose gradient w.r.t. gen is grad / numel."""
    with torch.no_grad():
        gen32, teacher32, fake32 = gen.float(), teacher_x0.float(), fake_x0.float()
        reduce_dims = tuple(range(1, gen.ndim))
        weight = 1.0 / ((gen32 - teacher32).abs().mean(dim=reduce_dims, keepdim=True) + 1e-6)
        if additional_scale is not None:
            weight = weight * additional_scale.float().reshape(-1, *([1] * (gen.ndim - 1)))
        grad = (fake32 - teacher32) * weight
        target = gen32 - grad
    return 0.5 * F.mse_loss(gen.float(), target)


def _check_logits(logits: torch.Tensor, name: str) -> None:
    if logits.ndim != 2:
        raise ValueError(f"{name} must be 2-D [batch, heads]; got shape {tuple(logits.shape)}")


def gan_loss_generator(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating GAN generator loss (Goodfellow et al. 2014): mean softplus(-D(fake))."""
    _check_logits(fake_logits, "fake_logits")
    return F.softplus(-fake_logits.float()).mean()


def gan_loss_discriminator(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """GAN discriminator loss: mean softplus(D(fake)) + mean softplus(-D(real))."""
    _check_logits(real_logits, "real_logits")
    _check_logits(fake_logits, "fake_logits")
    return F.softplus(fake_logits.float()).mean() + F.softplus(-real_logits.float()).mean()


def perturb_for_r1(x: torch.Tensor, alpha: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """x + alpha * N(0, I): the input perturbation of the approximate R1 penalty."""
    noise = torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)
    return x + alpha * noise


def approx_r1_loss(real_logits: torch.Tensor, perturbed_real_logits: torch.Tensor) -> torch.Tensor:
    """Approximate R1 (APT, Lin et al. 2025): mean (D(x_real) - D(x_real + alpha N))^2, a finite-difference
    stand-in for ||grad_x D(x_real)||^2 that needs no double backward."""
    _check_logits(real_logits, "real_logits")
    _check_logits(perturbed_real_logits, "perturbed_real_logits")
    return F.mse_loss(real_logits.float(), perturbed_real_logits.float())
