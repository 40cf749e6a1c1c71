"""DMD2: generator/critic alternation and requires_grad switching, the VSD gradient, CFG of the teacher, the critic
loss (DSM + GAN + approximate R1) replayed by hand, the GAN feature-source switch, multi-step student inputs,
checkpoint contents and mid-cycle resume, training on the exact Gaussian-mixture teacher, and the EDM recipes
running two real Trainer iterations at a tiny size."""

import io
import json
import zipfile

import numpy as np
import PIL.Image
import pytest
import torch
import torch.nn.functional as F
from _toy_oracle import train_and_measure

from fastgen.configs.config_utils import apply_overrides, import_config_from_python_file
from fastgen.configs.experiments.Toy import config_dmd2
from fastgen.methods import DMD2Model
from fastgen.methods.fine_tuning.sft import sample_t_kwargs
from fastgen.trainer import Trainer
from fastgen.utils import instantiate
from fastgen.utils.gmm import make_gmm


def toy_config(**model):
    config = config_dmd2.create_config()
    config.model.fake_score_net.hidden_dim = 32
    config.model.net.hidden_dim = 32
    config.model.discriminator.hidden_dim = 16
    config.model.use_ema = False  # the method's mechanics; the Toy config's EMA only serves its 1-step samples
    for key, value in model.items():
        setattr(config.model, key, value)
    return config


def toy_batch(n=16, seed=1):
    real, _ = make_gmm("ring8").sample(n, torch.Generator().manual_seed(seed))
    return {"real": real.float(), "condition": torch.zeros(n, 0), "neg_condition": torch.zeros(n, 0)}


def build(config):
    torch.manual_seed(0)
    model = DMD2Model(config.model)
    model.on_train_begin()
    model.init_optimizers()
    return model


def grads_of(module):
    return [p.grad for p in module.parameters()]


def snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def zero_if_none(p):
    return torch.zeros_like(p) if p.grad is None else p.grad.clone()


def changed(module, before):
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


def test_alternation_steps_generator_every_freq_and_critics_otherwise():
    model = build(toy_config(student_update_freq=5))
    opt = model.optimizer_dict
    assert set(opt) == {"net", "fake_score", "discriminator"}
    for iteration in range(1, 11):
        active = model.get_optimizers(iteration)
        if iteration in (5, 10):
            assert active == [opt["net"]], iteration
            assert model.get_lr_schedulers(iteration) == [model.scheduler_dict["net"]]
        else:
            assert active == [opt["fake_score"], opt["discriminator"]], iteration
    # the real step: a critic iteration builds gradients for F and D only, a generator iteration for G only
    for iteration, updates_net in ((4, False), (5, True)):
        before = {name: snapshot(m) for name, m in model.model_dict.items()}
        loss_map, _ = model.single_train_step(toy_batch(), iteration)
        loss_map["total_loss"].backward()
        has_grad = {name: [g is not None for g in grads_of(m)] for name, m in model.model_dict.items()}
        # (a ToyMLP's logvar head is unused here, so "some" rather than "all" parameters get a gradient)
        if updates_net:
            assert any(has_grad["net"]) and not any(has_grad["fake_score"] + has_grad["discriminator"])
            assert set(loss_map) >= {"vsd_loss", "gan_loss_gen"}
        else:
            assert not any(has_grad["net"]) and any(has_grad["fake_score"]) and all(has_grad["discriminator"])
            assert set(loss_map) >= {"fake_score_loss", "gan_loss_disc"}
        model.optimizers_schedulers_step(iteration)
        model.optimizers_zero_grad(iteration)
        assert changed(model.net, before["net"]) == updates_net
        assert changed(model.fake_score, before["fake_score"]) == (not updates_net)
        assert changed(model.discriminator, before["discriminator"]) == (not updates_net)
    with pytest.raises(ValueError, match="student_update_freq"):
        model.config.student_update_freq = 0
        model.get_optimizers(1)


