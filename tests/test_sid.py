"""SiD: the alpha-weighted generator loss (both algebraic forms of the paper), its gradient through the score
networks' inputs with their weights kept out, the every-iteration fake-score update schedule, and training on the
exact Gaussian-mixture teacher."""

import torch
from _toy_oracle import train_and_measure

from fastgen.configs.experiments.Toy import config_sid
from fastgen.methods import SiDModel
from fastgen.methods.distribution_matching.sid import sid_generator_loss
from fastgen.utils.gmm import make_gmm


def build(**model):
    config = config_sid.create_config()
    config.model.net.hidden_dim = config.model.fake_score_net.hidden_dim = 32
    for key, value in model.items():
        setattr(config.model, key, value)
    torch.manual_seed(0)
    m = SiDModel(config.model)
    m.on_train_begin()
    m.init_optimizers()
    return m


def test_sid_loss_matches_both_forms_of_the_paper():
    g = torch.Generator().manual_seed(0)
    gen, teacher, fake = (torch.randn(4, 3, generator=g) for _ in range(3))
    alpha = 1.2
    w = 1.0 / (gen - teacher).abs().mean(dim=1, keepdim=True)
    d = teacher - fake
    code_form = (w * d * ((teacher - gen) - alpha * d)).mean()
    paper_form = (w * ((1 - alpha) * d**2 + d * (fake - gen))).mean()  # (1-a)||f_phi-f_psi||^2 + (f_phi-f_psi)^T(f_psi-x_g)
    torch.testing.assert_close(sid_generator_loss(gen, teacher, fake, alpha), code_form)
    torch.testing.assert_close(code_form, paper_form)
    # gradient w.r.t. x_g alone (scores held fixed): -w (f_phi - f_psi) / numel, the weight is not differentiated
    gen_leaf = gen.clone().requires_grad_(True)
    sid_generator_loss(gen_leaf, teacher, fake, alpha).backward()
    torch.testing.assert_close(gen_leaf.grad, -w * d / gen.numel())


def test_generator_gradient_flows_through_both_scores_but_not_into_fake_score_weights():
    model = build(student_update_freq=1)
    g = torch.Generator().manual_seed(2)
    gen = torch.randn(5, 2, generator=g).requires_grad_(True)
    t = torch.tensor([0.05, 0.3, 1.0, 2.0, 6.0], dtype=torch.float64)
    eps = torch.randn(5, 2, generator=g)
    with model.frozen(model.fake_score):
        losses = model.sid_losses(gen, t, eps, torch.zeros(5, 0), torch.zeros(5, 0))
    losses["generator_loss"].backward()
    assert all(p.grad is None for p in model.fake_score.parameters())
    assert all(p.requires_grad for p in model.fake_score.parameters())  # restored after the block
    # the same loss written out with differentiable teacher (exact posterior mean) and fake score
    gen2 = gen.detach().clone().requires_grad_(True)
    x_t = gen2 + t.float()[:, None] * eps
    teacher_x0 = make_gmm("ring8").posterior_mean(x_t.double(), torch.ones(5, dtype=torch.float64), t).float()
    fake_x0 = model.fake_score(x_t, t, fwd_pred_type="x0")
    expected = sid_generator_loss(gen2, teacher_x0, fake_x0, 1.0)
    expected.backward()
    torch.testing.assert_close(losses["sid_loss"], expected.detach())
    torch.testing.assert_close(gen.grad, gen2.grad)
    # differentiating through x_t matters: the gradient differs from the x_g-only (scores fixed) one
    fixed = -(1.0 / (gen2.detach() - teacher_x0.detach()).abs().mean(1, keepdim=True)) * \
        (teacher_x0.detach() - fake_x0.detach()) / gen.numel()
    assert not torch.allclose(gen.grad, fixed, atol=1e-5)


def test_fake_score_steps_every_iteration_generator_every_freq():
    model = build(student_update_freq=3)
    opt = model.optimizer_dict
    assert set(opt) == {"net", "fake_score"} and model.discriminator is None
    for iteration in range(1, 7):
        expected = ([opt["net"]] if iteration % 3 == 0 else []) + [opt["fake_score"]]
        assert model.get_optimizers(iteration) == expected
    real, _ = make_gmm("ring8").sample(16, torch.Generator().manual_seed(1))
    data = {"real": real.float(), "condition": torch.zeros(16, 0)}
    for iteration, generator_step in ((2, False), (3, True)):
        before = [p.detach().clone() for p in model.net.parameters()]
        fake_before = [p.detach().clone() for p in model.fake_score.parameters()]
        loss_map, _ = model.single_train_step(data, iteration)
        assert ("sid_loss" in loss_map) == generator_step and "fake_score_loss" in loss_map
        loss_map["total_loss"].backward()
        model.optimizers_schedulers_step(iteration)
        model.optimizers_zero_grad(iteration)
        assert any(not torch.equal(a, b) for a, b in zip(before, model.net.parameters())) == generator_step
        assert any(not torch.equal(a, b) for a, b in zip(fake_before, model.fake_score.parameters()))
    every = build(student_update_freq=1)  # the default: both updates on every iteration
    assert all(every.get_optimizers(i) == [every.optimizer_dict["net"], every.optimizer_dict["fake_score"]]
               for i in range(1, 4))


def test_toy_sid_moves_one_step_samples_to_the_mixture(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path))
    config = config_sid.create_config()
    # a test-sized budget: 400 iterations learn the modes (the config's 2000 + EMA sharpen them; benchmarks/oracle.py)
    config.trainer.max_iter = config.trainer.save_ckpt_iter = 400
    model, before, after, coverage = train_and_measure(config)
    assert after * 3.0 <= before
    assert coverage["mode_coverage"] >= 0.5


def test_regression_term_joins_sid_generator_iterations():
    """SiD runs generator and critic losses in one iteration; DMD's regression term is added to it there too."""
    g = torch.Generator().manual_seed(3)
    real, _ = make_gmm("ring8").sample(16, g)
    noise, target = torch.randn(16, 2, generator=g), torch.randn(16, 2, generator=g)
    batch = {"real": real.float(), "condition": torch.zeros(16, 0), "neg_condition": torch.zeros(16, 0),
             "pair_noise": noise, "pair_real": target}
    maps = []
    for weight in (0.0, 2.0):
        model = build(regression_loss_weight=weight)
        torch.manual_seed(7)
        maps.append(model.single_train_step(batch, model.config.student_update_freq)[0])  # a generator iteration
    assert "regression_loss" not in maps[0] and maps[1]["regression_loss"] > 0
    torch.testing.assert_close(maps[1]["total_loss"], maps[0]["total_loss"] + 2.0 * maps[1]["regression_loss"],
                               rtol=1e-6, atol=1e-7)
