"""LADD: the generator loss replayed by hand (non-saturating GAN on teacher features of the re-noised sample), the
discriminator / generator alternation with requires_grad switching, checkpoint contents, and training on the exact
Gaussian-mixture teacher."""

import pytest
import torch
import torch.nn.functional as F
from _toy_oracle import train_and_measure

from fastgen.configs.experiments.Toy import config_ladd
from fastgen.methods import LADDModel
from fastgen.methods.fine_tuning.sft import sample_t_kwargs
from fastgen.utils.gmm import make_gmm


def build(**model):
    config = config_ladd.create_config()
    config.model.net.hidden_dim = 32
    config.model.discriminator.hidden_dim = 16
    config.model.use_ema = False  # the method's mechanics; the Toy config's EMA only serves its 1-step samples
    for key, value in model.items():
        setattr(config.model, key, value)
    torch.manual_seed(0)
    m = LADDModel(config.model)
    m.on_train_begin()
    m.init_optimizers()
    return m


def batch(n=16):
    real, _ = make_gmm("ring8").sample(n, torch.Generator().manual_seed(1))
    return {"real": real.float(), "condition": torch.zeros(n, 0)}


def test_generator_loss_is_non_saturating_gan_on_teacher_features():
    model = build(student_update_freq=4)
    data = batch()
    torch.manual_seed(3)
    loss_map, outputs = model.single_train_step(data, 4)
    torch.manual_seed(3)
    z = torch.randn_like(data["real"])
    t = model.schedule.sample_t(16, **sample_t_kwargs(model.config.sample_t_cfg))
    eps = torch.randn_like(z)
    with torch.no_grad():
        gen = model.net(80.0 * z, torch.full((16,), 80.0, dtype=torch.float64), fwd_pred_type="x0")
        x_t = gen + t.float()[:, None] * eps
        features = [torch.cat([x_t, make_gmm("ring8").posterior_mean(x_t.double(), torch.ones(16).double(), t).float()],
                              dim=1)]
        expected = F.softplus(-model.discriminator(features)).mean()
    torch.testing.assert_close(loss_map["total_loss"].detach(), expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(outputs["gen_rand"], gen)
    assert "fake_score" not in model.model_dict and set(model.optimizer_dict) == {"net", "discriminator"}


def test_alternation_updates_only_the_active_network():
    model = build(student_update_freq=4)
    assert [len(model.get_optimizers(i)) for i in range(1, 9)] == [1] * 8
    assert [model.get_optimizers(i)[0] is model.optimizer_dict["net"] for i in range(1, 9)] == \
        [False, False, False, True, False, False, False, True]
    for iteration, generator_step in ((3, False), (4, True)):
        net_before = [p.detach().clone() for p in model.net.parameters()]
        disc_before = [p.detach().clone() for p in model.discriminator.parameters()]
        loss_map, _ = model.single_train_step(batch(), iteration)
        loss_map["total_loss"].backward()
        assert any(p.grad is not None for p in model.net.parameters()) == generator_step
        assert any(p.grad is not None for p in model.discriminator.parameters()) == (not generator_step)
        assert ("r1_loss" in loss_map) == (not generator_step)  # R1 is on in the toy config (weight 0.1)
        model.optimizers_schedulers_step(iteration)
        model.optimizers_zero_grad(iteration)
        net_moved = any(not torch.equal(a, b) for a, b in zip(net_before, model.net.parameters()))
        disc_moved = any(not torch.equal(a, b) for a, b in zip(disc_before, model.discriminator.parameters()))
        assert (net_moved, disc_moved) == (generator_step, not generator_step)
    with pytest.raises(ValueError, match="model.discriminator"):
        build(discriminator=None)


def test_toy_ladd_moves_one_step_samples_to_the_mixture(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path))
    config = config_ladd.create_config()
    # a test-sized budget: 600 iterations learn the modes (the config's 4000 + EMA sharpen them; benchmarks/oracle.py)
    config.trainer.max_iter = config.trainer.save_ckpt_iter = 600
    model, before, after, coverage = train_and_measure(config)
    assert after * 3.0 <= before
    saved = torch.load(f"{config.log_config.save_path}/checkpoints/{config.trainer.max_iter:07d}.pth",
                       weights_only=True)
    assert set(saved["model"]) == {"net", "ema", "discriminator"}  # the EMA (the 1-step sampler's net) is kept
    assert set(saved["optimizer"]) == {"net", "discriminator"}
