"""The causal methods (CausalSFT, CausalKD, CausVid, Self-Forcing) on the toy causal video net and AR(1) videos:
each training step learns (and only with lr > 0), per-chunk times, the rollout's gradient structure and the one-line
error for a non-causal student (the exit step shared across 2 gloo ranks: tests/test_causal_sampling.py)."""

import importlib

import pytest
import torch

from fastgen.datasets.ar1_video import make_ar1
from fastgen.methods.causal.causvid import order_chunk_times
from fastgen.methods.causal.kd import gather_chunk_states, grid_states
from fastgen.networks.causal_sampling import causal_generate, causal_rollout
from fastgen.utils import instantiate

METHODS = ("sft_causal", "kd_causal", "causvid", "self_forcing")
B, D, T, CHUNK = 8, 4, 8, 2


def tiny_config(name, **model):
    config = importlib.import_module(f"fastgen.configs.experiments.Toy.config_{name}").create_config()
    nets = [config.model.net] + ([config.model.fake_score_net] if name in ("causvid", "self_forcing") else [])
    for net in nets:
        net.hidden_dim, net.num_layers, net.num_heads, net.time_emb_dim = 16, 1, 2, 8
    config.model.device = "cpu"
    if hasattr(config.model, "student_update_freq"):
        config.model.student_update_freq = 1  # every iteration is a generator (student) step
    for key, value in model.items():
        setattr(config.model, key, value)
    return config


def build(config):
    torch.manual_seed(0)
    model = instantiate(config.model_class, config=config.model)
    model.on_train_begin()
    model.init_optimizers()
    return model


def batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    real = make_ar1(D, 0.9).sample(B, T, g).float()
    noise = torch.randn(real.shape, generator=g)
    start = noise * 0.999
    path = torch.stack([start + (real - start) * k / 4 for k in range(5)], 1)  # 5 states on the 4-step grid
    return {"real": real, "noise": noise, "path": path, "condition": torch.zeros(B, 0),
            "neg_condition": torch.zeros(B, 0)}


def snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


@pytest.mark.parametrize("name", METHODS)
def test_training_step_moves_the_student_only_with_a_positive_lr(name):
    for lr in (1e-2, 0.0):
        config = tiny_config(name)
        config.model.net_optimizer.lr = lr
        model = build(config)
        if hasattr(model, "fake_score"):  # it starts as the exact teacher (zero VSD gradient): move it off
            with torch.no_grad():
                model.fake_score.out_proj.weight.normal_(0.0, 0.3, generator=torch.Generator().manual_seed(4))
        before = snapshot(model.net)
        torch.manual_seed(3)
        loss_map, outputs = model.single_train_step(batch(), 1)
        assert torch.isfinite(loss_map["total_loss"]) and loss_map["total_loss"].requires_grad
        loss_map["total_loss"].backward()
        assert sum(float(p.grad.abs().sum()) for p in model.net.parameters() if p.grad is not None) > 0
        model.optimizers_schedulers_step(1)
        moved = any(not torch.equal(a, b) for a, b in zip(before, model.net.parameters()))
        assert moved == (lr > 0), (name, lr)
    sample = outputs["gen_rand"]()  # a deferred AR sample of the whole video
    assert sample.shape == (B, D, T, 1, 1) and torch.isfinite(sample).all()


