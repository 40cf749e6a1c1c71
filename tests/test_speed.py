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
