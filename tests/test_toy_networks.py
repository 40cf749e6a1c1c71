"""Toy networks: ToyMLP (preconditioning, features, logvar, r, labels, jvp) and the exact GMMDenoiser teacher."""

import copy
import math

import pytest
import torch

from fastgen.networks.toy import GMMDenoiser, ToyMLP

F64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _randomise(net, std=0.1, seed=0):
    g = _gen(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return net


@pytest.mark.parametrize("schedule", ["edm", "rf", "trig"])
def test_toy_mlp_starts_as_the_c_skip_denoiser(schedule):
    """Zero-initialised output layer: D(x, t) = c_skip x with c_skip = alpha sd^2 / (alpha^2 sd^2 + sigma^2)."""
    net = ToyMLP(schedule_type=schedule)
    x = torch.randn(5, 2, generator=_gen())
    t = net.noise_scheduler.sample_t(5, "uniform", generator=_gen(1))
    a, s = net.noise_scheduler.alpha(t)[:, None], net.noise_scheduler.sigma(t)[:, None]
    expected = a * 0.25 / (a**2 * 0.25 + s**2) * x.double()
    torch.testing.assert_close(net(x, t).double(), expected, atol=1e-6, rtol=1e-6)
    lv = net(x, t, return_logvar=True)[1]
    assert lv.shape == (5, 1) and lv.abs().max() == 0


def test_toy_mlp_features_logvar_labels_and_r():
    net = _randomise(ToyMLP(label_dim=4, r_timestep=True, num_layers=3))
    x, t = torch.randn(6, 2, generator=_gen()), torch.tensor([0.01, 0.1, 1.0, 5.0, 20.0, 80.0], dtype=F64)
    cond = torch.nn.functional.one_hot(torch.arange(6) % 4, 4).float()
    out, feats, logvar = net(x, t, cond, feature_indices=[2, 0], return_logvar=True)
    assert [f.shape for f in feats] == [(6, 128), (6, 128)]
    early = net(x, t, cond, feature_indices=[0, 2], return_features_early=True)
    assert all(torch.equal(a, b) for a, b in zip(early, feats))
    # logvar is the linear head on the time embedding of c_noise = log(t) / 4
    emb = net.time_embed((t.log() / 4).float())
    torch.testing.assert_close(logvar, net.logvar_linear(emb))
    # no condition == the all-zero condition (label embedding has no bias); labels change the output
    torch.testing.assert_close(net(x, t), net(x, t, torch.zeros_like(cond)))
    assert (net(x, t, cond) - net(x, t)).abs().max() > 1e-3
    # r defaults to t; a different r changes the output
    torch.testing.assert_close(net(x, t, cond, r=t), out)
    assert (net(x, t, cond, r=t / 2) - out).abs().max() > 1e-3
    with pytest.raises(ValueError, match="feature_indices"):
        net(x, t, feature_indices=[3])


def test_toy_mlp_fwd_pred_type_and_dtype():
    net = _randomise(ToyMLP(schedule_type="rf"))
    x, t = torch.randn(4, 2), torch.tensor([0.2, 0.4, 0.6, 0.8], dtype=F64)
    x0 = net(x, t)
    flow = net(x, t, fwd_pred_type="flow")
    expected = net.noise_scheduler.x0_to_flow(x, x0, t)
    assert flow.dtype == torch.float32 and torch.equal(flow, expected)
    flow_net = _randomise(ToyMLP(schedule_type="rf", net_pred_type="flow"))
    torch.testing.assert_close(flow_net(x, t, fwd_pred_type="x0"), x - t[:, None].float() * flow_net(x, t))


@pytest.mark.parametrize("r_timestep", [False, True])
def test_toy_mlp_jvp_matches_finite_differences(r_timestep):
    net = _randomise(ToyMLP(r_timestep=r_timestep, schedule_type="rf", net_pred_type="flow"), std=0.1).double()
    x, t = torch.randn(5, 2, generator=_gen(), dtype=F64), torch.linspace(0.2, 0.8, 5, dtype=F64)
    r = t / 2
    vx, vt = torch.randn(5, 2, generator=_gen(1), dtype=F64), torch.ones(5, dtype=F64)

    def fn(x_, t_):
        return net(x_, t_, r=r)

    _, jvp = torch.func.jvp(fn, (x, t), (vx, vt))
    h = 1e-6
    fd = (fn(x + h * vx, t + h * vt) - fn(x - h * vx, t - h * vt)) / (2 * h)
    torch.testing.assert_close(jvp, fd, atol=1e-7, rtol=1e-6)


def test_toy_mlp_determinism():
    torch.manual_seed(3)
    a = ToyMLP(label_dim=2)
    torch.manual_seed(3)
    b = ToyMLP(label_dim=2)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.slow
def test_toy_mlp_learns_the_exact_denoiser():
    """A few hundred denoising steps on gauss1 bring the MLP close to the closed-form posterior mean."""
    torch.manual_seed(0)
    net, teacher = ToyMLP(hidden_dim=64, num_layers=2), GMMDenoiser("gauss1")
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    g = _gen(0)
    xv, _ = teacher.gmm.sample(512, generator=_gen(9))
    tv = teacher.noise_scheduler.sample_t(512, "lognormal", generator=_gen(10))
    xv_t = (xv + tv[:, None] * torch.randn(xv.shape, generator=_gen(11), dtype=F64)).float()

    def err():
        with torch.no_grad():
            return (net(xv_t, tv) - teacher(xv_t, tv)).pow(2).mean().item()

    before = err()
    for _ in range(120):
        x0, _ = teacher.gmm.sample(128, generator=g)
        t = teacher.noise_scheduler.sample_t(128, "lognormal", generator=g)
        x_t = (x0 + t[:, None] * torch.randn(x0.shape, generator=g, dtype=F64)).float()
        loss = (net(x_t, t) - x0.float()).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = err()
    assert after < before / 5 and after < 0.01


@pytest.mark.parametrize("schedule", ["edm", "rf", "trig", "sd", "cogvideox"])
def test_gmm_denoiser_matches_importance_sampling(schedule):
    net = GMMDenoiser("ring8", schedule_type=schedule)
    s = net.noise_scheduler
    t = torch.tensor([0.5 if schedule == "edm" else 0.5], dtype=F64).expand(3)
    x_t = torch.tensor([[0.7, 0.1], [-0.2, -0.9], [1.0, 1.0]])
    x0, _ = net.gmm.sample(200_000, generator=_gen(1))
    a, sg = s.alpha(t[0]).item(), s.sigma(t[0]).item()
    w = torch.softmax(-0.5 * ((x_t.double()[:, None] - a * x0[None]) ** 2).sum(-1) / sg**2, dim=1)
    mc = (w[:, :, None] * x0[None]).sum(1)
    torch.testing.assert_close(net(x_t, t).double(), mc, atol=0.02, rtol=0)


def test_gmm_denoiser_conditioning_features_and_conversions():
    net = GMMDenoiser("ring8", label_dim=8)
    x = torch.randn(8, 2, generator=_gen())
    t = torch.full((8,), 0.7, dtype=F64)
    cond = torch.eye(8)
    a, s = 1.0, 0.7
    m, sd = net.gmm.means, net.gmm.stds[0]
    expected = m + a * sd**2 / (a**2 * sd**2 + s**2) * (x.double() - a * m)
    torch.testing.assert_close(net(x, t, cond).double(), expected, atol=1e-6, rtol=0)
    # zero rows and None are unconditional
    torch.testing.assert_close(net(x, t, torch.zeros_like(cond)), net(x, t))
    out, feats, logvar = net(x, t, feature_indices=[0], return_logvar=True)
    assert torch.equal(feats[0], torch.cat([x, out], dim=1)) and torch.equal(logvar, torch.zeros(8, 1))
    assert torch.equal(net(x, t, feature_indices=[0], return_features_early=True)[0], feats[0])
    eps = net(x, t, fwd_pred_type="eps")
    torch.testing.assert_close(eps, (x - out) / 0.7)
    with pytest.raises(ValueError, match="label_dim"):
        GMMDenoiser("ring8", label_dim=3)
    with pytest.raises(ValueError, match="feature"):
        net(x, t, feature_indices=[1])


def test_gmm_denoiser_is_differentiable_copyable_and_stateless():
    net = GMMDenoiser("grid25", schedule_type="rf")
    assert list(net.parameters()) == [] and list(net.state_dict()) == ["_dummy"]
    clone = copy.deepcopy(net)
    clone.load_state_dict(net.state_dict())
    x = torch.randn(4, 2, requires_grad=True)
    t = torch.full((4,), 0.3, dtype=F64)
    feats = clone(x, t, feature_indices=[0], return_features_early=True)[0]
    (grad,) = torch.autograd.grad(feats.sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    # near t = 0 the posterior mean is (almost) the input itself
    tiny = GMMDenoiser("gauss1", schedule_type="edm")(x.detach(), torch.full((4,), 0.002, dtype=F64))
    assert (tiny - x.detach()).abs().max() < 1e-4 * math.sqrt(2) + 1e-5


@pytest.mark.parametrize("schedule", ["edm", "rf"])
def test_toy_mlp_trigflow_time_label(schedule):
    """time_label="trigflow" feeds s = arctan(sigma / (alpha sd)): on edm arctan(t / sd), in [0, pi/2]; forward-mode
    JVPs through it match central differences."""
    net = _randomise(ToyMLP(schedule_type=schedule, time_label="trigflow", max_time_freq=1.0), std=0.1).double()
    t = torch.tensor([0.002, 0.3, 0.9, 5.0, 80.0], dtype=F64) if schedule == "edm" else torch.linspace(0.05, 0.95, 5,
                                                                                                     dtype=F64)
    sched = net.noise_scheduler
    expected = torch.atan(t / 0.5) if schedule == "edm" else torch.atan(sched.sigma(t) / (sched.alpha(t) * 0.5))
    torch.testing.assert_close(net.noise_label(t), expected, atol=1e-12, rtol=1e-12)
    assert float(net.noise_label(t).max()) < math.pi / 2
    x, vx = torch.randn(5, 2, generator=_gen(), dtype=F64), torch.randn(5, 2, generator=_gen(1), dtype=F64)
    vt = 0.01 * t
    _, jvp = torch.func.jvp(lambda x_, t_: net(x_, t_), (x, t), (vx, vt))
    h = 1e-6
    fd = (net(x + h * vx, t + h * vt) - net(x - h * vx, t - h * vt)) / (2 * h)
    torch.testing.assert_close(jvp, fd, atol=1e-7, rtol=1e-5)
    with pytest.raises(ValueError, match="time_label"):
        ToyMLP(time_label="log")
