"""Speed and memory switches: forwards per training step, batched CFG, channels-last, activation checkpointing,
torch.compile (compiled == eager), frozen-net bookkeeping.

Forward counts are measured with forward hooks on the model's top-level networks (nothing in library code);
the table below is the one in fastgen/methods/README.md.
"""

from __future__ import annotations

import collections
import importlib

import pytest
import torch

from fastgen.configs.config import CompileConfig
from fastgen.networks.EDM.network import EDMPrecond
from fastgen.networks.samplers import cat_conditions, cfg_pair
from fastgen.utils import instantiate

# method -> {"generator" | "critic" | "step": {network: forwards}} on the Toy configs (GAN on, teacher features,
# R1 on for LADD, no CFG); "critic" steps are the DMD2-family iterations that update the critics.
FORWARDS = {
    "sft": {"step": {"net": 1}},
    "kd": {"step": {"net": 1}},
    "cm": {"step": {"net": 2}},
    "scm": {"step": {"net": 2}},
    # TCM routes per sample: D_r comes from net above transition_t and from cm_teacher below (ranges: min, max)
    "tcm": {"step": {"net": (1, 2), "cm_teacher": (0, 1)}},
    "mean_flow": {"step": {"net": 2}},
    "dmd2": {"generator": {"net": 1, "fake_score": 1, "teacher": 1, "discriminator": 1},
             "critic": {"net": 1, "fake_score": 1, "teacher": 1, "discriminator": 1}},
    "f_distill": {"generator": {"net": 1, "fake_score": 1, "teacher": 1, "discriminator": 1, "ratio_normalizer": 1},
                  "critic": {"net": 1, "fake_score": 1, "teacher": 1, "discriminator": 1}},
    "ladd": {"generator": {"net": 1, "teacher": 1, "discriminator": 1},
             "critic": {"net": 1, "teacher": 1, "discriminator": 1}},
    "sid": {"generator": {"net": 1, "fake_score": 2, "teacher": 1}, "critic": {"net": 1, "fake_score": 1}},
}


def toy_model(name: str, **model):
    config = importlib.import_module(f"fastgen.configs.experiments.Toy.config_{name}").create_config()
    config.model.device = "cpu"
    for key, value in model.items():
        setattr(config.model, key, value)
    torch.manual_seed(0)
    built = instantiate(config.model_class, config=config.model)
    built.on_train_begin()
    built.init_optimizers()
    return built


def count_forwards(model, data, iteration) -> dict[str, int]:
    counts = collections.Counter()
    handles = [module.register_forward_hook(lambda *_, name=name: counts.update([name]))
               for name, module in model.named_children()]
    try:
        loss_map, _ = model.single_train_step(data, iteration)
        loss_map["total_loss"].backward()
    finally:
        for handle in handles:
            handle.remove()
    model.optimizers_zero_grad(iteration)
    return dict(counts)


def toy_batch(n=8):
    g = torch.Generator().manual_seed(0)
    return {"real": torch.randn(n, 2, generator=g), "noise": torch.randn(n, 2, generator=g),
            "condition": torch.zeros(n, 0), "neg_condition": torch.zeros(n, 0)}


@pytest.mark.parametrize("name", sorted(FORWARDS))
def test_forwards_per_training_step(name, one_thread):
    model = toy_model(name)
    data = toy_batch()
    for kind, expected in FORWARDS[name].items():
        if kind == "step":
            iteration = 1
        else:
            want_generator = kind == "generator"
            iteration = next(i for i in range(1, 50) if model.is_generator_iteration(i) == want_generator)
        counts = count_forwards(model, data, iteration)
        ranges = {k: v if isinstance(v, tuple) else (v, v) for k, v in expected.items()}
        assert set(counts) <= set(ranges), (name, kind, counts)
        assert all(lo <= counts.get(k, 0) <= hi for k, (lo, hi) in ranges.items()), (name, kind, counts)


