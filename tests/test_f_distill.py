"""f-distill: the f-divergence weights, the density ratio from discriminator logits, per-time-bin ratio
normalisation (EMA, all-reduced over 2 real gloo ranks), the weighted VSD gradient, checkpointing of the ratio
statistics, and training on the exact Gaussian-mixture teacher."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from _toy_oracle import train_and_measure

from fastgen.configs.experiments.Toy import config_f_distill
from fastgen.methods import FdistillModel
from fastgen.methods.distribution_matching.f_distill import (
    F_DIVERGENCES,
    RatioNormalizer,
    density_ratio,
    f_divergence_weight,
    time_bin_index,
)
from fastgen.trainer import Trainer
from fastgen.utils import instantiate
from fastgen.utils.distributed.launch import free_port
from fastgen.utils.gmm import make_gmm


def toy_config(**model):
    config = config_f_distill.create_config()
    config.model.net.hidden_dim = config.model.fake_score_net.hidden_dim = 32
    config.model.discriminator.hidden_dim = 16
    config.model.use_ema = False  # the method's mechanics; the Toy config's EMA only serves its 1-step samples
    for key, value in model.items():
        setattr(config.model, key, value)
    return config


def test_f_divergence_weights_are_r_squared_f_second_derivative():
    r = torch.tensor([0.25, 1.0, 4.0])
    expected = {
        "rkl": [1.0, 1.0, 1.0],
        "kl": [0.25, 1.0, 4.0],
        "js": [0.2, 0.5, 0.8],
        "sf": [0.8, 0.5, 0.2],
        "neyman": [4.0, 1.0, 0.25],
        "sh": [0.5, 1.0, 2.0],
        "jf": [1.25, 2.0, 5.0],
    }
    assert set(expected) == set(F_DIVERGENCES)
    for name, values in expected.items():
        torch.testing.assert_close(f_divergence_weight(r, name), torch.tensor(values), msg=name)
    # r^2 f''(r) from the generators f themselves (finite differences), up to each family's constant
    generators = {"kl": lambda x: x * x.log(), "js": lambda x: x * x.log() - (1 + x) * ((1 + x) / 2).log(),
                  "jf": lambda x: (x - 1) * x.log(), "neyman": lambda x: (1 - x) ** 2 / x}
    constants = {"kl": 1.0, "js": 1.0, "jf": 1.0, "neyman": 2.0}
    rd, h = r.double(), 1e-4
    for name, f in generators.items():
        second = (f(rd + h) - 2 * f(rd) + f(rd - h)) / h**2
        torch.testing.assert_close(rd**2 * second, constants[name] * f_divergence_weight(rd, name), rtol=1e-5,
                                   atol=1e-6)
    with pytest.raises(ValueError, match="f_div='tv'"):
        f_divergence_weight(r, "tv")


def test_density_ratio_from_logits_and_time_bins():
    logits = torch.tensor([[0.0, 0.0], [1.0, 3.0], [-30.0, -30.0], [30.0, 10.0]])
    torch.testing.assert_close(density_ratio(logits, 0.1, 20.0),
                               torch.tensor([1.0, float(torch.exp(torch.tensor(2.0))), 0.1, 20.0]))
    t = torch.tensor([0.0, 0.99, 1.0, 5.5, 10.0], dtype=torch.float64)
    assert time_bin_index(t, 0.0, 10.0, 10).tolist() == [0, 0, 1, 5, 9]


def test_ratio_normalizer_ema_per_bin():
    norm = RatioNormalizer(bin_num=4, min_t=0.0, max_t=4.0, ema_rate=0.5)
    ratio = torch.tensor([2.0, 4.0, 8.0, 1.0])
    t = torch.tensor([0.5, 0.7, 2.5, 2.9], dtype=torch.float64)
    out = norm(ratio, t)
    # bin 0: mean 3 -> 0.5*1 + 0.5*3 = 2; bin 2: mean 4.5 -> 2.75; bins 1, 3 unseen keep 1
    torch.testing.assert_close(norm.bins, torch.tensor([2.0, 1.0, 2.75, 1.0], dtype=torch.float64))
    torch.testing.assert_close(out, torch.tensor([1.0, 2.0, 8.0 / 2.75, 1.0 / 2.75]))
    norm(torch.tensor([6.0]), torch.tensor([0.1], dtype=torch.float64))
    torch.testing.assert_close(norm.bins[0], torch.tensor(4.0, dtype=torch.float64))
    # reading without updating (validation)
    torch.testing.assert_close(norm(torch.tensor([8.0]), torch.tensor([0.1], dtype=torch.float64), update=False),
                               torch.tensor([2.0]))
    torch.testing.assert_close(norm.bins[0], torch.tensor(4.0, dtype=torch.float64))


def _rank_worker(rank, port, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        norm = RatioNormalizer(bin_num=2, min_t=0.0, max_t=2.0, ema_rate=0.0)
        # rank 0 sees bin 0 only; rank 1 sees both bins
        ratio = torch.tensor([1.0, 3.0]) if rank == 0 else torch.tensor([5.0, 2.0])
        t = torch.tensor([0.2, 0.4], dtype=torch.float64) if rank == 0 else torch.tensor([0.6, 1.5], dtype=torch.float64)
        norm(ratio, t)
        from fastgen.methods.distribution_matching.f_distill import global_mean

        results[rank] = (norm.bins.tolist(), float(global_mean(ratio)))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ratio_statistics_are_reduced_across_ranks():
    manager = mp.Manager()
    results = manager.dict()
    mp.start_processes(_rank_worker, args=(free_port(), results), nprocs=2, start_method="spawn")
    # bin 0 holds 1, 3, 5 from both ranks -> 3; bin 1 holds 2 -> 2; global mean of all four ratios = 2.75
    assert results[0] == results[1] == ([3.0, 2.0], 2.75)


def test_weighted_vsd_gradient_and_checkpointed_bins():
    config = toy_config(f_distill=None)
    config.model.f_distill = config_f_distill.config_f_distill.FdistillConfig(f_div="kl", ratio_normalization=True,
                                                                            bin_num=4, ratio_ema_rate=0.0)
    torch.manual_seed(0)
    model = FdistillModel(config.model)
    model.on_train_begin()
    model.init_optimizers()
    assert set(model.model_dict) == {"net", "fake_score", "discriminator", "ratio_normalizer"}
    g = torch.Generator().manual_seed(2)
    gen = torch.randn(6, 2, generator=g).requires_grad_(True)
    t = torch.tensor([0.01, 0.03, 5.0, 10.0, 65.0, 79.0], dtype=torch.float64)  # bins 0, 0, 0, 0, 3, 3
    eps = torch.randn(6, 2, generator=g)
    losses = model.generator_losses(gen, t, eps, torch.zeros(6, 0), torch.zeros(6, 0))
    x_t = (gen.detach().double() + t[:, None] * eps.double()).float()
    gan_grad = torch.autograd.grad(0.01 * losses["gan_loss_gen"], gen, retain_graph=True)[0]
    with torch.no_grad():
        feats = model.teacher(x_t, t, feature_indices=[0], return_features_early=True)
        ratio = model.discriminator(feats).mean(1).clamp(-10, 10).exp().clamp(0.1, 20.0)
        bins = model.ratio_normalizer.bins
        idx = time_bin_index(t, 0.002, 80.0, 4)
        normalized = ratio / bins[idx].float()
        h = normalized / normalized.mean()  # KL: h = r
        teacher_x0 = make_gmm("ring8").posterior_mean(x_t.double(), torch.ones(6, dtype=torch.float64), t).float()
        fake_x0 = model.fake_score(x_t, t, fwd_pred_type="x0")
    # bins 0 and 3 saw samples: with ema_rate 0 they hold that bin's batch-mean ratio; bins 1, 2 kept 1
    torch.testing.assert_close(bins[1:3], torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(bins[[0, 3]].float(), torch.stack([ratio[:4].mean(), ratio[4:].mean()]))
    losses["total_loss"].backward()
    weight = 1.0 / ((gen.detach() - teacher_x0).abs().mean(1, keepdim=True) + 1e-6)
    expected = (fake_x0 - teacher_x0) * weight * h[:, None] / gen.numel() + gan_grad
    torch.testing.assert_close(gen.grad, expected, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(losses["avg_h"], torch.tensor(1.0))
    with pytest.raises(ValueError, match="gan_loss_weight_gen > 0"):
        FdistillModel(toy_config(gan_loss_weight_gen=0.0).model)


def test_toy_f_distill_moves_one_step_samples_to_the_mixture(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path))
    config = config_f_distill.create_config()
    # a test-sized budget: 400 iterations learn the modes (the config's 2000 + EMA sharpen them; benchmarks/oracle.py)
    config.trainer.max_iter = config.trainer.save_ckpt_iter = 400
    model, before, after, coverage = train_and_measure(config)
    assert after * 3.0 <= before
    assert coverage["mode_coverage"] >= 0.5
    saved = torch.load(f"{config.log_config.save_path}/checkpoints/{config.trainer.max_iter:07d}.pth",
                       weights_only=True)
    torch.testing.assert_close(saved["model"]["ratio_normalizer"]["bins"], model.ratio_normalizer.bins)
    assert not torch.equal(model.ratio_normalizer.bins, torch.ones_like(model.ratio_normalizer.bins))


def _ddp_worker(rank, out_dir):
    os.environ["FASTGEN_OUTPUT_ROOT"] = out_dir
    torch.set_num_threads(1)
    config = toy_config()
    config.model.device = "cpu"
    config.trainer.ddp = True
    config.trainer.callbacks = {}
    config.trainer.max_iter = config.trainer.save_ckpt_iter = 6  # generator step at 5, critic steps otherwise
    config.dataloader_train.batch_size = 16
    torch.manual_seed(1234 + rank)  # different initial weights per rank: DDP must start everyone from rank 0's
    model = instantiate(config.model_class, config=config.model)
    init = {name: [p.detach().clone() for p in m.parameters()] for name, m in model.model_dict.items()}
    Trainer(config).run(model)
    state = {name: {k: v.detach().clone() for k, v in m.state_dict().items()} for name, m in model.model_dict.items()}
    moved = {name: any(not torch.equal(a, b) for a, b in zip(init[name], m.parameters()))
             for name, m in model.model_dict.items() if name != "ratio_normalizer"}
    torch.save({"state": state, "moved": moved}, os.path.join(out_dir, f"rank{rank}.pt"))


@pytest.mark.slow
def test_ddp_training_on_two_ranks_keeps_every_network_identical(tmp_path):
    from fastgen.utils.distributed.launch import spawn_local

    spawn_local(_ddp_worker, 2, args=(str(tmp_path),))
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["moved"] == {"net": True, "fake_score": True, "discriminator": True}
    for name, state in r0["state"].items():
        for key, value in state.items():
            assert torch.equal(value, r1["state"][name][key]), f"{name}.{key} differs between ranks"
    bins = r0["state"]["ratio_normalizer"]["bins"]
    assert not torch.equal(bins, torch.ones_like(bins))  # the generator step at 5 updated the ratio statistics
