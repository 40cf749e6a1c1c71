"""sCM: the TrigFlow tangent with normalisation and adaptive weighting recomputed from the paper's formulas (with an
independent finite-difference derivative), the tangent vanishing for the exact consistency function of a Gaussian,
JVP/finite-difference agreement, learning on the exact Gaussian-mixture oracle, and the EDM sCT / sCD recipes."""

import math

import pytest
import torch
from test_cm import run_recipe_tiny, train_toy

from fastgen.configs.experiments.Toy import config_scm
from fastgen.methods import SCMModel
from fastgen.methods.consistency_model.jvp import jvp
from fastgen.methods.consistency_model.losses import normalize_tangent, scm_tangent, trigflow_time
from fastgen.methods.consistency_model.scm import trigflow_flow
from fastgen.methods.fine_tuning.sft import sample_t_kwargs
from fastgen.networks.network import FastGenNetwork
from fastgen.networks.toy import GMMDenoiser

SD = 0.5


def small_model(**loss):
    config = config_scm.create_config()
    config.model.net.hidden_dim, config.model.net.num_layers = 32, 1
    for key, value in loss.items():
        setattr(config.model.loss_config, key, value)
    model = SCMModel(config.model)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.net.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return model, config


def flow_by_hand(net, x_s, s):
    """F = (cos s x_s - x0(x_s / cos s, sd tan s)) / (sd sin s): TrigFlow's F of an EDM x0 network."""
    x0 = net(x_s / torch.cos(s).float()[:, None], SD * torch.tan(s), fwd_pred_type="x0").double()
    return ((torch.cos(s)[:, None] * x_s.double() - x0) / (SD * torch.sin(s)[:, None])).float()


@pytest.mark.parametrize("iteration,prior", [(30, True), (500, False)])
def test_scm_loss_equals_formula(iteration, prior):
    model, config = small_model(prior_weighting_enabled=prior, use_jvp_finite_diff=False)
    real = torch.randn(12, 2, generator=torch.Generator().manual_seed(1))
    data = {"real": real, "condition": torch.zeros(12, 0), "neg_condition": torch.zeros(12, 0)}
    torch.manual_seed(4)
    loss_map, _ = model.single_train_step(data, iteration)
    torch.manual_seed(4)
    sigma = model.net.noise_scheduler.sample_t(12, **sample_t_kwargs(config.model.sample_t_cfg))
    s = torch.atan(sigma / SD)
    z = SD * torch.randn_like(real)
    cos, sin = torch.cos(s)[:, None], torch.sin(s)[:, None]
    x_s = (cos * real.double() + sin * z.double()).float()
    dx_ds = -sin * real.double() + cos * z.double()
    with torch.no_grad():
        f_minus = flow_by_hand(model.net, x_s, s).double()
        h = 1e-4  # central difference of F along (dx/ds, 1)
        df_ds = (flow_by_hand(model.net, (x_s.double() + h * dx_ds).float(), s + h).double()
                 - flow_by_hand(model.net, (x_s.double() - h * dx_ds).float(), s - h).double()) / (2 * h)
        logvar = model.net(x_s / cos.float(), sigma, return_logvar=True)[1].double().squeeze(1)
    w_r = min(1.0, iteration / 100)
    g = -cos**2 * (SD * f_minus - dx_ds) - w_r * cos * sin * (x_s.double() + SD * df_ds)
    g = g / (g.norm(dim=1, keepdim=True) / math.sqrt(2) + 0.1)
    # F_theta = F^- at this step, so the residual is g itself
    weight = (1 / sigma if prior else torch.ones_like(sigma)) * torch.exp(-logvar)
    expected = (weight * (g**2).mean(1) + logvar).mean()
    torch.testing.assert_close(loss_map["total_loss"].double(), expected, rtol=2e-3, atol=1e-4)
    torch.testing.assert_close(loss_map["unweighted_scm_loss"].double(), (g**2).mean(1).mean(), rtol=2e-3, atol=1e-5)
    assert float(loss_map["warmup_weight"]) == pytest.approx(w_r) and loss_map["total_loss"].requires_grad


def test_finite_difference_jvp_gives_the_same_loss():
    model, _ = small_model(use_jvp_finite_diff=False)
    data = {"real": torch.randn(12, 2, generator=torch.Generator().manual_seed(1)), "condition": torch.zeros(12, 0)}
    torch.manual_seed(4)
    exact = model.single_train_step(data, 200)[0]["total_loss"]
    model.config.loss_config.use_jvp_finite_diff = True
    torch.manual_seed(4)
    approx = model.single_train_step(data, 200)[0]["total_loss"]
    torch.testing.assert_close(approx, exact, rtol=1e-3, atol=1e-4)


class ExactGaussianCM(FastGenNetwork):
    """The exact consistency function of N(mu, s^2 I) under EDM: f(x, t) = mu + (x - mu) s / sqrt(s^2 + t^2)."""

    def forward(self, x_t, t, condition=None, r=None, return_logvar=False, fwd_pred_type=None, **kwargs):
        t = t.to(torch.float64)[:, None]
        out = (0.5 + (x_t.double() - 0.5) * 0.8 / torch.sqrt(0.64 + t**2)).to(x_t.dtype)
        return (out, torch.zeros(x_t.shape[0], 1)) if return_logvar else out


