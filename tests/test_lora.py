"""LoRA students (fastgen.methods.lora): only adapter tensors train, change and are checkpointed; the teacher (and
DMD2's fake score) share the frozen base; a Trainer run with an EMA adapter resumes bit-identically; bad settings
fail with one clear error. On ToyMLP (Linear layers) and EDM's tiny SongUNet (Conv2d + attention)."""

import pytest
import torch
from safetensors.torch import save_file

from fastgen.configs.config import LoRAConfig
from fastgen.configs.config_utils import apply_overrides, load_config_from_yaml, serialize_config
from fastgen.configs.experiments.Toy import config_dmd2, config_sft
from fastgen.methods import DMD2Model, SFTModel
from fastgen.methods.lora import LoRAView, adapter_weights, base_state_dict
from fastgen.utils import instantiate
from fastgen.utils.checkpointer import collect_state, restore_state
from fastgen.utils.gmm import make_gmm

# ToyMLP zero-initialises its output layer, so out_proj must carry an adapter for any gradient to reach the others
TOY_TARGETS = ["in_proj", "blocks.1.1", "out_proj.1"]


def toy_base_file(tmp_path, hidden_dim=32):
    """A 'pretrained' ToyMLP saved as safetensors: the LoRA base (= teacher) every model here loads."""
    torch.manual_seed(123)
    net = instantiate(config_sft.create_config().model.net, hidden_dim=hidden_dim)
    for p in net.parameters():  # the shipped init zeroes the output layer: give every layer non-trivial weights
        p.data.normal_(0, 0.3)
    path = tmp_path / "base.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return str(path), net


def dmd2_config(base_path, **lora):
    config = config_dmd2.create_config()
    config.model.teacher = None  # the teacher is the student's architecture: LoRA shares its weights
    config.model.fake_score_net = None
    config.model.gan_loss_weight_gen = 0.0
    config.model.net.hidden_dim = 32
    config.model.pretrained_model_path = base_path
    config.model.lora = LoRAConfig(**{"rank": 4, "target_modules": TOY_TARGETS, **lora})
    config.model.use_ema = False  # two adapters (student, fake score); an EMA adapter is tested with SFT below
    return config


def batch(n=16, seed=1):
    real, _ = make_gmm("ring8").sample(n, torch.Generator().manual_seed(seed))
    return {"real": real.float(), "condition": torch.zeros(n, 0), "neg_condition": torch.zeros(n, 0)}


def build(cls, config):
    torch.manual_seed(0)
    model = cls(config.model)
    model.on_train_begin()
    model.init_optimizers()
    return model


def train(model, iterations):
    for it in iterations:
        model.optimizers_zero_grad(it)
        loss_map, _ = model.single_train_step(batch(seed=it), it)
        loss_map["total_loss"].backward()
        model.optimizers_schedulers_step(it)


def test_dmd2_lora_trains_only_adapters_and_shares_the_frozen_base(tmp_path, one_thread):
    base_path, reference = toy_base_file(tmp_path)
    model = build(DMD2Model, dmd2_config(base_path))
    assert isinstance(model.teacher, LoRAView) and isinstance(model.fake_score, LoRAView)
    assert sum(1 for _ in model.teacher.parameters()) == 0  # no second copy of the weights
    # optimizers hold exactly the adapters' parameters (3 layers x (A, B)), nothing of the base
    for name in ("net", "fake_score"):
        params = [p for g in model.optimizers[name].param_groups for p in g["params"]]
        assert {id(p) for p in params} == {id(p) for p in getattr(model, name).parameters()} and len(params) == 6
    x, t = torch.randn(8, 2), torch.full((8,), 2.0, dtype=torch.float64)
    with torch.no_grad():  # B = 0 at start: student, fake score and teacher all equal the pretrained base exactly
        expected = reference(x, t)
        for net in (model.net, model.fake_score, model.teacher):
            assert torch.equal(net(x, t), expected)
    base_before = {k: v.clone() for k, v in base_state_dict(model.lora_base).items()}
    net_before = {k: v.clone() for k, v in model.net.state_dict().items()}
    fake_before = {k: v.clone() for k, v in model.fake_score.state_dict().items()}
    train(model, range(1, 11))  # freq 5: critic 1-4, 6-9; generator 5, 10
    base_after = base_state_dict(model.lora_base)
    assert base_after.keys() == reference.state_dict().keys()
    assert all(torch.equal(base_before[k], base_after[k]) for k in base_before)  # base bit-identical
    assert all(not torch.equal(net_before[k], v) for k, v in model.net.state_dict().items() if "lora_B" in k)
    assert all(not torch.equal(fake_before[k], v) for k, v in model.fake_score.state_dict().items() if "lora_B" in k)
    with torch.no_grad():
        assert torch.equal(model.teacher(x, t), expected)  # the teacher is still the untouched base
        assert (model.net(x, t) - expected).abs().max() > 1e-4
        assert (model.fake_score(x, t) - model.net(x, t)).abs().max() > 1e-4  # two different adapters
    # checkpoint: only adapter tensors (plus the optimizers over them)
    state = collect_state(model, iteration=10)
    assert set(state["model"]) == {"net", "fake_score"}
    keys = [k for sd in state["model"].values() for k in sd]
    assert keys and all(".lora_A." in k or ".lora_B." in k for k in keys)
    n_base = sum(v.numel() for v in base_after.values())
    assert sum(v.numel() for sd in state["model"].values() for v in sd.values()) < n_base / 2
    # the same weights under diffusers / peft LoRA names: <module path>.lora_A.weight
    assert set(adapter_weights(model.net)) == {f"{m}.lora_{ab}.weight" for m in TOY_TARGETS for ab in "AB"}