def test_causal_sft_draws_one_t_per_chunk_and_its_loss_is_dsm_at_those_times():
    model = build(tiny_config("sft_causal"))
    real = batch()["real"]
    t = model.sample_train_t(real.repeat(64, 1, 1, 1, 1))  # 512 videos
    assert t.shape == (512, T) and t.dtype == torch.float64
    assert torch.equal(t[:, 0::CHUNK], t[:, 1::CHUNK])  # constant within a chunk
    chunks = t[:, 0::CHUNK]
    corr = torch.corrcoef(chunks.T)
    assert (corr - torch.eye(T // CHUNK, dtype=torch.float64)).abs().max() < 0.2  # independent across chunks
    assert (chunks[:, 0] != chunks[:, 1]).all()
    torch.manual_seed(7)
    loss_map, _ = model.single_train_step(batch(), 1)
    torch.manual_seed(7)  # replay: t per chunk, then eps; rf: x_t = (1 - t) x0 + t eps per frame
    t = model.sample_train_t(real)
    eps = torch.randn_like(real)
    x_t = ((1 - t)[:, None, :, None, None] * real + t[:, None, :, None, None] * eps).float()
    with torch.no_grad():
        pred = model.net(x_t, t)
    torch.testing.assert_close(loss_map["total_loss"].detach(), ((pred - real) ** 2).mean(), atol=1e-5, rtol=1e-5)


def test_causal_kd_takes_each_chunk_from_its_own_teacher_state():
    t_list = torch.tensor([0.999, 0.5, 0.0], dtype=torch.float64)
    real = torch.arange(2 * 1 * 4, dtype=torch.float32).reshape(2, 1, 4, 1, 1)
    path = torch.stack([real + 100, real + 50, real], 1)  # 3 states: (3 - 1) % 2 == 0, stride 1
    states = grid_states(real, t_list, None, path)
    assert torch.equal(states[:, :2], path[:, :2]) and torch.equal(states[:, 2], real)
    ids = torch.tensor([[0, 0, 2, 2], [1, 1, 0, 0]])
    x = gather_chunk_states(states, ids)
    assert torch.equal(x[0, 0, :, 0, 0], torch.tensor([100.0, 101, 2, 3]))
    assert torch.equal(x[1, 0, :, 0, 0], torch.tensor([54.0, 55, 106, 107]))
    with pytest.raises(ValueError, match="cannot serve a 2-step student"):
        grid_states(real, t_list, None, torch.stack([real] * 4, 1))


PAPER_DRAW = {"backward_simulation": False, "chunk_t_order": "independent"}  # the Toy config turns both on


def test_causvid_student_input_is_real_video_noised_per_chunk_from_t_list():
    model = build(tiny_config("causvid", **PAPER_DRAW))
    real = batch()["real"]
    torch.manual_seed(2)
    x, t, noise = model.student_input(real)
    t_list = torch.tensor([0.999, 0.75, 0.5, 0.25, 0.0], dtype=torch.float64)
    assert torch.equal(t[:, 0::CHUNK], t[:, 1::CHUNK]) and set(t.unique().tolist()) <= set(t_list.tolist())
    tt = t[:, None, :, None, None]
    expected = torch.where(tt == 0.999, 0.999 * noise, (1 - tt) * real + tt * noise)  # t_0: pure noise, as sampled
    assert (tt == 0.999).any() and (tt == 0.0).any()
    torch.testing.assert_close(x, expected.float(), atol=1e-6, rtol=0)


def test_causvid_chunk_t_order_nondecreasing_sorts_each_samples_chunk_times():
    real = batch()["real"]
    draws = {}
    for order in ("independent", "nondecreasing"):
        model = build(tiny_config("causvid", **{**PAPER_DRAW, "chunk_t_order": order}))
        torch.manual_seed(2)
        draws[order] = model.student_input(real)
    (_, t_ind, _), (x, t, noise) = draws["independent"], draws["nondecreasing"]
    chunks = t[:, ::CHUNK]
    assert torch.equal(t[:, 0::CHUNK], t[:, 1::CHUNK]) and (chunks[:, 1:] >= chunks[:, :-1]).all()
    assert torch.equal(chunks, t_ind[:, ::CHUNK].sort(dim=1).values)  # same draw, only reordered per sample
    assert not (t_ind[:, CHUNK::CHUNK] >= t_ind[:, :-CHUNK:CHUNK]).all()  # the paper's default is not sorted
    tt = t[:, None, :, None, None]
    expected = torch.where(tt == 0.999, 0.999 * noise, (1 - tt) * real + tt * noise)
    torch.testing.assert_close(x, expected.float(), atol=1e-6, rtol=0)
    model = build(tiny_config("causvid", **{**PAPER_DRAW, "chunk_t_order": "clean_context"}))
    torch.manual_seed(3)
    chunks = model.student_input(real)[1][:, ::CHUNK]
    for row in chunks:  # zeros (clean real context) up to chunk c, then chunk c's drawn t repeated
        c = int((row == 0).long().cumprod(0).sum().clamp(max=len(row) - 1))
        assert (row[:c] == 0).all() and (row[c:] == row[c]).all()
    assert (chunks[:, 0] == 0).any() and (chunks[:, 0] > 0).any() and (chunks[:, -1] > 0).any()
    with pytest.raises(ValueError, match="chunk_t_order must be one of"):
        build(tiny_config("causvid", chunk_t_order="sorted"))


@pytest.mark.parametrize("order", ["independent", "clean_context"])  # the paper's draw; the Toy config's
def test_causvid_backward_simulation_trains_on_the_students_own_rollout_states(order):
    real = batch()["real"]
    model = build(tiny_config("causvid", backward_simulation=True, chunk_t_order=order))
    with torch.no_grad():  # off the c_skip-only init, so the rollout depends on the weights and the cache
        for p in model.net.parameters():
            p.normal_(0.0, 0.3)
    t_list = torch.tensor([0.999, 0.75, 0.5, 0.25, 0.0], dtype=torch.float64)
    schedule = model.net.noise_scheduler
    torch.manual_seed(2)
    x, t, noise = model.student_input(real)
    # replay the same random stream: unit noise, per-chunk t, then the rollout (recording each step's input)
    torch.manual_seed(2)
    assert torch.equal(torch.randn_like(real), noise)
    assert torch.equal(order_chunk_times(schedule.sample_t_inhom(B, T, CHUNK, t_list), CHUNK, order).to(t.dtype), t)
    states = {}
    final = causal_rollout(model.net, noise, t_list=t_list, on_step=lambda s, i, xx: states.__setitem__((s, i), xx))
    ids = [[int((t_list == t[b, s]).nonzero()) for s in range(0, T, CHUNK)] for b in range(B)]
    drawn = {i for row in ids for i in row}
    assert {0, 4} <= drawn and drawn & {1, 2, 3}  # pure noise, inner steps and clean chunks all drawn
    for b in range(B):
        for c, i in enumerate(ids[b]):
            frames = slice(c * CHUNK, (c + 1) * CHUNK)
            expected = final[b, :, frames] if i == 4 else states[(c * CHUNK, i)][b]
            assert torch.equal(x[b, :, frames], expected)
    # clean chunks are the student's finished AR sample (causal_generate from the same noise and random stream),
    # pure-noise chunks the scaled noise, as at sampling (not the real video)
    torch.manual_seed(2)
    torch.randn_like(real), order_chunk_times(schedule.sample_t_inhom(B, T, CHUNK, t_list), CHUNK, order)
    sample = causal_generate(model.net, noise, t_list=t_list)
    tt = t[:, None, :, None, None].expand_as(x)
    assert torch.equal(x[tt == 0], sample[tt == 0]) and not torch.allclose(x[tt == 0], real[tt == 0])
    torch.testing.assert_close(x[tt == 0.999], (0.999 * noise)[tt == 0.999], atol=1e-6, rtol=0)
    # the generator's sample is one block-causal pass on those inputs, with the graph
    torch.manual_seed(2)
    gen, _ = model.generate(real, None)
    assert gen.requires_grad and torch.equal(gen, model.net(x, t, fwd_pred_type="x0"))
    # off is the method's default (the paper's diffusion forcing on real data, the test above); the Toy config opts in
    from fastgen.configs.methods.config_causvid import ModelConfig

    assert ModelConfig().backward_simulation is False and ModelConfig().chunk_t_order == "independent"


def _forward_log(net):
    calls = []
    handle = net.register_forward_hook(
        lambda m, a, kw, out: calls.append((bool(kw.get("store_kv")), torch.is_grad_enabled())), with_kwargs=True)
    return calls, handle


def test_self_forcing_gradient_only_at_exit_steps_past_start_gradient_frame():
    model = build(tiny_config("self_forcing", last_step_only=True, start_gradient_frame=4))
    model.set_trainable(["net"])
    calls, handle = _forward_log(model.net)
    torch.manual_seed(0)
    gen, _ = model.generate(batch()["real"], None)
    handle.remove()
    # per chunk: 4 denoising calls (steps 0..2 no grad, exit step 3) then the cache pass (no grad);
    # chunks starting at frames 0 and 2 are before start_gradient_frame=4: no graph at all
    per_chunk = lambda grad: [(False, False)] * 3 + [(False, grad), (True, False)]  # noqa: E731
    assert calls == per_chunk(False) * 2 + per_chunk(True) * 2
    params = list(model.net.parameters())
    early = torch.autograd.grad(gen[:, :, :4].sum(), params, allow_unused=True, retain_graph=True)
    late = torch.autograd.grad(gen[:, :, 4:].sum(), params, allow_unused=True)
    assert all(g is None or not g.any() for g in early)
    assert sum(float(g.abs().sum()) for g in late if g is not None) > 0
    # critic steps roll out without any graph
    model.set_trainable(model.critic_names)
    calls, handle = _forward_log(model.net)
    gen, _ = model.generate(batch()["real"], None)
    handle.remove()
    assert not gen.requires_grad and not any(grad for _, grad in calls)


@pytest.mark.parametrize("name", ["sft_causal", "causvid"])
def test_non_causal_student_fails_with_one_line(name):
    from fastgen.configs.net import Toy_Video_Config

    config = tiny_config(name)
    config.model.net = Toy_Video_Config
    with pytest.raises(ValueError) as error:
        instantiate(config.model_class, config=config.model)
    message = str(error.value)
    cls = {"sft_causal": "CausalSFTModel", "causvid": "CausVidModel"}[name]
    assert "\n" not in message and message.startswith(f"{cls} needs a causal video network")
    assert "got ToyVideoNet" in message and "ToyCausalVideoNet" in message