@pytest.mark.parametrize("jvp_type", ["autograd", "finite_diff"])
def test_tangent_vanishes_for_the_exact_consistency_function(jvp_type):
    """df/ds = 0 along the teacher's PF-ODE exactly when f is the consistency function, so sCD's g must be 0 for
    the closed-form consistency function of a Gaussian and the exact (GMMDenoiser) teacher - while each of its
    two terms is not."""
    net, teacher = ExactGaussianCM(), GMMDenoiser("gauss1", dim=2).double()
    sigma = torch.tensor([0.01, 0.3, 1.0, 5.0, 40.0], dtype=torch.float64)
    s = trigflow_time(sigma, SD)
    gen = torch.Generator().manual_seed(0)
    x0 = 0.5 + 0.8 * torch.randn(5, 2, dtype=torch.float64, generator=gen)
    x_s = torch.cos(s)[:, None] * x0 + torch.sin(s)[:, None] * SD * torch.randn(5, 2, dtype=torch.float64,
                                                                                  generator=gen)
    dx_ds = SD * trigflow_flow(teacher, x_s, s, SD)
    cs = torch.cos(s) * torch.sin(s)
    f_minus, jvp_scaled = jvp(lambda x, tt: trigflow_flow(net, x, tt, SD), (x_s, s), (cs[:, None] * dx_ds, cs),
                              jvp_type=jvp_type, finite_diff_eps=1e-4 * s)
    g = scm_tangent(f_minus, dx_ds, x_s, jvp_scaled, s, SD, 1.0)
    first_term = torch.cos(s)[:, None] ** 2 * (SD * f_minus - dx_ds)
    assert first_term.abs().max() > 1e-2
    assert g.abs().max() < (1e-12 if jvp_type == "autograd" else 1e-7)
    # normalisation: ||g_n||_rms = ||g||_rms / (||g||_rms + c)
    g_n = normalize_tangent(first_term, 0.1, True)
    rms = first_term.pow(2).mean(1).sqrt()
    torch.testing.assert_close(g_n.pow(2).mean(1).sqrt(), rms / (rms + 0.1))


@pytest.mark.slow
@pytest.mark.parametrize("use_cd", [False, True])
def test_scm_on_gmm_oracle_moves_one_step_samples_to_data(tmp_path, monkeypatch, use_cd):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    config = config_scm.create_config()
    config.model.loss_config.use_cd = use_cd
    config.dataloader_train.batch_size = 256  # a test-sized batch (the config's 1024 is for the oracle's seeds)
    _, before, after = train_toy(config, tmp_path)
    print(f"sCM use_cd={use_cd}: 1-step sliced W2 {before:.4f} -> {after:.4f}")
    assert after * 2 < before, (before, after)


@pytest.mark.parametrize("config_file,net_kind", [("fastgen/configs/experiments/EDM/config_sct_cifar10.py", "SongUNet"),
                                                  ("fastgen/configs/experiments/EDM/config_scd_cifar10.py", "SongUNet"),
                                                  ("fastgen/configs/experiments/EDM/config_scd_in64.py", "DhariwalUNet"),
                                                  ("fastgen/configs/experiments/EDM2/config_scm_xl.py", "EDM2")])
def test_edm_scm_recipes_train_at_tiny_size(tmp_path, config_file, net_kind):
    model, config = run_recipe_tiny(config_file, net_kind, tmp_path)
    assert type(model).__name__ == "SCMModel"
    assert (model.teacher is not None) == config.model.loss_config.use_cd
    noise = torch.randn(2, 3, 8, 8)
    out = model.generator_fn(model.net, noise, student_sample_steps=1, t_list=config.model.sample_t_cfg.t_list)
    with torch.no_grad():
        model.net.eval()
        expected = model.net(noise * 80.0, torch.full((2,), 80.0, dtype=torch.float64))
    torch.testing.assert_close(out, expected)
    assert model.net(noise, torch.ones(2), return_logvar=True)[1].shape == (2, 1)  # adaptive-weighting head


def test_bf16_autocast_with_float32_jvp_matches_float32_loss():
    """precision_amp_jvp=float32 keeps the JVP pass out of the training autocast; the loss stays close to fp32's."""
    model, _ = small_model()
    data = {"real": torch.randn(12, 2, generator=torch.Generator().manual_seed(1)), "condition": torch.zeros(12, 0)}
    torch.manual_seed(4)
    reference = model.single_train_step(data, 200)[0]["total_loss"].detach()
    model.config.precision_amp_jvp = "float32"
    model.set_precision("float32", precision_amp="bfloat16")
    torch.manual_seed(4)
    with model.autocast():
        loss = model.single_train_step(data, 200)[0]["total_loss"]
    loss.backward()
    torch.testing.assert_close(loss.detach(), reference, rtol=0.05, atol=0.05)
    assert all(torch.isfinite(p.grad).all() for p in model.net.parameters() if p.grad is not None)


def test_schedule_without_closed_form_snr_inverse_needs_finite_differences():
    config = config_scm.create_config()
    config.model.net.schedule_type = "sd"
    config.model.net.net_pred_type = "eps"
    with pytest.raises(ValueError, match="use_jvp_finite_diff"):
        SCMModel(config.model)
    config.model.loss_config.use_jvp_finite_diff = True
    model = SCMModel(config.model)
    data = {"real": torch.randn(4, 2), "condition": torch.zeros(4, 0)}
    assert torch.isfinite(model.single_train_step(data, 1)[0]["total_loss"])
