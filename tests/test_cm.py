"""CM (ECT): the pair mapping and CT schedule values, the loss recomputed from its formula for every weighting and
distance, the CD Euler step with CFG, multi-step sampling, resume bit-identity, learning on the exact Gaussian-mixture
oracle, and the EDM / EDM2 CM recipes at a tiny override size (2 training iterations)."""

import math
import os

import pytest
import torch

from fastgen.callbacks.ct_schedule import ct_ratio, ct_stage
from fastgen.configs.experiments.Toy import config_cm
from fastgen.methods import CMModel
from fastgen.methods.consistency_model.losses import cm_distance, cm_weight, ect_r_from_t
from fastgen.methods.fine_tuning.sft import sample_t_kwargs
from fastgen.trainer import Trainer
from fastgen.utils import instantiate
from fastgen.utils.gmm import make_gmm, sliced_wasserstein

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def small_config(**loss):
    config = config_cm.create_config()
    config.model.net.hidden_dim, config.model.net.num_layers = 32, 1
    for key, value in loss.items():
        setattr(config.model.loss_config, key, value)
    return config


def randomize(net, seed=0, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g))


def batch(n=16, seed=1):
    real = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))
    return {"real": real, "condition": torch.zeros(n, 0), "neg_condition": torch.zeros(n, 0)}


def test_ect_mapping_and_ct_schedule_values():
    t = torch.tensor([0.002, 0.5, 2.0, 80.0], dtype=torch.float64)
    r = ect_r_from_t(t, 0.75)
    sig = 1 / (1 + torch.exp(t))
    torch.testing.assert_close(r, (t - t * 0.25 * (1 + 8 * sig)).clamp(min=0))
    assert r[0] == 0 and 0 < r[2] < t[2]  # small t maps to the boundary r = 0
    assert float(ect_r_from_t(torch.tensor([80.0], dtype=torch.float64), 0.999)[0]) == pytest.approx(80 - 0.08, 1e-6)
    # doubling schedule 1/2, 3/4, 7/8, ... capped at ratio_limit; one stage per kimg_per_stage thousand images
    assert [ct_ratio(s, 2.0, 0.999) for s in range(4)] == [0.5, 0.75, 0.875, 0.9375]
    assert ct_ratio(20, 2.0, 0.999) == 0.999 and ct_ratio(1, 4.0, 0.9961) == 1 - 1 / 16
    assert ct_stage(99, 256, 25.6) == 0 and ct_stage(100, 256, 25.6) == 1 and ct_stage(100000, 256, 12500) == 2


@pytest.mark.parametrize("weighting,huber,squared", [("default", 1e-8, False), ("c_out", 0.06, False),
                                                     ("c_out_sq", 0.0, True), ("sigma_sq", 0.0, False),
                                                     ("sqrt", 0.1, False), ("one", 0.0, False)])
def test_cm_loss_equals_formula(weighting, huber, squared):
    config = small_config(weighting_ct_loss=weighting, huber_const=huber, use_squared_l2=squared)
    model = CMModel(config.model)
    randomize(model.net)
    model.ratio = 0.875
    data = batch()
    torch.manual_seed(7)
    loss_map, outputs = model.single_train_step(data, 1)
    torch.manual_seed(7)  # replay: t, eps; recompute both points and outputs independently
    schedule = model.net.noise_scheduler
    t = schedule.sample_t(16, **sample_t_kwargs(config.model.sample_t_cfg))
    r = (t - t * (1 - 0.875) * (1 + 8 * torch.sigmoid(-t))).clamp(min=0)
    t = torch.maximum(t, r + 1e-6)
    eps = torch.randn_like(data["real"])
    y_t, y_r = data["real"] + t.float()[:, None] * eps, data["real"] + r.float()[:, None] * eps
    with torch.no_grad():
        d_t = model.net(y_t, t)
        d_r = torch.where((r > 0)[:, None], model.net(y_r, r), y_r)
    d = (d_t - d_r).double().norm(dim=1)
    if huber > 0:
        dist = torch.sqrt(d**2 + huber**2) - huber
    else:
        dist = d**2 if squared else d
    c_out = t * 0.5 / torch.sqrt(t**2 + 0.25)
    weight = {"default": 1 / (t - r), "c_out": 1 / c_out, "c_out_sq": 1 / c_out**2, "sigma_sq": 1 / t**2,
              "sqrt": 1 / torch.sqrt(t - r), "one": torch.ones_like(t)}[weighting]
    expected = (weight * dist).mean()
    torch.testing.assert_close(loss_map["total_loss"].double(), expected, rtol=2e-5, atol=1e-6)
    torch.testing.assert_close(loss_map["unweighted_cm_loss"].double(), dist.mean(), rtol=2e-5, atol=1e-6)
    assert loss_map["total_loss"].requires_grad and callable(outputs["gen_rand"])
    assert float(loss_map["ct_ratio"]) == 0.875


