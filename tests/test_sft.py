"""SFT: the DSM loss equals its formula, condition dropout, multi-step CFG sampling, and real training on the toy
Gaussian mixture lowers the loss and moves 35-step Heun samples towards the data (sliced Wasserstein)."""

import pytest
import torch

from fastgen.configs.experiments.Toy import config_sft
from fastgen.methods import SFTModel
from fastgen.methods.fine_tuning.sft import drop_condition, sample_t_kwargs
from fastgen.trainer import Trainer
from fastgen.utils import instantiate
from fastgen.utils.gmm import make_gmm, sliced_wasserstein


def small_config(**model):
    config = config_sft.create_config()
    config.model.net.hidden_dim, config.model.net.num_layers = 32, 1
    for key, value in model.items():
        setattr(config.model, key, value)
    return config


def randomize(net, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))


def step_and_replay(config):
    """One SFT step on a fixed batch, then its draws replayed: (loss_map, outputs, real, eps, sigma [B, 1], pred)."""
    model = SFTModel(config.model)
    randomize(model.net)
    real = torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    data = {"real": real, "condition": torch.zeros(16, 0), "neg_condition": torch.zeros(16, 0)}
    torch.manual_seed(7)
    loss_map, outputs = model.single_train_step(data, 1)
    torch.manual_seed(7)  # replay the draws: t ~ lognormal(-1.2, 1.2) truncated, then eps
    t = model.net.noise_scheduler.sample_t(16, **sample_t_kwargs(config.model.sample_t_cfg))
    eps = torch.randn_like(real)
    sigma = t.float()[:, None]  # EDM: alpha = 1, sigma = t
    with torch.no_grad():
        pred = model.net(real + sigma * eps, t)
    return loss_map, outputs, real, eps, sigma, pred


@pytest.mark.parametrize("pred_type", ["x0", "eps", "v"])
def test_dsm_loss_equals_formula(pred_type):
    config = small_config()
    config.model.net.net_pred_type = pred_type
    loss_map, outputs, real, eps, sigma, pred = step_and_replay(config)
    target = {"x0": real, "eps": eps, "v": eps - sigma * real}[pred_type]
    expected = ((pred - target) ** 2).mean()
    torch.testing.assert_close(loss_map["total_loss"].detach(), expected, atol=1e-5, rtol=1e-5)
    assert loss_map["dsm_loss"] == loss_map["total_loss"].detach()
    assert loss_map["total_loss"].requires_grad and callable(outputs["gen_rand"])


def test_edm_weighted_dsm_loss_equals_formula_and_bad_weighting_fails_before_building():
    loss_map, _, real, _, sigma, pred = step_and_replay(small_config(dsm_weighting="edm", dsm_sigma_data=0.7))
    weight = (sigma**2 + 0.49) / (sigma * 0.7) ** 2
    torch.testing.assert_close(loss_map["total_loss"].detach(), (weight * (pred - real) ** 2).mean(), rtol=1e-5,
                               atol=1e-5)
    with pytest.raises(ValueError, match="model.dsm_weighting must be one of"):
        SFTModel(small_config(dsm_weighting="min_snr").model)


def test_condition_dropout():
    cond = torch.eye(4)[torch.tensor([0, 1, 2, 3, 0, 1])]
    neg = torch.zeros_like(cond)
    assert torch.equal(drop_condition(cond, neg, None), cond)
    assert torch.equal(drop_condition(cond, neg, 1.0), neg)
    g = torch.Generator().manual_seed(0)
    dropped = drop_condition(cond, neg, 0.5, generator=g)
    mask = torch.rand(6, generator=torch.Generator().manual_seed(0)) < 0.5
    assert 0 < int(mask.sum()) < 6
    assert torch.equal(dropped, torch.where(mask[:, None], neg, cond))
    # dict conditions: one shared mask; kept keys never dropped; missing negative -> zeros
    dict_cond = {"text": cond * 2, "image": cond * 3, "size": cond * 4}
    out = drop_condition(dict_cond, {"text": neg - 1}, 0.5, keys_no_dropout=["size"],
                         generator=torch.Generator().manual_seed(0))
    assert torch.equal(out["text"], torch.where(mask[:, None], neg - 1, cond * 2))
    assert torch.equal(out["image"], torch.where(mask[:, None], neg, cond * 3))
    assert torch.equal(out["size"], cond * 4)
    with pytest.raises(ValueError, match="cond_dropout_prob"):
        drop_condition(cond, neg, 1.5)


def test_generator_fn_is_multistep_sampling_with_cfg():
    config = small_config(guidance_scale=2.0)
    config.model.net.label_dim = 8
    model = SFTModel(config.model)
    randomize(model.net)
    noise = torch.randn(6, 2, generator=torch.Generator().manual_seed(3))
    cond = torch.eye(8)[:6]
    out = model.generator_fn(model.net, noise, condition=cond, neg_condition=torch.zeros_like(cond),
                             student_sample_steps=7)
    expected = model.net.sample(noise, condition=cond, neg_condition=torch.zeros_like(cond), guidance_scale=2.0,
                                num_steps=7)
    torch.testing.assert_close(out, expected)
    unguided = model.generator_fn(model.net, noise, condition=cond, student_sample_steps=7, guidance_scale=1.0)
    assert not torch.allclose(out, unguided)  # the guidance really changes the samples


def eval_dsm(model, data, seed=0, repeats=8):
    torch.manual_seed(seed)
    with torch.no_grad():
        losses = [model.single_train_step({"real": data, "condition": torch.zeros(len(data), 0)}, 0)[0]["dsm_loss"]
                  for _ in range(repeats)]
    return float(torch.stack(losses).mean())


def heun_sw(model, data):
    noise = torch.randn(1000, 2, generator=torch.Generator().manual_seed(5))
    samples = model.generator_fn(model.net, noise, student_sample_steps=35)
    return sliced_wasserstein(samples, data, generator=torch.Generator().manual_seed(6))


@pytest.mark.slow
def test_sft_training_on_toy_gmm_improves_loss_and_samples(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path))
    config = small_config()
    config.trainer.callbacks = {}
    config.trainer.max_iter = 300
    config.trainer.logging_iter = 100
    config.dataloader_train.batch_size = 128
    config.model.net_optimizer.lr = 3e-3
    torch.manual_seed(0)
    model = instantiate(config.model_class, config=config.model)
    data, _ = make_gmm("ring8").sample(2000, torch.Generator().manual_seed(11))
    data = data.float()
    loss_before, sw_before = eval_dsm(model, data), heun_sw(model, data)
    Trainer(config).run(model)
    loss_after, sw_after = eval_dsm(model, data), heun_sw(model, data)
    print(f"dsm {loss_before:.4f} -> {loss_after:.4f}, sliced W2 {sw_before:.4f} -> {sw_after:.4f}")
    assert loss_after < 0.85 * loss_before, (loss_before, loss_after)
    assert sw_after < 0.6 * sw_before, (sw_before, sw_after)