def test_guided_teacher_is_one_forward_and_equals_the_cfg_mix(one_thread):
    """With guidance_scale the DMD2 teacher's conditional + negative passes are one forward."""
    model = toy_model("dmd2", guidance_scale=3.0)
    data = toy_batch()
    iteration = next(i for i in range(1, 50) if model.is_generator_iteration(i))
    assert count_forwards(model, data, iteration)["teacher"] == 1
    x, t = torch.randn(8, 2), torch.rand(8, dtype=torch.float64) * 5 + 0.1
    cond = torch.zeros(8, 0)
    pred = model.teacher(x, t, condition=cond, fwd_pred_type="x0")
    guided = model.teacher_x0(x, t, cond, None)
    torch.testing.assert_close(guided, pred, rtol=0, atol=1e-6)  # same condition both ways -> g cancels


def tiny_edm(**kwargs):
    torch.manual_seed(0)
    args = dict(img_resolution=8, img_channels=3, label_dim=10, model_channels=16, channel_mult=[1, 2], num_blocks=1,
                attn_resolutions=[4], dropout=0.0)
    net = EDMPrecond(**{**args, **kwargs})
    with torch.no_grad():  # EDM zero-inits the last conv of each block: give it weights so conditions matter
        for param in net.parameters():
            if param.ndim > 1 and param.abs().max() < 1e-3:
                param.normal_(0.0, 0.1)
    return net