def test_no_discriminator_without_gan_and_fake_score_starts_as_teacher():
    model = build(toy_config(gan_loss_weight_gen=0.0))
    assert model.discriminator is None and set(model.optimizer_dict) == {"net", "fake_score"}
    assert set(model.model_dict) == {"net", "fake_score"}  # the teacher is never checkpointed
    # with the teacher's architecture (config.teacher = None -> net's config), F is a copy of the teacher
    config = toy_config(gan_loss_weight_gen=0.0, teacher=None, fake_score_net=None)
    config.model.net.hidden_dim = 16
    torch.manual_seed(3)
    same_arch = DMD2Model(config.model)
    for name, value in same_arch.teacher.state_dict().items():
        assert torch.equal(same_arch.fake_score.state_dict()[name], value)
    assert not any(p.requires_grad for p in same_arch.teacher.parameters())
    with pytest.raises(ValueError, match="gan_feature_source"):
        DMD2Model(toy_config(gan_feature_source="student").model)
    with pytest.raises(ValueError, match="needs model.discriminator"):
        DMD2Model(toy_config(discriminator=None).model)


def test_vsd_gradient_is_fake_minus_teacher_times_weight():
    model = build(toy_config(gan_loss_weight_gen=0.0))
    g = torch.Generator().manual_seed(2)
    gen = torch.randn(6, 2, generator=g).requires_grad_(True)
    t = torch.tensor([0.05, 0.2, 0.5, 1.0, 3.0, 10.0], dtype=torch.float64)
    eps = torch.randn(6, 2, generator=g)
    losses = model.generator_losses(gen, t, eps, torch.zeros(6, 0), torch.zeros(6, 0))
    losses["total_loss"].backward()
    x_t = (gen.detach().double() + t[:, None] * eps.double()).float()
    teacher_x0 = make_gmm("ring8").posterior_mean(x_t.double(), torch.ones(6, dtype=torch.float64), t).float()
    with torch.no_grad():
        fake_x0 = model.fake_score(x_t, t, fwd_pred_type="x0")
    weight = 1.0 / ((gen.detach() - teacher_x0).abs().mean(dim=1, keepdim=True) + 1e-6)
    expected = (fake_x0 - teacher_x0) * weight / gen.numel()
    torch.testing.assert_close(gen.grad, expected, atol=1e-6, rtol=1e-4)
    assert not torch.allclose(gen.grad, torch.zeros_like(gen.grad))
    assert all(p.grad is None for p in model.fake_score.parameters())  # F only scores, it is not trained here


def pair_batch(n=16, seed=3):
    g = torch.Generator().manual_seed(seed)
    noise, target = torch.randn(n, 2, generator=g), torch.randn(n, 2, generator=g)
    return {**toy_batch(n), "pair_noise": noise, "pair_real": target, "pair_condition": torch.zeros(n, 0)}


def expected_regression(model, batch):
    """0.5 MSE of the student's 1-step output from the pair noise (scaled to sigma_max) against the pair target."""
    schedule = model.net.noise_scheduler
    t = torch.full((batch["pair_noise"].shape[0],), float(schedule.max_t), dtype=torch.float64)
    with torch.no_grad():
        gen = model.net(batch["pair_noise"] * schedule.max_sigma, t, condition=batch["pair_condition"],
                        fwd_pred_type="x0")
    return 0.5 * ((gen - batch["pair_real"]) ** 2).mean()


def test_regression_term_adds_weighted_kd_loss_on_generator_steps_only():
    """DMD's regression loss: on a generator iteration total = (the step without it) + w * 0.5 MSE(G(z), y), and its
    gradient reaches only the generator; critic iterations are unchanged; missing pairs or w < 0 are errors."""
    batch = pair_batch()
    plain, weighted = build(toy_config(student_update_freq=2)), build(toy_config(student_update_freq=2,
                                                                                 regression_loss_weight=0.5))
    for iteration, generator in ((2, True), (3, False)):
        maps = []
        for model in (plain, weighted):
            torch.manual_seed(7)
            maps.append(model.single_train_step(batch, iteration)[0])
        if not generator:
            assert "regression_loss" not in maps[1]
            torch.testing.assert_close(maps[1]["total_loss"], maps[0]["total_loss"], rtol=0, atol=0)
            continue
        regression = maps[1]["regression_loss"]
        torch.testing.assert_close(regression, expected_regression(weighted, batch), rtol=1e-6, atol=1e-7)
        assert regression > 0
        torch.testing.assert_close(maps[1]["total_loss"], maps[0]["total_loss"] + 0.5 * regression, rtol=1e-6,
                                   atol=1e-7)
        maps[1]["total_loss"].backward()
        assert any(p.grad is not None for p in weighted.net.parameters())
        assert all(p.grad is None for p in weighted.fake_score.parameters())
    with pytest.raises(KeyError, match="pair_noise, pair_real missing"):
        weighted.single_train_step(toy_batch(), 2)
    with pytest.raises(ValueError, match="regression_loss_weight must be >= 0"):
        DMD2Model(toy_config(regression_loss_weight=-1.0).model)


