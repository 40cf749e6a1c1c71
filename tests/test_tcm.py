"""TCM: routing by time between student and frozen stage-1 model, the boundary-weighted loss recomputed from its
formula, the stage-1 checkpoint loaded through the key map (cm_teacher frozen, never checkpointed), two-stage
training on the exact Gaussian-mixture oracle, and the EDM TCM recipe at a tiny size."""

import os

import pytest
import torch
from test_cm import run_recipe_tiny, swd, train_toy

from fastgen.configs.experiments.Toy import config_cm, config_tcm
from fastgen.configs.methods import config_tcm as method_config_tcm
from fastgen.methods import TCMModel
from fastgen.methods.consistency_model.tcm import route_by_time
from fastgen.methods.fine_tuning.sft import sample_t_kwargs


def small_config():
    config = config_tcm.create_config()
    config.model.net.hidden_dim, config.model.net.num_layers = 32, 1
    return config


def test_method_config_defaults():
    config = method_config_tcm.create_config()
    m = config.model
    assert (m.transition_t, m.boundary_prob, m.w_boundary) == (1.0, 0.25, 0.1)
    assert (m.sample_t_cfg.time_dist_type, m.sample_t_cfg.train_p_mean, m.sample_t_cfg.train_p_std) == ("log_t", 0.0,
                                                                                                         0.2)
    assert m.sample_t_cfg.min_t == 1.0 and config.trainer.callbacks.ct_schedule.kimg_per_stage == 1000
    assert dict(config.trainer.checkpointer.pretrained_ckpt_key_map) == {"cm_teacher": "ema", "net": "ema",
                                                                         "ema": "ema"}


def test_toy_tcm_reads_time_like_the_stage1_cm_it_loads():
    # stage 2 loads the stage-1 CM's weights: a different time input would silently reinterpret them
    cm, tcm = config_cm.create_config().model.net, config_tcm.create_config().model.net
    assert (cm.time_label, cm.max_time_freq) == ("trigflow", 1.0)
    assert (tcm.time_label, tcm.max_time_freq) == (cm.time_label, cm.max_time_freq)


def test_route_by_time_sends_each_sample_to_its_network():
    x = torch.ones(4, 3)
    t = torch.tensor([1.0, 1.5, 2.5, 3.0], dtype=torch.float64)
    out = route_by_time(lambda x, t: x * 2.0, lambda x, t: x * 0.5, x, t, transition_t=2.0)
    torch.testing.assert_close(out, torch.tensor([0.5, 0.5, 2.0, 2.0])[:, None].expand(4, 3))
    assert torch.equal(route_by_time(lambda x, t: x + 1, lambda x, t: x - 1, x, t, 0.5), x + 1)



def test_route_by_time_student_dropout_matches_between_t_and_r_passes():
    # the trained pass at t (all samples above the transition) and the no-grad target pass at r (some below it)
    # replay one RNG state, as CMModel.consistency_outputs does: each student sample must see the same dropout mask
    from fastgen.methods.consistency_model.jvp import capture_rng, replay_rng

    torch.manual_seed(0)
    x = torch.ones(6, 32)

    def student(x_s, t_s):
        return torch.nn.functional.dropout(x_s, p=0.4, training=True)

    t = torch.full((6,), 3.0, dtype=torch.float64)
    r = torch.tensor([0.5, 2.5, 1.0, 2.2, 0.1, 2.9], dtype=torch.float64)
    rng = capture_rng("cpu")
    d_t = route_by_time(student, lambda x_s, t_s: x_s * 0 - 7.0, x, t, transition_t=2.0)
    with replay_rng(rng):
        d_r = route_by_time(student, lambda x_s, t_s: x_s * 0 - 7.0, x, r, transition_t=2.0)
    above = r >= 2.0
    assert torch.equal(d_r[above], d_t[above])  # same masks for the samples the student takes in both passes
    assert torch.equal(d_r[~above], torch.full((3, 32), -7.0))
    assert 0 < int((d_t == 0).sum()) < d_t.numel()  # dropout really dropped something