@pytest.mark.parametrize("kind", ["tensor", "mapping"])
def test_batched_cfg_equals_two_separate_passes(kind, one_thread):
    net = tiny_edm(augment_dim=4 if kind == "mapping" else 0).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 8, 8, generator=g)
    t = torch.tensor([0.3, 1.0, 5.0, 40.0], dtype=torch.float64)
    labels = torch.eye(10)[[1, 3, 5, 7]]
    if kind == "tensor":
        cond, neg = labels, torch.zeros_like(labels)
    else:
        aug = torch.randn(4, 4, generator=g)
        cond = {"orig_condition": labels, "aug_condition": aug}
        neg = {"orig_condition": torch.zeros_like(labels), "aug_condition": aug}

    def fn(xx, tt, c):
        return net(xx, tt, condition=c, fwd_pred_type="x0", feature_indices=[1])

    with torch.no_grad():
        (pred, feats), (pred_neg, feats_neg) = cfg_pair(fn, x, t, cond, neg)
        pred_ref, feats_ref = fn(x, t, cond)
        pred_neg_ref, _ = fn(x, t, neg)
    torch.testing.assert_close(pred, pred_ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(pred_neg, pred_neg_ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(feats[0], feats_ref[0], rtol=0, atol=1e-6)
    assert (feats[0] - feats_neg[0]).abs().max() > 1e-3  # the two conditions really differ


def test_cat_conditions_kinds():
    a, b = torch.ones(2, 3), torch.zeros(2, 3)
    assert torch.equal(cat_conditions(a, b), torch.cat([a, b]))
    both = cat_conditions({"emb": a, "flag": True}, {"emb": b, "flag": True})
    assert torch.equal(both["emb"], torch.cat([a, b])) and both["flag"] is True
    assert cat_conditions(["a cat", "a dog"], ["", ""]) == ["a cat", "a dog", "", ""]
    assert cat_conditions(None, None) is None
    with pytest.raises(ValueError, match="same keys"):
        cat_conditions({"emb": a}, {"other": b})


def test_optimizers_default_to_the_fused_kernel_with_the_same_update():
    from fastgen.configs.opt import get_optimizer

    torch.manual_seed(0)
    nets = [torch.nn.Linear(6, 5) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    fused = get_optimizer(nets[0], optim_type="adamw", lr=1e-2)
    plain = get_optimizer(nets[1], optim_type="adamw", lr=1e-2, fused=False)
    assert fused.defaults["fused"] and not plain.defaults["fused"]
    assert not get_optimizer(nets[0], optim_type="radam").defaults.get("fused")  # no fused RAdam kernel
    for step in range(3):
        for net, opt in zip(nets, (fused, plain)):
            net(torch.full((2, 6), float(step + 1))).square().sum().backward()
            opt.step()
            opt.zero_grad()
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


# --- switches on the tiny EDM net ------------------------------------------------------------------------------------
TINY_NET = dict(img_resolution=8, model_channels=16, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4],
                dropout=0.0, label_dim=10)


def edm_model(method: str, one_level: bool = False, **model):
    """A method on the tiny EDM net (CIFAR-shaped config, 8x8 images) with model-config overrides; `one_level`:
    a single resolution without attention (fewer ops to trace for the compile tests)."""
    config = edm_config(method, one_level, **model)
    torch.manual_seed(0)
    built = instantiate(config.model_class, config=config.model)
    built.on_train_begin()
    built.init_optimizers()
    return built


def edm_config(method: str, one_level: bool = False, **model):
    """The config `edm_model` builds from (the FSDP2 compile test shards before `on_train_begin`)."""
    config = importlib.import_module(f"fastgen.configs.methods.config_{method}").create_config()
    m = config.model
    net = {**TINY_NET, "channel_mult": [1], "attn_resolutions": []} if one_level else TINY_NET
    for key, value in net.items():
        setattr(m.net, key, value)
    if getattr(m, "discriminator", None) is not None:
        m.discriminator.all_res, m.discriminator.in_channels = ([8], [16]) if one_level else ([8, 4], [16, 32])
        m.discriminator.feature_indices = list(range(len(m.discriminator.all_res)))
    m.input_shape, m.device = [3, 8, 8], "cpu"
    for key, value in model.items():
        setattr(m, key, value)
    return config


def edm_batch(n=4):
    g = torch.Generator().manual_seed(3)
    return {"real": torch.rand(n, 3, 8, 8, generator=g) * 2 - 1, "condition": torch.eye(10)[torch.arange(n)],
            "neg_condition": torch.zeros(n, 10)}


def step_loss_and_grads(model, iteration=1):
    torch.manual_seed(7)
    loss_map, _ = model.single_train_step(edm_batch(), iteration)
    loss_map["total_loss"].backward()
    grads = {f"{name}.{k}": p.grad.clone() for name, net in model.model_dict.items()
             for k, p in net.named_parameters() if p.grad is not None}
    model.optimizers_zero_grad(iteration)
    return loss_map["total_loss"].detach(), grads


def assert_same_step(a, b, atol):
    (loss_a, grads_a), (loss_b, grads_b) = a, b
    torch.testing.assert_close(loss_a, loss_b, rtol=0, atol=atol)
    assert grads_a.keys() == grads_b.keys() and grads_a
    for key in grads_a:
        torch.testing.assert_close(grads_a[key], grads_b[key], rtol=1e-4, atol=atol, msg=key)


def test_channels_last_gives_the_contiguous_outputs(one_thread):
    net = tiny_edm().eval()
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([0.5, 20.0], dtype=torch.float64)
    with torch.no_grad():
        ref, ref_feats = net(x, t, torch.eye(10)[:2], feature_indices=[0, 1])
        net.to(memory_format=torch.channels_last)
        assert net.unet.enc["8x8_conv"].weight.is_contiguous(memory_format=torch.channels_last)
        out, feats = net(x.contiguous(memory_format=torch.channels_last), t, torch.eye(10)[:2], feature_indices=[0, 1])
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    for a, b in zip(feats, ref_feats):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_activation_checkpointing_and_channels_last_keep_the_dmd2_step(one_thread):
    """Same loss and gradients (critic step: fake score DSM + GAN heads) with AC on every trained block."""
    eager = step_loss_and_grads(edm_model("dmd2"), iteration=1)
    model = edm_model("dmd2", activation_checkpointing=True, channels_last=True)
    assert "forward" in vars(model.fake_score.unet.blocks()[0])
    assert_same_step(eager, step_loss_and_grads(model, iteration=1), atol=1e-5)
    assert set(model.net.state_dict()) == set(edm_model("dmd2").net.state_dict())


def test_bfloat16_teacher_computes_in_bf16_and_returns_the_callers_dtype(one_thread):
    model = edm_model("dmd2", teacher_precision="bfloat16")
    assert next(model.teacher.parameters()).dtype == torch.bfloat16
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([0.5, 20.0], dtype=torch.float64)
    out, feats = model.teacher(x, t, condition=torch.eye(10)[:2], feature_indices=[0])
    assert out.dtype == feats[0].dtype == torch.float32
    ref = edm_model("dmd2").teacher(x, t, condition=torch.eye(10)[:2])
    assert 0 < (out - ref).abs().max() < 0.05  # bf16 rounding, not a different function


@pytest.mark.slow
@pytest.mark.parametrize("method", ["sft", "dmd2", "cm"])
def test_compiled_step_equals_eager_and_checkpoints_stay_eager_compatible(method, one_thread):
    """Compiled and eager steps: same loss and gradients (1e-4); state_dict keys unchanged, so a compiled run's
    checkpoint loads into an eager model and back. Backend aot_eager: the whole capture path (TorchDynamo graphs,
    AOT autograd's joint forward/backward graphs) without inductor's C++ code generation, which takes minutes on a
    2-core CPU (measured: 490 s for the tiny SFT net under load; benchmarks/bench_speed.py times inductor)."""
    backend = "aot_eager"
    iteration = 5 if method == "dmd2" else 1  # DMD2: the generator step (student through the critics)
    eager_model = edm_model(method, one_level=True)
    eager = step_loss_and_grads(eager_model, iteration)
    compiled_model = edm_model(method, one_level=True, compile=CompileConfig(networks=["net"], backend=backend, dynamic=False))
    assert compiled_model.net._compiled_call_impl is not None
    assert_same_step(eager, step_loss_and_grads(compiled_model, iteration), atol=1e-4)
    state = compiled_model.model_dict.state_dict()
    assert not any("_orig_mod" in key for key in state) and set(state) == set(eager_model.model_dict.state_dict())
    eager_model.model_dict.load_state_dict(state)
    compiled_model.model_dict.load_state_dict(eager_model.model_dict.state_dict())


def test_compile_names_unknown_networks():
    with pytest.raises(ValueError, match="'fake_score'"):
        edm_model("sft", compile=CompileConfig(networks=["fake_score"], backend="eager"))


def test_bench_speed_profile_counts_the_flops_and_splits_the_time(one_thread):
    """benchmarks/bench_speed.py --profile on a step of one convolution (forward and backward) and one matmul: the
    flops are the analytic count, the kernel shares sum to 1 and every kind that ran has a share. No ordering of the
    shares is asserted: they are measured times, and on a loaded machine a preempted elementwise kernel can outweigh
    the convolution (seen in a clean-clone CI run beside another job)."""
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
    import bench_speed

    assert [bench_speed.kernel_kind(n) for n in ("aten::convolution_backward", "aten::addmm", "aten::add_")] == [
        "convolution", "matmul", "other"]
    weight = torch.randn(32, 16, 3, 3, requires_grad=True)
    x, a, b = torch.randn(4, 16, 32, 32), torch.randn(64, 64), torch.randn(64, 64)

    def step(iteration):
        torch.nn.functional.conv2d(x, weight, padding=1).square().sum().backward()
        return float((a @ b).sum() * 0 + iteration * 0)

    res = bench_speed.profile_steps(step, 1, steps=2, threads=1)
    conv_forward = 2 * 4 * 32 * 32 * 32 * 16 * 9  # batch x output pixels x out ch x (in ch x 3 x 3) FMAs x 2
    # forward + the weight gradient (x needs none) + the 64x64x64 matmul
    assert res["gflop"] * 1e9 == pytest.approx(2 * conv_forward + 2 * 64**3)
    assert sum(res["shares"].values()) == pytest.approx(1.0)
    assert set(res["shares"]) == {"convolution", "matmul", "other"}
    assert all(share > 0 for share in res["shares"].values())
    assert res["gemm_gflops"] > 0 and res["peak_gflops"] > 0