def test_teacher_guidance_is_cfg_combination():
    config = toy_config(gan_loss_weight_gen=0.0, guidance_scale=3.0)
    config.model.teacher.label_dim = 8
    model = build(config)
    x_t = torch.randn(8, 2, generator=torch.Generator().manual_seed(4))
    t = torch.full((8,), 0.7, dtype=torch.float64)
    condition = torch.eye(8)
    neg = torch.zeros(8, 8)
    got = model.teacher_x0(x_t, t, condition, neg)
    gmm = make_gmm("ring8")
    ones = torch.ones(8, dtype=torch.float64)
    cond_x0 = gmm.posterior_mean(x_t.double(), ones, t, labels=condition.double()).float()
    uncond_x0 = gmm.posterior_mean(x_t.double(), ones, t).float()
    torch.testing.assert_close(got, cond_x0 + 2.0 * (cond_x0 - uncond_x0))


def test_critic_loss_is_dsm_plus_gan_plus_approximate_r1():
    model = build(toy_config(gan_r1_reg_weight=0.5, gan_r1_reg_alpha=0.1))
    data = toy_batch(12)
    torch.manual_seed(11)
    loss_map, outputs = model.single_train_step(data, 1)
    # replay the random draws of a critic step: z, (t, eps) for F, (t, eps) for real, the R1 perturbation
    torch.manual_seed(11)
    real, n = data["real"], 12
    z = torch.randn_like(real)
    t = model.schedule.sample_t(n, **sample_t_kwargs(model.config.sample_t_cfg))
    eps = torch.randn_like(real)
    t_real = model.schedule.sample_t(n, **sample_t_kwargs(model.config.sample_t_cfg))
    eps_real = torch.randn_like(real)
    perturbation = torch.randn_like(real)
    with torch.no_grad():
        gen = model.net(z * 80.0, torch.full((n,), 80.0, dtype=torch.float64), fwd_pred_type="x0")
        x_t = gen + t.float()[:, None] * eps
        dsm = F.mse_loss(model.fake_score(x_t, t), gen)
        x_real = real + t_real.float()[:, None] * eps_real

        def logits(x, tt):
            return model.discriminator(model.teacher(x, tt, feature_indices=[0], return_features_early=True))

        real_logits, fake_logits = logits(x_real, t_real), logits(x_t, t)
        gan = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
        r1 = F.mse_loss(real_logits, logits(x_real + 0.1 * perturbation, t_real))
    torch.testing.assert_close(loss_map["fake_score_loss"], dsm, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(loss_map["r1_loss"], r1, atol=1e-7, rtol=1e-4)
    torch.testing.assert_close(loss_map["total_loss"].detach(), dsm + gan + 0.5 * r1, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(outputs["gen_rand"], gen)
    assert torch.equal(outputs["input_rand"], z)


def test_fake_score_edm_weighting_weights_the_critic_dsm_per_noise_level():
    model = build(toy_config(gan_loss_weight_gen=0.0, fake_score_dsm_weighting="edm", fake_score_dsm_sigma_data=0.5))
    data = toy_batch(12)
    torch.manual_seed(3)
    loss_map, _ = model.single_train_step(data, 1)
    torch.manual_seed(3)  # replay: z, then (t, eps) for the fake score
    real, n = data["real"], 12
    z = torch.randn_like(real)
    t = model.schedule.sample_t(n, **sample_t_kwargs(model.config.sample_t_cfg))
    eps = torch.randn_like(real)
    with torch.no_grad():
        gen = model.net(z * 80.0, torch.full((n,), 80.0, dtype=torch.float64), fwd_pred_type="x0")
        x_t = gen + t.float()[:, None] * eps
        sigma = t.float()[:, None]
        weight = (sigma**2 + 0.25) / (sigma * 0.5) ** 2
        expected = (weight * (model.fake_score(x_t, t) - gen) ** 2).mean()
    torch.testing.assert_close(loss_map["fake_score_loss"], expected, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="fake_score_dsm_weighting"):
        build(toy_config(fake_score_dsm_weighting="p2"))


def critic_grads(source, **overrides):
    """(model, loss map, fake-score gradients) of one critic step of the toy DMD2 with the GAN on `source` features."""
    config = toy_config(gan_feature_source=source, **overrides)
    if source == "fake_score":
        config.model.discriminator = config_dmd2.toy_fake_score_discriminator(num_layers=3, width=32, hidden_dim=16)
    model = build(config)
    torch.manual_seed(5)
    loss_map, _ = model.single_train_step(toy_batch(), 1)
    loss_map["total_loss"].backward()
    return model, loss_map, [zero_if_none(p) for p in model.fake_score.parameters()]


def test_gan_feature_source_switch_feeds_fake_score_features():
    model_t, loss_t, grads_t = critic_grads("teacher")
    model_f, loss_f, grads_f = critic_grads("fake_score")
    # same seeds, same F init: the DSM part is identical, only the discriminator's input differs
    torch.testing.assert_close(loss_t["fake_score_loss"], loss_f["fake_score_loss"])
    assert model_f.discriminator.feature_indices == [2]
    # teacher source: F's gradient is the DSM gradient alone; fake-score source: the GAN loss also trains F
    data = toy_batch()
    for model, grads, gan_trains_f in ((model_t, grads_t, False), (model_f, grads_f, True)):
        torch.manual_seed(5)
        real = data["real"]
        z = torch.randn_like(real)
        t = model.schedule.sample_t(16, **sample_t_kwargs(model.config.sample_t_cfg))
        eps = torch.randn_like(real)
        with torch.no_grad():
            gen = model.net(z * 80.0, torch.full((16,), 80.0, dtype=torch.float64), fwd_pred_type="x0")
        dsm = F.mse_loss(model.fake_score(gen + t.float()[:, None] * eps, t), gen)
        dsm_grads = torch.autograd.grad(dsm, list(model.fake_score.parameters()), allow_unused=True,
                                        materialize_grads=True)
        same = all(torch.allclose(a, b, atol=1e-7) for a, b in zip(grads, dsm_grads))
        assert same != gan_trains_f


def test_critic_weights_the_discriminator_loss_by_feature_source():
    """w_D defaults to the DMD2 paper's 1e-2 on fake-score features (the GAN gradient also trains F) and 1 on teacher
    features; F's gradient is grad(DSM) + w_D grad(GAN), linear in w_D."""
    def critic(source, **weight):
        return critic_grads(source, **weight)[1:]

    for source, default in (("teacher", 1.0), ("fake_score", 1e-2)):
        loss, _ = critic(source)
        expected = loss["fake_score_loss"] + default * loss["gan_loss_disc"]
        torch.testing.assert_close(loss["total_loss"].detach(), expected, atol=1e-6, rtol=1e-6)
    loss, grads = critic("fake_score")
    _, grads_0 = critic("fake_score", gan_loss_weight_disc=0.0)
    loss_1, grads_1 = critic("fake_score", gan_loss_weight_disc=1.0)
    torch.testing.assert_close(loss_1["total_loss"].detach(), loss_1["fake_score_loss"] + loss_1["gan_loss_disc"])
    assert any(not torch.allclose(a, b) for a, b in zip(grads_1, grads_0))  # the GAN reaches F's encoder
    for g, g0, g1 in zip(grads, grads_0, grads_1):
        torch.testing.assert_close(g, g0 + 1e-2 * (g1 - g0), atol=1e-7, rtol=1e-4)
    with pytest.raises(ValueError, match="gan_loss_weight_disc"):
        build(toy_config(gan_loss_weight_disc=-1.0))


def test_multi_step_student_inputs_follow_t_list():
    config = toy_config(gan_loss_weight_gen=0.0, student_sample_steps=2)
    config.model.sample_t_cfg.t_list = [80.0, 1.0, 0.0]
    model = build(config)
    data = toy_batch(64)
    torch.manual_seed(8)
    x, t_student, z = model.student_input(data["real"])
    torch.manual_seed(8)
    z_ref = torch.randn_like(data["real"])
    ids = torch.randint(0, 2, (64,))
    t_ref = torch.tensor([80.0, 1.0], dtype=torch.float64)[ids]
    assert torch.equal(z, z_ref) and torch.equal(t_student, t_ref) and 0 < int(ids.sum()) < 64
    first = t_ref == 80.0
    torch.testing.assert_close(x[first], 80.0 * z_ref[first])  # pure noise at the first step, as at inference
    torch.testing.assert_close(x[~first], data["real"][~first] + z_ref[~first])  # data noised to t = 1
    _, outputs = model.single_train_step(data, 5)
    assert callable(outputs["gen_rand"])
    sample = outputs["gen_rand"](generator=torch.Generator().manual_seed(0))
    expected = model.generator_fn(model.net, outputs["input_rand"], student_sample_steps=2,
                                  generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(sample, expected)


def assert_equal_tree(a, b, where):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where} keys differ"
        for key in a:
            assert_equal_tree(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where} lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_equal_tree(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def run_toy(tmp_path, monkeypatch, max_iter, save_every, root):
    monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path / root))
    config = toy_config()
    config.trainer.callbacks = {}
    config.trainer.max_iter, config.trainer.save_ckpt_iter = max_iter, save_every
    config.dataloader_train.batch_size = 32
    torch.manual_seed(0)
    model = instantiate(config.model_class, config=config.model)
    Trainer(config).run(model)
    return config, model


def test_checkpoint_holds_critics_and_resume_mid_cycle_is_bit_identical(tmp_path, monkeypatch, one_thread):
    config, _ = run_toy(tmp_path, monkeypatch, 12, 100, "straight")
    straight = torch.load(f"{config.log_config.save_path}/checkpoints/0000012.pth", weights_only=True)
    assert set(straight["model"]) == {"net", "fake_score", "discriminator"}
    assert set(straight["optimizer"]) == {"net", "fake_score", "discriminator"}
    assert set(straight["scheduler"]) == {"net", "fake_score", "discriminator"}
    assert straight["optimizer"]["fake_score"]["state"] and straight["optimizer"]["discriminator"]["state"]
    # stop at 7 (two critic steps into the second freq-5 cycle), resume to 12
    run_toy(tmp_path, monkeypatch, 7, 7, "resumed")
    config, _ = run_toy(tmp_path, monkeypatch, 12, 100, "resumed")
    resumed = torch.load(f"{config.log_config.save_path}/checkpoints/0000012.pth", weights_only=True)
    for kind in ("model", "optimizer", "scheduler", "rng", "data"):
        assert_equal_tree(straight[kind], resumed[kind], kind)
    # the Adam step counts show the alternation: G stepped at 5 and 10, the critics at the 10 other iterations
    assert {v["step"].item() for v in resumed["optimizer"]["net"]["state"].values()} == {2.0}
    assert {v["step"].item() for v in resumed["optimizer"]["fake_score"]["state"].values()} == {10.0}


def test_toy_dmd2_moves_one_step_samples_to_the_mixture(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path))
    config = config_dmd2.create_config()
    # a test-sized budget: 400 iterations learn the modes (the config's 2000 + EMA sharpen them; benchmarks/oracle.py)
    config.trainer.max_iter = config.trainer.save_ckpt_iter = 400
    model, before, after, coverage = train_and_measure(config)
    assert after * 3.0 <= before
    assert coverage["mode_coverage"] >= 0.5


