"""MeanFlow: the target u_tgt = v - (t - r) du/dt with du/dt from the JVP recomputed independently (finite
differences), both loss types with adaptive weighting, the guided training target, its own 1-/multi-step sampler,
learning on the exact Gaussian-mixture oracle, and the EDM CIFAR-10 recipe at a tiny size."""

import pytest
import torch
from test_cm import run_recipe_tiny, train_toy

from fastgen.configs.experiments.Toy import config_mean_flow
from fastgen.methods import MeanFlowModel
from fastgen.methods.consistency_model.losses import adaptive_weight, parse_norm_method
from fastgen.methods.consistency_model.mean_flow import meanflow_sample
from fastgen.methods.fine_tuning.sft import sample_t_kwargs


def small_model(**loss):
    config = config_mean_flow.create_config()
    config.model.net.hidden_dim, config.model.net.num_layers = 32, 1
    for key, value in loss.items():
        setattr(config.model.loss_config, key, value)
    model = MeanFlowModel(config.model)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.net.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return model, config


@pytest.mark.parametrize("loss_type,norm_method,warmup_steps", [("l2", "poly_1.0", 0), ("l2", "poly_0.75", 100),
                                                                ("opt_grad", "poly_1.0", 0), ("l2", "exp_0.5", 0)])
def test_meanflow_loss_equals_formula(loss_type, norm_method, warmup_steps):
    model, config = small_model(loss_type=loss_type, norm_method=norm_method, norm_const=0.01,
                                tangent_warmup_steps=warmup_steps)
    real = torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(2)
    loss_map, _ = model.single_train_step({"real": real, "condition": torch.zeros(16, 0)}, 40)
    torch.manual_seed(2)
    schedule = model.net.noise_scheduler
    t = schedule.sample_t(16, **sample_t_kwargs(config.model.sample_t_cfg))
    r = schedule.sample_t(16, **sample_t_kwargs(config.model.sample_t_cfg))
    t, r = torch.maximum(t, r), torch.minimum(t, r)
    r = torch.where(torch.rand(16) < 0.5, r, t)
    eps = torch.randn_like(real)
    tc = t.float()[:, None]
    x_t = (1 - tc) * real + tc * eps  # rectified flow
    v = eps - real
    assert (r < t).any() and (r == t).any()
    net = model.net.double()
    with torch.no_grad():
        u = net(x_t.double(), t, r=r)
        h = 1e-6  # central difference of u along (v, 1, 0)
        du_dt = (net(x_t.double() + h * v.double(), t + h, r=r) - net(x_t.double() - h * v.double(), t - h, r=r)) / (2 * h)
    w = 1.0 if warmup_steps == 0 else 40 / warmup_steps
    u_tgt = v.double() - w * (t - r)[:, None] * du_dt
    if loss_type == "l2":
        sq = ((u - u_tgt) ** 2).sum(1)
        kind, params = parse_norm_method(norm_method)
        weight = 1 / (sq + 0.01) ** params[0] if kind == "poly" else torch.exp(-params[0] * sq)
        expected = (weight * sq).mean()
    else:
        tangent = u_tgt - u
        scale = 1 / (tangent.norm(dim=1) + 0.01)
        expected = ((scale[:, None] * tangent) ** 2).sum(1).mean()  # u = u^- at this step
    torch.testing.assert_close(loss_map["total_loss"].double(), expected, rtol=1e-4, atol=1e-6)
    assert float(loss_map["tangent_warmup_weight"]) == pytest.approx(w)
    torch.testing.assert_close(loss_map["v_loss"].double(), ((u - v.double()) ** 2).mean(), rtol=1e-4, atol=1e-6)


def test_adaptive_weight_and_norm_method_parsing():
    loss = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(adaptive_weight(loss, "poly_0.5", 1.0), 1 / torch.sqrt(loss + 1))
    torch.testing.assert_close(adaptive_weight(loss, "exp_2.0_0.5", 1.0), torch.exp(-2.0 * loss.sqrt()))
    for bad in ("poly", "cosine_1", "poly_a"):
        with pytest.raises(ValueError, match="norm_method"):
            parse_norm_method(bad)