def test_dmd2_lora_full_fake_score_starts_from_the_base(tmp_path, one_thread):
    base_path, reference = toy_base_file(tmp_path)
    model = build(DMD2Model, dmd2_config(base_path, fake_score_adapter=False))
    assert not isinstance(model.fake_score, LoRAView)
    x, t = torch.randn(8, 2), torch.full((8,), 0.5, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(model.fake_score(x, t), reference(x, t))
    assert sum(p.numel() for p in model.fake_score.parameters()) == sum(p.numel() for p in reference.parameters())


def sft_lora_config(base_path, max_iter):
    from fastgen.configs.callbacks import EMA_CALLBACK, STANDARD_CALLBACKS
    from fastgen.configs.methods.common import callbacks_from

    config = config_sft.create_config()
    config.model.net.hidden_dim = 32
    config.model.pretrained_model_path = base_path
    config.model.use_ema = True
    config.trainer.callbacks = callbacks_from(STANDARD_CALLBACKS, EMA_CALLBACK)
    config.trainer.callbacks.ema.beta = 0.5
    config.trainer.max_iter, config.trainer.save_ckpt_iter, config.trainer.logging_iter = max_iter, 3, 3
    config.dataloader_train.batch_size = 16
    config = apply_overrides(config, [f"model.lora={{rank: 2, alpha: 4.0, target_modules: {TOY_TARGETS}}}"])
    return config


def test_sft_lora_with_ema_checkpoints_adapters_only_and_resumes_bit_identically(tmp_path, monkeypatch, one_thread):
    """Trainer run of 6 iterations vs 3 + resume 3: equal checkpoints; EMA is an adapter updated by the callback."""
    from fastgen.trainer import Trainer

    base_path, _ = toy_base_file(tmp_path)

    def run(root, max_iter):
        monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(root))
        config = sft_lora_config(base_path, max_iter)
        torch.manual_seed(0)
        model = instantiate(config.model_class, config=config.model)
        Trainer(config).run(model)
        ckpt = root / "fastgen" / "toy" / "sft_ring8" / "checkpoints" / f"{max_iter:07d}.pth"
        return model, torch.load(ckpt, weights_only=True), config

    model, full, config = run(tmp_path / "a", 6)
    run(tmp_path / "b", 3)
    _, resumed, _ = run(tmp_path / "b", 6)
    assert set(full["model"]) == {"net", "ema"}
    for name in ("net", "ema"):
        sd = full["model"][name]
        assert sd and all(".lora_A." in k or ".lora_B." in k for k in sd)
        assert sd.keys() == resumed["model"][name].keys()
        assert all(torch.equal(v, resumed["model"][name][k]) for k, v in sd.items())
    # the EMA adapter moved towards the student but is not equal to it (beta 0.5)
    net_sd, ema_sd = full["model"]["net"], full["model"]["ema"]
    assert any(not torch.equal(net_sd[k], ema_sd[k]) for k in net_sd if "lora_B" in k)
    assert all(ema_sd[k].abs().sum() > 0 for k in ema_sd if "lora_B" in k)
    assert model.net.base.out_proj[1].scaling["net"] == 2.0  # alpha / rank
    # a checkpoint of a full (non-LoRA) student is refused with the mismatching keys named
    plain = SFTModel(config_sft.create_config().model)
    fresh = SFTModel(config.model)
    fresh.init_optimizers()
    bad = {**resumed, "model": {"net": plain.net.state_dict(), "ema": resumed["model"]["ema"]}}
    with pytest.raises(Exception, match="loading weights into 'net'"):
        restore_state(fresh, bad)
    restore_state(fresh, resumed)
    assert all(torch.equal(v, resumed["model"]["net"][k]) for k, v in fresh.net.state_dict().items())


def test_lora_on_a_network_with_its_own_layer_classes_is_one_clear_error():
    """EDM's SongUNet computes with its own Conv2d class (weights used functionally), which peft cannot adapt."""
    from fastgen.configs.methods import config_sft as sft_method

    config = sft_method.create_config()  # default net: EDM's SongUNet (class-conditional CIFAR-10), shrunk
    net = config.model.net
    net.model_channels, net.channel_mult, net.num_blocks, net.attn_resolutions = 8, [1, 1], 1, [4]
    net.img_resolution, net.augment_dim, net.label_dim = 8, 0, 0
    config.model.device = "cpu"
    config.model.lora = LoRAConfig(rank=2, target_modules=["conv0", "conv1"])
    with pytest.raises(ValueError, match=r"model.lora cannot adapt EDMPrecond .*Conv2d.* torch.nn Linear / Conv"):
        SFTModel(config.model)