# ------------------------------------------------------------------------------------------ EDM recipes, tiny
def tiny_edm_zip(path, n=10, size=8):
    pixels = np.random.default_rng(0).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    names = [f"00000/img{i:08d}.png" for i in range(n)]
    with zipfile.ZipFile(path, "w") as archive:
        for name, image in zip(names, pixels):
            buffer = io.BytesIO()
            PIL.Image.fromarray(image).save(buffer, format="png")
            archive.writestr(name, buffer.getvalue())
        archive.writestr("dataset.json", json.dumps({"labels": [[name, i % 10] for i, name in enumerate(names)]}))
    return str(path)


EDM_SHRINK = {
    "EDM/config_dmd2_test.py": ["model.net.model_channels=16", "model.net.channel_mult=[1,2]",
                                "model.discriminator.all_res=[8,4]", "model.discriminator.in_channels=[16,32]",
                                "model.discriminator.feature_indices=[0,1]"],
    "EDM/config_dmd2_cifar10.py": ["model.net.model_channels=16", "model.net.channel_mult=[1,2]",
                                   "model.discriminator.all_res=[8,4]", "model.discriminator.in_channels=[16,32]",
                                   "model.discriminator.feature_indices=[0,1]"],
    "EDM/config_f_distill_cifar10.py": ["model.net.model_channels=16", "model.net.channel_mult=[1,2]",
                                        "model.discriminator.all_res=[8,4]", "model.discriminator.in_channels=[16,32]",
                                        "model.discriminator.feature_indices=[0,1]"],
    "EDM/config_dmd2_in64.py": ["model.net.model_channels=16", "model.net.channel_mult=[1,2]",
                                "model.net.num_blocks=1", "model.net.attn_resolutions=[4]", "model.net.label_dim=10",
                                "model.discriminator.all_res=[8,4]", "model.discriminator.in_channels=[16,32]",
                                "model.input_shape=[3,8,8]"],
}


