"""Shared loss functions against their formulas on fixed tensors."""

import pytest
import torch
import torch.nn.functional as F

from fastgen.methods.common_loss import (
    approx_r1_loss,
    denoising_score_matching_loss,
    dsm_target,
    dsm_weight,
    gan_loss_discriminator,
    gan_loss_generator,
    perturb_for_r1,
    variational_score_distillation_loss,
)
from fastgen.networks.noise_schedule import get_noise_schedule


def _fixed(shape=(3, 2, 4, 4)):
    g = torch.Generator().manual_seed(0)
    return tuple(torch.randn(shape, generator=g) for _ in range(3))


def test_dsm_targets_and_loss_match_formulas_edm_and_rf():
    x0, eps, pred = _fixed()
    for schedule_type in ("edm", "rf"):
        schedule = get_noise_schedule(schedule_type)
        t = torch.tensor([0.3, 0.5, 0.9], dtype=torch.float64)
        alpha = (1 - t) if schedule_type == "rf" else torch.ones_like(t)
        sigma = t
        a, s = alpha.float().view(-1, 1, 1, 1), sigma.float().view(-1, 1, 1, 1)
        expected = {
            "x0": x0,
            "eps": eps,
            "v": a * eps - s * x0,
            # d x_t / dt: rf -> eps - x0; edm (alpha = 1, sigma = t) -> eps
            "flow": (eps - x0) if schedule_type == "rf" else eps,
        }
        for pred_type, target in expected.items():
            torch.testing.assert_close(dsm_target(pred_type, x0, eps, schedule, t), target, atol=1e-6, rtol=1e-6)
            loss = denoising_score_matching_loss(pred_type, pred, x0, eps, schedule, t)
            torch.testing.assert_close(loss, ((pred - target) ** 2).mean(), atol=1e-6, rtol=1e-6)


def test_dsm_rejects_unknown_pred_type():
    x0, eps, pred = _fixed()
    with pytest.raises(ValueError, match="expected one of"):
        denoising_score_matching_loss("score", pred, x0, eps, get_noise_schedule("edm"), torch.ones(3))


def test_vsd_value_and_gradient():
    gen, teacher, fake = _fixed()
    gen = gen.clone().requires_grad_(True)
    loss = variational_score_distillation_loss(gen, teacher, fake)
    w = 1.0 / ((gen.detach() - teacher).abs().mean(dim=(1, 2, 3), keepdim=True) + 1e-6)
    grad = (fake - teacher) * w
    torch.testing.assert_close(loss, 0.5 * (grad**2).mean())
    loss.backward()
    torch.testing.assert_close(gen.grad, grad / gen.numel())
    # per-sample additional scale multiplies the weight
    scale = torch.tensor([1.0, 2.0, 0.5])
    scaled = variational_score_distillation_loss(gen.detach(), teacher, fake, additional_scale=scale)
    torch.testing.assert_close(scaled, 0.5 * ((grad * scale.view(-1, 1, 1, 1)) ** 2).mean())


def test_gan_losses():
    real = torch.tensor([[0.5, -1.0], [2.0, 0.0]])
    fake = torch.tensor([[-0.3, 1.5], [0.2, -2.0]])
    torch.testing.assert_close(gan_loss_generator(fake), torch.log1p(torch.exp(-fake)).mean())
    expected = torch.log1p(torch.exp(fake)).mean() + torch.log1p(torch.exp(-real)).mean()
    torch.testing.assert_close(gan_loss_discriminator(real, fake), expected)
    with pytest.raises(ValueError, match="2-D"):
        gan_loss_generator(fake.flatten())


def test_approx_r1():
    real = torch.tensor([[0.5], [2.0]])
    perturbed = torch.tensor([[0.0], [1.0]])
    torch.testing.assert_close(approx_r1_loss(real, perturbed), torch.tensor((0.25 + 1.0) / 2))
    x = torch.zeros(4, 3)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    torch.testing.assert_close(perturb_for_r1(x, 0.1, g1), 0.1 * torch.randn(4, 3, generator=g2))
    assert F.mse_loss(real, real) == 0


def test_dsm_edm_weighting_is_the_edm_lambda_on_the_x0_error_in_every_prediction_type():
    """The "edm" weighting gives the same loss whatever the net predicts: lambda(s) ||x0_pred - x0||^2."""
    x0, eps, _ = _fixed()
    sigma_data = 0.5
    for schedule_type in ("edm", "rf"):
        schedule = get_noise_schedule(schedule_type)
        t = torch.tensor([0.05, 0.5, 0.9], dtype=torch.float64)
        x_t = schedule.forward_process(x0, eps, t)
        x0_pred = x0 + 0.1 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
        s = schedule.sigma(t) / schedule.alpha(t)
        lam = ((s**2 + sigma_data**2) / (s * sigma_data) ** 2).float().view(-1, 1, 1, 1)
        expected = (lam * (x0_pred - x0) ** 2).mean()
        for pred_type in ("x0", "eps", "v", "flow"):
            pred = schedule.convert_model_output(x_t, x0_pred, t, "x0", pred_type)
            loss = denoising_score_matching_loss(pred_type, pred, x0, eps, schedule, t, weighting="edm",
                                                 sigma_data=sigma_data)
            torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-6)
        # at s = sigma_data the weight is 2 / sigma_data^2 = 8; low noise is weighted ~1/s^2 (here 1/0.05^2 + 4)
        w = dsm_weight("edm", "x0", get_noise_schedule("edm"), torch.tensor([0.5, 0.05], dtype=torch.float64))
        torch.testing.assert_close(w, torch.tensor([8.0, 404.0], dtype=torch.float64))
    assert dsm_weight("none", "x0", get_noise_schedule("edm"), torch.ones(2)) is None
    with pytest.raises(ValueError, match="DSM weighting must be one of"):
        denoising_score_matching_loss("x0", x0, x0, eps, get_noise_schedule("edm"), torch.ones(3), weighting="snr")
