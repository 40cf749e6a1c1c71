"""Samplers against exact answers: for a single Gaussian N(m, s^2 I) the PF-ODE and DDIM maps are closed form."""

import pytest
import torch

from fastgen.networks import samplers
from fastgen.networks.noise_schedule import get_noise_schedule
from fastgen.networks.toy import GMMDenoiser

F64 = torch.float64
M, S = 0.5, 0.8  # gauss1: mean 0.5 in every coordinate, std 0.8


def _noise(n=200, seed=0):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _exact_pf_ode(schedule, x_T, t_from, t_to=0.0):
    """x(t) = alpha(t) m + (x_T - alpha_T m) sqrt(alpha^2 s^2 + sigma^2) / sqrt(alpha_T^2 s^2 + sigma_T^2)."""
    a0, s0 = schedule.alpha(t_from), schedule.sigma(t_from)
    a1, s1 = schedule.alpha(t_to), schedule.sigma(t_to)
    return a1 * M + (x_T - a0 * M) * torch.sqrt(a1**2 * S**2 + s1**2) / torch.sqrt(a0**2 * S**2 + s0**2)


class _Counter:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, x, t):
        self.calls += 1
        assert t.dtype == F64 and t.shape == (x.shape[0],)
        return self.fn(x, t)


def test_cfg_combine_values():
    pred, neg = torch.tensor([2.0, 1.0]), torch.tensor([1.0, 3.0])
    assert torch.equal(samplers.cfg_combine(pred, neg, 3.0), torch.tensor([4.0, -3.0]))
    assert torch.equal(samplers.cfg_combine(pred, neg, 1.0), pred)
    assert torch.equal(samplers.cfg_combine(pred, neg, 0.0), neg)


def test_edm_grid():
    t = samplers.edm_t_list(18)
    assert len(t) == 19 and t[0] == 80.0 and abs(t[-2].item() - 0.002) < 1e-15 and t[-1] == 0.0
    roots = t[:-1] ** (1 / 7)
    torch.testing.assert_close(roots.diff(), roots.diff()[:1].expand(17), atol=1e-12, rtol=0)


def test_heun_35_nfe_on_exact_gaussian_edm():
    """EDM's 18-step Heun (35 evaluations) vs the exact PF-ODE map; second order: 4x the steps, ~16x less error."""
    net = GMMDenoiser("gauss1", schedule_type="edm")
    noise = _noise()
    x0_fn = _Counter(samplers.guided_x0_fn(net))
    x = samplers.ode_sample(x0_fn, noise, net.noise_scheduler, num_steps=35, sampler_type="heun")
    assert x0_fn.calls == 35
    exact = _exact_pf_ode(net.noise_scheduler, noise * 80.0, 80.0)
    err_35 = (x - exact).abs().max().item()
    assert err_35 < 0.15  # measured 0.12: the truncation error of 18 Karras-spaced Heun steps at s = 0.8
    err_143 = (net.sample(noise, num_steps=143) - exact).abs().max().item()
    assert err_143 < 0.01 and err_35 / err_143 > 12


@pytest.mark.parametrize("name,tol35,tol143", [("rf", 0.01, 6e-4), ("trig", 0.02, 1.5e-3)])
def test_heun_on_exact_gaussian_other_schedules(name, tol35, tol143):
    net = GMMDenoiser("gauss1", schedule_type=name)
    s, noise = net.noise_scheduler, _noise()
    exact = _exact_pf_ode(s, s.latents(noise), s.max_t)
    assert (net.sample(noise, num_steps=35) - exact).abs().max() < tol35
    assert (net.sample(noise, num_steps=143) - exact).abs().max() < tol143


@pytest.mark.parametrize("name", ["edm", "rf", "trig", "sd"])
def test_euler_converges_first_order(name):
    net = GMMDenoiser("gauss1", schedule_type=name)
    s, noise = net.noise_scheduler, _noise()
    exact = _exact_pf_ode(s, s.latents(noise), s.max_t)
    counter = _Counter(samplers.guided_x0_fn(net))
    e1 = (samplers.ode_sample(counter, noise, s, num_steps=40, sampler_type="euler") - exact).abs().max()
    assert counter.calls == 40
    e2 = (net.sample(noise, num_steps=160, sampler_type="euler") - exact).abs().max()
    assert e2 < e1 / 3 and e2 < 0.06


def _ddim_map(schedule, x, t_list):
    """Closed-form DDIM ("ode" student) map for one Gaussian: x' = a' m + (x - a m)(a a' s^2 + sig sig') / v."""
    for t, t_next in zip(t_list[:-1], t_list[1:]):
        a, sg = schedule.alpha(t), schedule.sigma(t)
        v = a**2 * S**2 + sg**2
        if t_next == 0:
            return M + a * S**2 / v * (x - a * M)
        a1, s1 = schedule.alpha(t_next), schedule.sigma(t_next)
        x = a1 * M + (x - a * M) * (a * a1 * S**2 + sg * s1) / v
    raise AssertionError("t_list must end in 0")