@pytest.mark.slow
@pytest.mark.parametrize("config_file", sorted(EDM_SHRINK))
def test_edm_recipe_runs_two_trainer_iterations(config_file, tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path / "out"))
    config = import_config_from_python_file(f"fastgen/configs/experiments/{config_file}")
    zip_path = tiny_edm_zip(tmp_path / "tiny.zip")
    config = apply_overrides(config, EDM_SHRINK[config_file] + [
        "model.net.img_resolution=8", "model.device=cpu", "log_config.wandb_mode=disabled",
        f"dataloader_train.dataset_path={zip_path}", "dataloader_train.batch_size=2",
        "trainer.batch_size_global=null", "trainer.max_iter=2", "trainer.save_ckpt_iter=2",
        "model.student_update_freq=2",
    ])
    config.trainer.callbacks = {k: v for k, v in config.trainer.callbacks.items()
                                if k not in ("wandb", "gpu_stats", "train_profiler")}
    # the teacher file does not exist here: a clear error first, then a tiny random teacher saved by the test
    with pytest.raises(FileNotFoundError, match="pretrained weights file not found"):
        instantiate(config.model_class, config=config.model)
    teacher_path = tmp_path / "teacher.pth"
    torch.manual_seed(1)
    torch.save(instantiate(config.model.net).state_dict(), teacher_path)
    config.model.pretrained_model_path = str(teacher_path)
    torch.manual_seed(0)
    model = instantiate(config.model_class, config=config.model)
    for name, value in torch.load(teacher_path, weights_only=True).items():  # student and F start as the teacher
        assert torch.equal(model.net.state_dict()[name], value) and torch.equal(model.fake_score.state_dict()[name],
                                                                                   value)
    before = {name: snapshot(m) for name, m in model.model_dict.items() if not name.startswith("ema")}
    Trainer(config).run(model)
    assert changed(model.net, before["net"]) and changed(model.fake_score, before["fake_score"])
    assert changed(model.discriminator, before["discriminator"])
    saved = torch.load(f"{config.log_config.save_path}/checkpoints/0000002.pth", weights_only=True)
    assert {"net", "fake_score", "discriminator"} <= set(saved["model"]) and "teacher" not in saved["model"]
    assert all(torch.isfinite(p).all() for p in model.net.parameters())