def test_guided_training_target():
    """v~ = g v + k u(x, t, t | c) + (1 - g - k) u(x, t, t | neg) inside the guidance window, v outside it."""
    config = config_mean_flow.create_config()
    config.model.net.hidden_dim, config.model.net.label_dim = 32, 4
    config.model.guidance_scale, config.model.guidance_mixture_ratio = 2.0, 0.25
    config.model.guidance_t_start, config.model.guidance_t_end = 0.0, 0.5
    model = MeanFlowModel(config.model)
    with torch.no_grad():
        for p in model.net.parameters():
            p.add_(0.2 * torch.randn_like(p))
    x = torch.randn(4, 2)
    t = torch.tensor([0.2, 0.4, 0.6, 0.9], dtype=torch.float64)
    v, cond = torch.randn(4, 2), torch.eye(4)
    out = model.guided_ct_velocity(v, x, t, cond, torch.zeros_like(cond), torch.tensor([True, False, True, True]))
    with torch.no_grad():
        u_c = model.net(x, t, condition=cond, r=t)
        u_u = model.net(x, t, condition=torch.zeros_like(cond), r=t)
    guided = 2.0 * v + 0.25 * u_c + (1 - 2.0 - 0.25) * u_u
    torch.testing.assert_close(out[0], guided[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1:], v[1:])  # dropped condition / outside [0, 0.5]


def test_meanflow_sampler_ode_and_sde():
    model, _ = small_model()
    noise = torch.randn(5, 2, generator=torch.Generator().manual_seed(3))
    t_list = [1.0, 0.4, 0.0]
    net = model.net
    ode = model.generator_fn(net, noise, student_sample_steps=2, t_list=t_list, sample_type="ode")
    sde = model.generator_fn(net, noise, student_sample_steps=2, t_list=t_list, sample_type="sde",
                             generator=torch.Generator().manual_seed(9))
    one = model.generator_fn(net, noise, student_sample_steps=1)
    ones = torch.ones(5, dtype=torch.float64)
    with torch.no_grad():
        x = noise - 0.6 * net(noise, ones, r=0.4 * ones)
        expected_ode = x - 0.4 * net(x, 0.4 * ones, r=0 * ones)
        x0 = noise - net(noise, ones, r=0 * ones)
        torch.testing.assert_close(one, x0)  # 1 step: x0 = x1 - u(x1, 1, 0)
        fresh = torch.randn(5, 2, generator=torch.Generator().manual_seed(9))
        x = 0.6 * x0 + 0.4 * fresh
        expected_sde = x - 0.4 * net(x, 0.4 * ones, r=0 * ones)
    torch.testing.assert_close(ode, expected_ode, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sde, expected_sde, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="sample_type"):
        meanflow_sample(lambda x, t, r: x, noise, torch.tensor([1.0, 0.0]), net.noise_scheduler, "heun")


def test_meanflow_requires_r_timestep():
    config = config_mean_flow.create_config()
    config.model.net.r_timestep = False
    with pytest.raises(ValueError, match="r_timestep"):
        MeanFlowModel(config.model)