def test_lora_config_round_trips_through_yaml(tmp_path):
    config = sft_lora_config("", 1)
    loaded = load_config_from_yaml(serialize_config(config, return_type="file", path=str(tmp_path)))
    assert loaded.model.lora == config.model.lora and loaded.model.lora.alpha == 4.0


def test_lora_bad_settings_fail_with_one_clear_error(tmp_path):
    base_path, _ = toy_base_file(tmp_path)
    config = dmd2_config(base_path)
    config.model.lora.target_modules = ["nonexistent_layer"]
    with pytest.raises(ValueError, match=r"target_modules=\['nonexistent_layer'\] matches no layer of ToyMLP"):
        DMD2Model(config.model)
    config = dmd2_config(base_path)
    config.model.lora.target_modules = None  # ToyMLP has no attention projections to default to
    with pytest.raises(ValueError, match="set model.lora.target_modules to module names, e.g. .*in_proj"):
        DMD2Model(config.model)
    config = dmd2_config(base_path)
    config.model.pretrained_student_net_path = base_path
    with pytest.raises(ValueError, match="pretrained_student_net_path cannot be used"):
        DMD2Model(config.model)
    config = dmd2_config(base_path, rank=0)
    with pytest.raises(ValueError, match="rank must be >= 1"):
        DMD2Model(config.model)
    from fastgen.configs.methods import config_cm
    from fastgen.methods import CMModel  # consistency methods are not checked on LoRA views: refused clearly

    config = config_cm.create_config()
    config.model.lora = LoRAConfig(rank=2)
    with pytest.raises(ValueError, match="model.lora is not supported by CMModel yet"):
        CMModel(config.model)


@pytest.mark.parametrize("family", ["sdxl", "flux"])
def test_lora_dmd2_and_sft_steps_on_diffusers_families(family, tmp_path, one_thread):
    """LoRA (default targets: the attention projections) on tiny SDXL / Flux: a DMD2 critic + generator step and an
    SFT step change only adapter tensors; the teacher stays the bare base. (SD1.5: tests/test_export.py.)"""
    from fastgen.configs import net as net_configs
    from fastgen.configs.methods import config_dmd2 as dmd2_method
    from fastgen.configs.methods import config_sft as sft_method
    from fastgen.networks.hf.tiny import tiny_components

    for method, cls in ((dmd2_method, DMD2Model), (sft_method, SFTModel)):
        config = method.create_config()
        config.model.net = {"sdxl": net_configs.SDXLConfig, "flux": net_configs.FluxConfig}[family]
        config.model.net.load_pretrained, config.model.net.component_configs = False, tiny_components(family)
        config.model.device, config.model.discriminator = "cpu", None
        if cls is DMD2Model:
            config.model.gan_loss_weight_gen, config.model.student_update_freq = 0.0, 2
            config.model.fake_score_optimizer.lr = 1e-2
        config.model.net_optimizer.lr = 1e-2
        config.model.sample_t_cfg.time_dist_type = "uniform"
        config.model.sample_t_cfg.min_t, config.model.sample_t_cfg.max_t = 0.02, 0.98
        config.model.lora = LoRAConfig(rank=2)
        model = build(cls, config)
        adapted = {name.rsplit(".", 1)[-1] for name, m in model.lora_base.named_modules() if hasattr(m, "lora_A")}
        assert adapted >= {"to_q", "to_k", "to_v"}
        condition = model.net.encode_text(["a red cat", "two dogs"])
        data = {"real": torch.randn(2, 4, 8, 8), "condition": condition,
                "neg_condition": model.net.encode_text(["", ""])}
        before = {k: v.clone() for k, v in base_state_dict(model.lora_base).items()}
        net_before = {k: v.clone() for k, v in model.net.state_dict().items()}
        for it in (1, 2):
            model.optimizers_zero_grad(it)
            model.single_train_step(data, it)[0]["total_loss"].backward()
            model.optimizers_schedulers_step(it)
        after = base_state_dict(model.lora_base)
        assert all(torch.equal(before[k], after[k]) for k in before), (family, cls.__name__)
        assert any(not torch.equal(net_before[k], v) for k, v in model.net.state_dict().items() if "lora_B" in k)
        x, t = torch.randn(2, 4, 8, 8), torch.full((2,), 0.5, dtype=torch.float64)
        with torch.no_grad():  # the teacher view is the base with adapters off: equal to a fresh adapter-free net
            fresh = instantiate(config.model.net)
            fresh.load_state_dict(after)
            assert torch.equal(model.teacher(x, t, condition=condition) if model.teacher is not None else
                               fresh(x, t, condition=condition), fresh(x, t, condition=condition))
            assert (model.net(x, t, condition=condition) - fresh(x, t, condition=condition)).abs().max() > 1e-6