def test_tcm_loss_equals_formula():
    config = small_config()
    model = TCMModel(config.model)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # different student and stage-1 weights, so the routing matters
        for p, q in zip(model.net.parameters(), model.cm_teacher.parameters()):
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
            q.copy_(0.3 * torch.randn(q.shape, generator=g))
    assert "cm_teacher" not in model.model_dict and "cm_teacher" in model.fsdp_dict
    assert not any(p.requires_grad for p in model.cm_teacher.parameters())
    model.ratio = 0.75
    real = torch.randn(32, 2, generator=torch.Generator().manual_seed(1))
    data = {"real": real, "condition": torch.zeros(32, 0)}
    torch.manual_seed(3)
    loss_map, _ = model.single_train_step(data, 1)
    torch.manual_seed(3)
    t = model.net.noise_scheduler.sample_t(32, **sample_t_kwargs(config.model.sample_t_cfg))
    boundary = torch.rand(32) < 0.25
    t = torch.where(boundary, torch.full_like(t, 1.0 + 1e-8), t)
    r = (t - t * 0.25 * (1 + 8 * torch.sigmoid(-t))).clamp(min=0)
    eps = torch.randn_like(real)
    assert (t >= 1.0).all() and boundary.any() and (r < 1.0).any()
    with torch.no_grad():
        d_t = model.net(real + t.float()[:, None] * eps, t)
        y_r = real + r.float()[:, None] * eps
        d_r = torch.where((r >= 1.0)[:, None], model.net(y_r, r), model.cm_teacher(y_r, r))
        d_r = torch.where((r > 0)[:, None], d_r, y_r)
    per_sample = (d_t - d_r).double().norm(dim=1) / (t - r)  # pseudo-Huber with c = 1e-8 is the L2 norm
    expected = per_sample[~boundary].mean() + 0.1 * per_sample[boundary].mean()
    torch.testing.assert_close(loss_map["total_loss"].double(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss_map["loss_boundary"].double(), per_sample[boundary].mean(), rtol=1e-5, atol=1e-6)


def test_stage1_checkpoint_loads_into_cm_teacher_and_is_not_saved(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path))
    stage1 = config_cm.create_config()
    stage1.model.net.hidden_dim, stage1.model.net.num_layers = 32, 1
    stage1.trainer.max_iter, stage1.dataloader_train.batch_size = 3, 16
    model1, _, _ = train_toy(stage1, tmp_path, "stage1")
    ckpt = os.path.join(stage1.log_config.save_path, "checkpoints", "0000003.pth")
    assert os.path.isfile(ckpt)

    config = small_config()
    config.trainer.max_iter, config.dataloader_train.batch_size = 2, 16
    config.trainer.checkpointer.pretrained_ckpt_path = ckpt
    model2, _, _ = train_toy(config, tmp_path, "stage2")
    for p, q in zip(model1.ema.state_dict().values(), model2.cm_teacher.state_dict().values()):
        assert torch.equal(p, q)  # the frozen boundary model is stage 1's EMA, untouched by stage-2 training
    assert model2.resume_iter == 3
    saved = torch.load(os.path.join(config.log_config.save_path, "checkpoints", "0000002.pth"), weights_only=True)
    assert set(saved["model"]) == {"net", "ema"}


@pytest.mark.slow
def test_two_stage_tcm_on_gmm_oracle(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    stage1 = config_cm.create_config()
    stage1.trainer.max_iter = 300
    _, before, after1 = train_toy(stage1, tmp_path, "stage1")
    config = config_tcm.create_config()
    config.trainer.max_iter = 200
    config.trainer.checkpointer.pretrained_ckpt_path = os.path.join(stage1.log_config.save_path, "checkpoints",
                                                                    "0000300.pth")
    model, _, after2 = train_toy(config, tmp_path, "stage2")
    print(f"TCM: 1-step sliced W2 init {before:.4f}, stage 1 {after1:.4f}, stage 2 {after2:.4f}")
    assert after2 * 2.5 < before and after2 < 1.2 * after1, (before, after1, after2)
    assert swd(model) == after2


@pytest.mark.parametrize("config_file,net_kind", [("fastgen/configs/experiments/EDM/config_tcm_cifar10.py", "SongUNet"),
                                                  ("fastgen/configs/experiments/EDM2/config_tcm_s.py", "EDM2"),
                                                  ("fastgen/configs/experiments/EDM2/config_tcm_xl.py", "EDM2")])
def test_edm_tcm_recipes_train_at_tiny_size(tmp_path, config_file, net_kind):
    model, config = run_recipe_tiny(config_file, net_kind, tmp_path)
    assert type(model).__name__ == "TCMModel" and config.model.transition_t == 1.0
    assert "cm_teacher" not in model.model_dict
