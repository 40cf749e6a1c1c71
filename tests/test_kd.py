"""KD: loss formula (1-step and multi-step from teacher paths), toy teacher pairs, and training toward the teacher."""

import pytest
import torch

from fastgen.configs.experiments.Toy import config_kd
from fastgen.methods import KDModel
from fastgen.methods.knowledge_distillation.kd import path_inputs
from fastgen.trainer import Trainer
from fastgen.utils import instantiate
from fastgen.utils.gmm import make_gmm, mode_coverage, sliced_wasserstein


def small_config(tmp_path, **model):
    config = config_kd.create_config()
    config.model.net.hidden_dim, config.model.net.num_layers = 32, 1
    config.dataloader_train.path = str(tmp_path / "pairs.safetensors")
    config.dataloader_train.num_pairs = 512
    for key, value in model.items():
        setattr(config.model, key, value)
    return config


def randomize(net):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))


def test_one_step_kd_loss_equals_formula(tmp_path):
    model = KDModel(small_config(tmp_path).model)
    randomize(model.net)
    g = torch.Generator().manual_seed(1)
    noise, real = torch.randn(8, 2, generator=g), torch.randn(8, 2, generator=g)
    loss_map, outputs = model.single_train_step({"noise": noise, "real": real, "condition": torch.zeros(8, 0)}, 1)
    with torch.no_grad():
        gen = model.net(noise * 80.0, torch.full((8,), 80.0, dtype=torch.float64), fwd_pred_type="x0")
    torch.testing.assert_close(loss_map["total_loss"].detach(), 0.5 * ((gen - real) ** 2).mean())
    torch.testing.assert_close(outputs["gen_rand"], gen)
    assert torch.equal(outputs["input_rand"], noise)


def test_multi_step_kd_uses_the_teacher_path(tmp_path):
    t_list = [80.0, 2.0, 0.5, 0.0]
    model = KDModel(small_config(tmp_path, student_sample_steps=3).model)
    model.config.sample_t_cfg.t_list = t_list
    randomize(model.net)
    g = torch.Generator().manual_seed(2)
    path = torch.randn(6, 4, 2, generator=g)  # states at t_list (the last is the sample)
    real = path[:, -1]
    torch.manual_seed(5)
    loss_map, outputs = model.single_train_step({"path": path, "real": real, "noise": path[:, 0] / 80}, 1)
    torch.manual_seed(5)
    ids = torch.randint(0, 3, (6,))
    x = path[torch.arange(6), ids]
    t = torch.tensor(t_list, dtype=torch.float64)[ids]
    with torch.no_grad():
        gen = model.net(x, t, fwd_pred_type="x0")
    torch.testing.assert_close(loss_map["total_loss"].detach(), 0.5 * ((gen - real) ** 2).mean())
    assert callable(outputs["gen_rand"])
    # a path recorded on a finer grid is subsampled: 7 states serve a 3-step student with stride 2
    fine = torch.randn(2, 7, 2)
    x_fine, t_fine = path_inputs(fine, torch.tensor(t_list, dtype=torch.float64), torch.tensor([1, 2]))
    assert torch.equal(x_fine, fine[torch.arange(2), torch.tensor([2, 4])])
    assert t_fine.tolist() == [2.0, 0.5]
    with pytest.raises(ValueError, match="multiple of student_sample_steps"):
        path_inputs(torch.randn(2, 6, 2), torch.tensor(t_list, dtype=torch.float64), torch.tensor([0, 1]))
    with pytest.raises(KeyError, match="needs teacher trajectories"):
        model.single_train_step({"real": real, "noise": path[:, 0]}, 1)


def test_toy_teacher_pairs_are_exact_teacher_samples(tmp_path):
    path = tmp_path / "pairs.safetensors"
    config_kd.generate_toy_teacher_pairs(str(path), num_pairs=2000, t_list=[80.0, 1.0, 0.0])
    from fastgen.datasets.kd_dataset import load_shard

    shard = load_shard(str(path))
    assert shard["path"].shape == (2000, 3, 2)
    torch.testing.assert_close(shard["path"][:, 0], shard["noise"] * 80.0)
    assert torch.equal(shard["path"][:, -1], shard["real"])
    data, _ = make_gmm("ring8").sample(2000, torch.Generator().manual_seed(1))
    # two independent 2000-sample data sets are ~0.08 apart in this metric
    assert sliced_wasserstein(shard["real"], data, generator=torch.Generator().manual_seed(2)) < 0.15
    coverage = mode_coverage(shard["real"], make_gmm("ring8"))
    assert coverage["mode_coverage"] == 1.0 and coverage["near_mode_fraction"] > 0.95
    # the PF-ODE preserves marginals: the middle state (t = 1) is distributed as data + 1.0 * N(0, I)
    noisy = data + torch.randn(data.shape, generator=torch.Generator().manual_seed(3), dtype=data.dtype)
    assert sliced_wasserstein(shard["path"][:, 1], noisy, generator=torch.Generator().manual_seed(2)) < 0.15


@pytest.mark.slow
def test_kd_training_moves_one_step_samples_toward_the_data(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path))
    config = small_config(tmp_path)
    config.trainer.callbacks = {}
    config.trainer.max_iter = 200
    config.model.net_optimizer.lr = 3e-3
    torch.manual_seed(0)
    model = instantiate(config.model_class, config=config.model)
    noise = torch.randn(1000, 2, generator=torch.Generator().manual_seed(3))
    data, _ = make_gmm("ring8").sample(2000, torch.Generator().manual_seed(4))
    sw_before = sliced_wasserstein(model.generator_fn(model.net, noise), data, generator=torch.Generator().manual_seed(5))
    Trainer(config).run(model)
    sw_after = sliced_wasserstein(model.generator_fn(model.net, noise), data, generator=torch.Generator().manual_seed(5))
    print(f"1-step KD sliced W2 {sw_before:.4f} -> {sw_after:.4f}")
    assert sw_after < 0.7 * sw_before
