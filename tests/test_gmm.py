"""Gaussian-mixture oracle: closed-form posterior mean, score, log-density, and the sample-quality metrics."""

import math

import pytest
import torch

from fastgen.utils.gmm import GaussianMixture, make_gmm, mode_coverage, sliced_wasserstein


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name,k", [("ring8", 8), ("grid25", 25), ("gauss1", 1)])
def test_named_mixtures_have_unit_ish_variance(name, k):
    gmm = make_gmm(name, 2)
    assert gmm.num_components == k and gmm.dim == 2
    torch.testing.assert_close(gmm.weights.sum(), torch.tensor(1.0, dtype=torch.float64))
    x, labels = gmm.sample(40_000, generator=_gen())
    if name != "gauss1":
        assert abs(x.var(0).mean().item() - 1.0) < 0.05
        counts = torch.bincount(labels, minlength=k).double() / len(labels)
        assert (counts - 1 / k).abs().max() < 0.01
    else:
        torch.testing.assert_close(x.mean(0), torch.full((2,), 0.5, dtype=torch.float64), atol=0.02, rtol=0)
        torch.testing.assert_close(x.std(0), torch.full((2,), 0.8, dtype=torch.float64), atol=0.02, rtol=0)


def test_ring8_modes_on_a_circle_and_higher_dims_are_zero():
    gmm = make_gmm("ring8", 4)
    radii = gmm.means[:, :2].norm(dim=1)
    torch.testing.assert_close(radii, radii[0].expand(8))
    scale = 1 / math.sqrt(2.0 + 0.01)
    assert abs(radii[0].item() - 2 * scale) < 1e-12 and abs(gmm.stds[0].item() - 0.1 * scale) < 1e-12
    assert gmm.means[:, 2:].abs().max() == 0


def test_unknown_name_is_a_clear_error():
    with pytest.raises(ValueError, match="ring8"):
        make_gmm("moons")


@pytest.mark.parametrize("alpha,sigma", [(1.0, 0.3), (0.6, 0.8), (0.9, 1.5)])
def test_posterior_mean_matches_importance_sampling(alpha, sigma):
    gmm = make_gmm("ring8", 2)
    x_t = torch.tensor([[0.7, 0.1], [-0.2, -0.9], [0.0, 0.0]], dtype=torch.float64)
    x0, _ = gmm.sample(400_000, generator=_gen(1))
    # E[x0 | x_t] = E_p(x0)[x0 N(x_t; alpha x0, sigma^2)] / E_p(x0)[N(...)]
    log_w = -0.5 * ((x_t[:, None] - alpha * x0[None]) ** 2).sum(-1) / sigma**2
    w = torch.softmax(log_w, dim=1)
    mc = (w[:, :, None] * x0[None]).sum(1)
    exact = gmm.posterior_mean(x_t, alpha, sigma)
    torch.testing.assert_close(exact, mc, atol=0.02, rtol=0)


def test_posterior_mean_single_gaussian_closed_form_and_labels():
    gmm = make_gmm("gauss1", 3)
    x_t = torch.randn(5, 3, generator=_gen(), dtype=torch.float64)
    a, s = 0.8, 0.6
    expected = 0.5 + a * 0.64 / (a**2 * 0.64 + s**2) * (x_t - a * 0.5)
    torch.testing.assert_close(gmm.posterior_mean(x_t, a, s), expected, atol=1e-12, rtol=0)
    ring = make_gmm("ring8", 2)
    labels = torch.tensor([3, 3, 5, 0, 7])
    x = torch.randn(5, 2, generator=_gen(2), dtype=torch.float64)
    m, sd = ring.means[labels], ring.stds[0]
    expected = m + a * sd**2 / (a**2 * sd**2 + s**2) * (x - a * m)
    torch.testing.assert_close(ring.posterior_mean(x, a, s, labels=labels), expected, atol=1e-12, rtol=0)
    onehot = torch.nn.functional.one_hot(labels, 8).double()
    torch.testing.assert_close(ring.posterior_mean(x, a, s, labels=onehot), expected, atol=1e-12, rtol=0)
    # a zero row is "unconditional"
    torch.testing.assert_close(
        ring.posterior_mean(x, a, s, labels=torch.zeros(5, 8)), ring.posterior_mean(x, a, s), atol=1e-12, rtol=0
    )


def test_posterior_mean_is_stable_far_from_data_and_keeps_dtype():
    gmm = make_gmm("grid25", 2)
    x = torch.tensor([[1e3, -1e3]], dtype=torch.float32)
    out = gmm.posterior_mean(x, 1.0, 0.01)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_score_is_gradient_of_log_prob_and_log_prob_normalised():
    gmm = make_gmm("ring8", 2)
    x = torch.randn(6, 2, generator=_gen(), dtype=torch.float64, requires_grad=True)
    lp = gmm.log_prob(x, 0.9, 0.5)
    (grad,) = torch.autograd.grad(lp.sum(), x)
    torch.testing.assert_close(gmm.score(x.detach(), 0.9, 0.5), grad, atol=1e-10, rtol=0)
    # Tweedie: score = (alpha E[x0|x] - x) / sigma^2 holds for the noisy marginal
    tweedie = (0.9 * gmm.posterior_mean(x.detach(), 0.9, 0.5) - x.detach()) / 0.25
    torch.testing.assert_close(gmm.score(x.detach(), 0.9, 0.5), tweedie, atol=1e-10, rtol=0)
    g1 = make_gmm("gauss1", 2)
    pt = torch.zeros(1, 2, dtype=torch.float64)
    expected = -math.log(2 * math.pi * 0.64) - 0.5 * 2 * 0.25 / 0.64
    assert abs(g1.log_prob(pt).item() - expected) < 1e-12


def test_validation():
    with pytest.raises(ValueError, match="means"):
        GaussianMixture(torch.zeros(2, 2), torch.ones(3), torch.ones(2))


def test_sliced_wasserstein_values():
    x = torch.randn(2000, 2, generator=_gen(), dtype=torch.float64)
    assert sliced_wasserstein(x, x, generator=_gen(1)) < 1e-12
    shifted = x + torch.tensor([1.0, 0.0], dtype=torch.float64)
    # projections shift by cos(theta): SW2 = sqrt(E cos^2) = 1/sqrt(2)
    assert abs(sliced_wasserstein(x, shifted, num_projections=512, generator=_gen(1)) - 2**-0.5) < 0.03
    y = torch.randn(1500, 2, generator=_gen(5), dtype=torch.float64)
    assert sliced_wasserstein(x, y, generator=_gen(1)) < 0.1
    assert sliced_wasserstein(x, y, generator=_gen(3)) == sliced_wasserstein(x, y, generator=_gen(3))


def test_mode_coverage():
    gmm = make_gmm("ring8", 2)
    x, labels = gmm.sample(8000, generator=_gen())
    full = mode_coverage(x, gmm)
    assert full["mode_coverage"] == 1.0 and full["near_mode_fraction"] > 0.98
    half = mode_coverage(x[labels < 4], gmm)
    assert half["mode_coverage"] == 0.5 and half["mode_counts"][5] == 0
    far = mode_coverage(torch.zeros(100, 2), gmm)
    assert far["near_mode_fraction"] == 0.0 and far["mode_coverage"] == 0.0