@pytest.mark.slow
@pytest.mark.parametrize("use_cd", [False, True])
def test_meanflow_on_gmm_oracle_moves_one_step_samples_to_data(tmp_path, monkeypatch, use_cd):
    """u starts at 0, whose 1-step samples are the unit-variance noise itself (already 0.32 from the ring in sliced
    W2), so the factor asked is smaller than for the CMs."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    config = config_mean_flow.create_config()
    config.model.loss_config.use_cd = use_cd
    _, before, after = train_toy(config, tmp_path)
    print(f"MeanFlow use_cd={use_cd}: 1-step sliced W2 {before:.4f} -> {after:.4f}")
    assert after * 1.4 < before, (before, after)


def test_edm_meanflow_recipe_trains_at_tiny_size(tmp_path):
    model, config = run_recipe_tiny("fastgen/configs/experiments/EDM/config_mf_cifar10.py", "SongUNet", tmp_path)
    assert type(model).__name__ == "MeanFlowModel" and model.net.r_timestep and model.net.schedule_type == "rf"
    assert config.trainer.augment_pipe is not None
    out = model.generator_fn(model.net, torch.randn(2, 3, 8, 8), student_sample_steps=1)
    assert torch.isfinite(out).all() and out.std() > 0


def edm_net_on_rf_path():
    """A ToyMLP on the EDM schedule ([0.002, 80]) learning u on the rf path (model.path_schedule), in float64."""
    config = config_mean_flow.create_config()
    config.model.net.hidden_dim, config.model.net.num_layers = 32, 1
    config.model.net.schedule_type, config.model.net.max_t = "edm", 80.0
    config.model.teacher.schedule_type, config.model.teacher.max_t = "edm", 80.0
    config.model.path_schedule = "rf"
    config.model.loss_config.norm_const = 0.01
    t_cfg = config.model.sample_t_cfg  # times are drawn in the network's time: EDM sigmas
    t_cfg.time_dist_type, t_cfg.min_t, t_cfg.max_t, t_cfg.train_p_mean, t_cfg.train_p_std = "lognormal", 0.002, 80.0, 0.0, 2.0
    model = MeanFlowModel(config.model)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.net.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return model.double(), config


def test_path_schedule_maps_an_edm_network_onto_the_rf_path():
    """u on the rf path by SNR matching, recomputed by hand: tau = t / (1 - t), x_edm = x / (1 - t),
    u = (x - x0(x_edm, tau, r / (1 - r))) / t; its JVP by central differences of that function; the 1-step sample
    from sigma 80 is the network's own x0 at sigma 80 (r = 0)."""
    model, config = edm_net_on_rf_path()
    path = model.path_schedule
    assert path.name == "rf" and path.min_t == pytest.approx(0.002 / 1.002) and path.max_t == pytest.approx(80 / 81)
    real = torch.randn(16, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.manual_seed(2)
    loss_map, _ = model.single_train_step({"real": real, "condition": torch.zeros(16, 0)}, 40)
    torch.manual_seed(2)  # times drawn as EDM sigmas (the network's time), then put on the path: t = sigma / (1 + sigma)
    sigma = model.net.noise_scheduler.sample_t(16, **sample_t_kwargs(config.model.sample_t_cfg))
    sigma_r = model.net.noise_scheduler.sample_t(16, **sample_t_kwargs(config.model.sample_t_cfg))
    sigma, sigma_r = torch.maximum(sigma, sigma_r), torch.minimum(sigma, sigma_r)
    sigma_r = torch.where(torch.rand(16) < 0.5, sigma_r, sigma)
    t, r = sigma / (1 + sigma), sigma_r / (1 + sigma_r)
    eps = torch.randn_like(real)
    assert (r < t).any() and (r == t).any() and float(t.max()) < 80 / 81
    x_t, v = (1 - t[:, None]) * real + t[:, None] * eps, eps - real
    net = model.net

    def u_by_hand(x, tt, rr):
        x0 = net(x / (1 - tt[:, None]), tt / (1 - tt), r=rr / (1 - rr), fwd_pred_type="x0")
        return (x - x0) / tt[:, None]

    with torch.no_grad():
        u = u_by_hand(x_t, t, r)
        h = 1e-6
        du_dt = (u_by_hand(x_t + h * v, t + h, r) - u_by_hand(x_t - h * v, t - h, r)) / (2 * h)
        sq = ((u - (v - (t - r)[:, None] * du_dt)) ** 2).sum(1)
    expected = (sq / (sq + 0.01) ** 0.5).mean()  # the toy's adaptive weight: poly_0.5
    torch.testing.assert_close(loss_map["total_loss"].double(), expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(loss_map["v_loss"].double(), ((u - v) ** 2).mean(), rtol=1e-5, atol=1e-8)

    noise = torch.randn(5, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    one = model.generator_fn(net, noise, student_sample_steps=1, t_list=[80.0, 0.0])
    with torch.no_grad():
        x0 = net(80.0 * noise, torch.full((5,), 80.0, dtype=torch.float64), r=torch.zeros(5, dtype=torch.float64),
                 fwd_pred_type="x0")
    torch.testing.assert_close(one, x0, rtol=1e-9, atol=1e-9)