def test_cm_helpers_reject_unknown_weighting():
    with pytest.raises(ValueError, match="weighting_ct_loss"):
        cm_weight("inverse", torch.ones(1), torch.zeros(1), torch.ones(1))
    with pytest.raises(ValueError, match="weighting_ct_loss"):
        CMModel(small_config(weighting_ct_loss="bogus").model)
    a, b = torch.zeros(2, 3), torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(cm_distance(a, b, 0.0), torch.tensor([5.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(cm_distance(a, b, 1.0), torch.tensor([math.sqrt(26) - 1, 0.0], dtype=torch.float64))


def test_cd_pair_is_one_guided_teacher_euler_step():
    config = small_config(use_cd=True)
    config.model.guidance_scale = 2.0
    config.model.teacher.label_dim = 8
    model = CMModel(config.model)
    assert model.teacher is not None and not any(p.requires_grad for p in model.teacher.parameters())
    assert "teacher" not in model.model_dict
    real = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    eps = torch.randn(8, 2, generator=torch.Generator().manual_seed(1))
    t = torch.linspace(0.5, 5.0, 8, dtype=torch.float64)
    r = 0.6 * t
    cond = torch.eye(8)
    y_t, y_r = model.pair_points(real, eps, t, r, cond, torch.zeros_like(cond))
    gmm = make_gmm("ring8")
    x0_c = gmm.posterior_mean(y_t, 1.0, t, labels=cond)
    x0_u = gmm.posterior_mean(y_t, 1.0, t)
    x0 = x0_u + 2.0 * (x0_c - x0_u)  # CFG on the exact posterior means
    expected = y_t.double() + (r - t)[:, None] * (y_t.double() - x0) / t[:, None]  # EDM: dx/dt = (x - x0)/t
    torch.testing.assert_close(y_r.double(), expected, atol=1e-5, rtol=1e-5)


def test_multistep_sampling_follows_t_list():
    config = small_config()
    model = CMModel(config.model)
    randomize(model.net)
    noise = torch.randn(5, 2, generator=torch.Generator().manual_seed(2))
    t_list = [80.0, 1.5, 0.0]
    out = model.generator_fn(model.net, noise, student_sample_steps=2, t_list=t_list, sample_type="ode")
    with torch.no_grad():
        model.net.eval()
        x0 = model.net(noise * 80.0, torch.full((5,), 80.0, dtype=torch.float64))
        eps = (noise * 80.0 - x0) / 80.0
        expected = model.net(x0 + 1.5 * eps, torch.full((5,), 1.5, dtype=torch.float64))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    one = model.generator_fn(model.net, noise, student_sample_steps=1)
    assert not torch.allclose(one, out)
    with pytest.raises(ValueError, match="t_list"):
        model.generator_fn(model.net, noise, student_sample_steps=2, t_list=[80.0, 0.0])


def swd(model, seed=5):
    noise = torch.randn(2000, 2, generator=torch.Generator().manual_seed(seed))
    samples = model.generator_fn(model.net_inference, noise, student_sample_steps=1)
    data, _ = make_gmm("ring8").sample(2000, torch.Generator().manual_seed(11))
    return sliced_wasserstein(samples, data, generator=torch.Generator().manual_seed(6))


def train_toy(config, tmp_path, name="run"):
    os.environ["FASTGEN_OUTPUT_ROOT"] = str(tmp_path / name)
    config.trainer.logging_iter = 10**6
    torch.manual_seed(0)
    model = instantiate(config.model_class, config=config.model)
    before = swd(model)
    Trainer(config).run(model)
    return model, before, swd(model)


@pytest.mark.slow
@pytest.mark.parametrize("use_cd", [False, True])
def test_cm_on_gmm_oracle_moves_one_step_samples_to_data(tmp_path, monkeypatch, use_cd):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    config = config_cm.create_config()
    config.model.loss_config.use_cd = use_cd
    config.trainer.max_iter = 400
    model, before, after = train_toy(config, tmp_path)
    print(f"CM use_cd={use_cd}: 1-step sliced W2 {before:.4f} -> {after:.4f}")
    assert model.ratio == 0.875  # stages of 150 steps: 1 - 1/2^3 in steps 301..400
    assert after * 4 < before, (before, after)


def test_cm_resume_is_bit_identical(tmp_path):
    def config_at(max_iter, root):
        os.environ["FASTGEN_OUTPUT_ROOT"] = str(root)
        config = small_config()
        config.dataloader_train.batch_size = 32
        config.trainer.callbacks.ct_schedule.kimg_per_stage = 0.32  # a new CT stage every 10 steps
        config.trainer.max_iter, config.trainer.save_ckpt_iter, config.trainer.logging_iter = max_iter, 10, 1000
        return config

    def run(max_iter, root):
        config = config_at(max_iter, root)
        torch.manual_seed(0)
        model = instantiate(config.model_class, config=config.model)
        Trainer(config).run(model)
        return model

    straight = run(30, tmp_path / "a")
    run(20, tmp_path / "b")
    resumed = run(30, tmp_path / "b")  # picks up the iteration-20 checkpoint
    for name in ("net", "ema"):
        for (k, p), q in zip(straight.model_dict[name].state_dict().items(),
                             resumed.model_dict[name].state_dict().values()):
            assert torch.equal(p, q), f"{name}.{k} differs after resume"
    assert straight.ratio == resumed.ratio == 1 - 1 / 2**3


# ------------------------------------------------------------------------------------------- EDM recipes, tiny
TINY_NETS = {
    "SongUNet": ["model.net.img_resolution=8", "model.net.model_channels=16", "model.net.channel_mult=[1,2]",
                 "+model.net.num_blocks=1", "+model.net.attn_resolutions=[4]"],
    "DhariwalUNet": ["model.net.img_resolution=8", "model.net.model_channels=16", "model.net.channel_mult=[1,2]",
                     "model.net.num_blocks=1", "model.net.attn_resolutions=[4]", "model.net.label_dim=4"],
    "EDM2": ["model.net.img_resolution=8", "model.net.model_channels=16", "model.net.channel_mult=[1,2]",
             "model.net.num_blocks=1", "model.net.attn_resolutions=[4]", "model.net.logvar_channels=8",
             "+model.net.channels_per_head=8", "model.net.label_dim=4"],
}


def run_recipe_tiny(config_file, net_kind, tmp_path, extra=()):
    """Load an experiment config, shrink it by command-line overrides, train 2 iterations on a tiny EDM zip."""
    from test_datasets import make_pixels, make_zip

    from fastgen.configs.config_utils import import_config_from_python_file, override_config_with_opts

    os.environ["FASTGEN_OUTPUT_ROOT"] = str(tmp_path)
    zip_path = make_zip(tmp_path / "tiny.zip", make_pixels(n=4, size=8), labels=[0, 1, 2, 3])
    config = import_config_from_python_file(os.path.join(REPO, config_file))
    config = override_config_with_opts(config, [
        "-", *TINY_NETS[net_kind], "model.pretrained_model_path=", "model.device=cpu", "model.precision_amp=null",
        f"dataloader_train.dataset_path={zip_path}", "dataloader_train.batch_size=2", "trainer.batch_size_global=2",
        "trainer.max_iter=2", "trainer.logging_iter=1", "log_config.wandb_mode=disabled", *extra])
    torch.manual_seed(0)
    model = instantiate(config.model_class, config=config.model)
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    Trainer(config).run(model)
    changed = any(not torch.equal(before[k], v) for k, v in model.net.state_dict().items())
    assert changed, "two training iterations left the student unchanged"
    assert (tmp_path / "fastgen").exists()
    return model, config


@pytest.mark.parametrize("config_file,net_kind", [
    ("fastgen/configs/experiments/EDM/config_cm_cifar10.py", "SongUNet"),
    ("fastgen/configs/experiments/EDM/config_cm_in64.py", "DhariwalUNet"),
    ("fastgen/configs/experiments/EDM2/config_cm_s.py", "EDM2"),
    ("fastgen/configs/experiments/EDM/config_cm_cifar10_fast.py", "SongUNet"),
    ("fastgen/configs/experiments/EDM2/config_cm_xl.py", "EDM2"),
])
def test_edm_cm_recipes_train_at_tiny_size(tmp_path, config_file, net_kind):
    model, config = run_recipe_tiny(config_file, net_kind, tmp_path)
    ct = config.trainer.callbacks.ct_schedule
    assert type(model).__name__ == "CMModel" and model.ratio == ct_ratio(0, ct.q, ct.ratio_limit)
    assert ct.kimg_per_stage in (6400, 3200, 512000)