@pytest.mark.parametrize(
    "name,t_list", [("edm", [80.0, 2.5, 0.3, 0.0]), ("rf", [0.999, 0.6, 0.2, 0.0]), ("trig", [1.5, 0.8, 0.0])]
)
def test_student_ode_matches_analytic_map(name, t_list):
    net = GMMDenoiser("gauss1", schedule_type=name)
    s, noise = net.noise_scheduler, _noise(50)
    t_list = torch.tensor(t_list, dtype=F64)
    out = samplers.student_sample(samplers.guided_x0_fn(net), noise, t_list, s, sample_type="ode")
    expected = _ddim_map(s, noise * s.sigma(t_list[0]), t_list)
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=0)


def test_student_one_step_and_sde_with_generator():
    net = GMMDenoiser("ring8", schedule_type="edm")
    s, noise = net.noise_scheduler, _noise(64).float()
    one = samplers.student_sample(samplers.guided_x0_fn(net), noise, s.get_t_list(1), s)
    torch.testing.assert_close(one, net(noise * 80.0, torch.full((64,), 80.0, dtype=F64)))
    t_list = torch.tensor([80.0, 1.0, 0.02, 0.0], dtype=F64)
    out = samplers.student_sample(net, noise, t_list, s, "sde", generator=torch.Generator().manual_seed(7))
    again = samplers.student_sample(net, noise, t_list, s, "sde", generator=torch.Generator().manual_seed(7))
    assert torch.equal(out, again) and out.dtype == torch.float32
    # manual replay: fresh noise from the same generator at each intermediate time
    g = torch.Generator().manual_seed(7)
    x = noise * 80.0
    for t, t_next in zip(t_list[:-1], t_list[1:]):
        x0 = net(x, t.expand(64))
        if t_next > 0:
            x = x0 + t_next.item() * torch.randn(x.shape, generator=g)
    torch.testing.assert_close(out, x0)
    other = samplers.student_sample(net, noise, t_list, s, "sde", generator=torch.Generator().manual_seed(8))
    assert (other - out).abs().max() > 1e-3


@pytest.mark.parametrize("name,std_128", [("edm", (0.74, 0.80)), ("rf", (0.77, 0.82))])
def test_ancestral_sampler_converges_in_distribution(name, std_128):
    """The reverse-SDE sampler on the exact Gaussian denoiser: its samples' law tends to N(0.5, 0.8^2) as steps grow.
    With few steps each posterior draw uses E[x0 | x_t] and misses x0's own uncertainty, so the spread is too small
    (8 EDM steps: std 0.45), shrinking about as 1/steps (128: 0.76; 4000 samples x 2 coordinates, std error ~0.006)."""
    net = GMMDenoiser("gauss1", schedule_type=name)
    noise = torch.randn(4000, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    counter = _Counter(samplers.guided_x0_fn(net))
    x128 = samplers.ode_sample(counter, noise, net.noise_scheduler, num_steps=128, sampler_type="ancestral",
                               generator=torch.Generator().manual_seed(1))
    assert counter.calls == 128
    x8 = net.sample(noise, num_steps=8, sampler_type="ancestral", generator=torch.Generator().manual_seed(1))
    assert abs(x128.mean().item() - M) < 0.03 and abs(x8.mean().item() - M) < 0.03
    assert std_128[0] < x128.std().item() < std_128[1]
    assert S - x8.std().item() > 4 * abs(S - x128.std().item())
    again = net.sample(noise, num_steps=8, sampler_type="ancestral", generator=torch.Generator().manual_seed(1))
    other = net.sample(noise, num_steps=8, sampler_type="ancestral", generator=torch.Generator().manual_seed(2))
    assert torch.equal(x8, again) and (x8 - other).abs().max() > 0.1


def test_conditional_sampling_and_guidance_land_on_the_selected_mode():
    net = GMMDenoiser("ring8", schedule_type="edm", label_dim=8)
    noise = _noise(100).float()
    cond = torch.nn.functional.one_hot(torch.full((100,), 3), 8).float()
    target = net.gmm.means[3].float()
    for g in (None, 2.0):
        x = net.sample(noise, condition=cond, guidance_scale=g, num_steps=35)
        dist = (x - target).norm(dim=1) / net.gmm.stds[3].item()
        assert dist.max() < 4.0
    # g = 1 is the conditional sampler, g = 0 the unconditional (negative) one
    guided = net.sample(noise, cond, guidance_scale=1.0, num_steps=9)
    torch.testing.assert_close(guided, net.sample(noise, cond, num_steps=9))
    uncond = net.sample(noise, torch.zeros_like(cond), num_steps=9)
    torch.testing.assert_close(net.sample(noise, cond, guidance_scale=0.0, num_steps=9), uncond)


def test_t_list_and_type_validation():
    s = get_noise_schedule("edm")
    with pytest.raises(ValueError, match="end in 0"):
        samplers.student_sample(lambda x, t: x, torch.zeros(2, 2), [80.0, 1.0], s)
    with pytest.raises(ValueError, match="sample_type"):
        samplers.student_sample(lambda x, t: x, torch.zeros(2, 2), [80.0, 0.0], s, sample_type="ddim")
    with pytest.raises(ValueError, match="sampler_type"):
        samplers.ode_sample(lambda x, t: x, torch.zeros(2, 2), s, sampler_type="dpm")
    assert torch.equal(samplers.teacher_t_list(get_noise_schedule("rf"), 4), get_noise_schedule("rf").get_t_list(4))
