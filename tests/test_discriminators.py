"""Discriminator heads: logits [B, heads], each head sees only its own feature, GroupNorm group choice, tiny
resolutions (the video heads: test_discriminators_video.py)."""

import pytest
import torch
from torch import nn

from fastgen.methods.common_loss import gan_loss_discriminator
from fastgen.networks.discriminators import (
    Discriminator_EDM,
    Discriminator_ImageDiT,
    Discriminator_MLP,
    edm_head,
    group_norm_groups,
)


def assert_heads_independent(disc, features):
    """d logit_k / d feature_j is non-zero for j == k and exactly zero (no graph) otherwise."""
    feats = [f.clone().requires_grad_(True) for f in features]
    logits = disc(feats)
    assert logits.shape == (features[0].shape[0], len(features))
    assert torch.isfinite(logits).all()
    for k in range(len(feats)):
        grads = torch.autograd.grad(logits[:, k].sum(), feats, allow_unused=True, retain_graph=True)
        for j, g in enumerate(grads):
            if j == k:
                assert g is not None and g.abs().sum() > 0
            else:
                assert g is None or torch.count_nonzero(g) == 0
    return logits


@pytest.mark.parametrize(
    "channels, groups",
    [
        (256, 32),
        (768, 32),
        (1280, 32),
        (48, 12),
        (64, 16),
        (100, 25),
        (37, 1),
        (96, 24),
        (192, 32),
        (32, 8),
        (16, 4),
        (8, 2),
        (12, 3),
        (30, 6),
        (3, 1),
        (1, 1),
    ],
)
def test_group_norm_groups(channels, groups):
    assert group_norm_groups(channels) == groups
    assert channels % groups == 0


def test_edm_head_learns_on_features_with_a_large_common_component():
    """U-Net features at low noise are mostly a sample-independent pattern; a head whose 1x1 GroupNorm has two
    channels per group (64 channels in 32 groups, the old rule) normalises that pattern to fixed signs and stays at
    chance (loss 2 ln 2 = 1.386 to 3 decimals); at >= 4 channels per group it separates real from fake."""
    torch.manual_seed(0)
    disc = Discriminator_EDM(feature_indices=[2], all_res=[32, 16, 8], in_channels=64)
    opt = torch.optim.Adam(disc.parameters(), lr=1e-3)
    common, shift = torch.randn(1, 64, 8, 8) * 3, torch.randn(1, 64, 8, 8) * 0.2
    for _ in range(40):
        noise = 0.1 * torch.randn(32, 64, 8, 8)
        logits = disc([torch.cat([common + shift + noise[:16], common + noise[16:]])])
        loss = gan_loss_discriminator(real_logits=logits[:16], fake_logits=logits[16:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 1.35


def test_edm_discriminator_heads_and_shapes():
    torch.manual_seed(0)
    disc = Discriminator_EDM(feature_indices=[2, 0, 1], all_res=[32, 16, 8], in_channels=16)
    assert disc.feature_indices == [0, 1, 2] and list(disc.heads) == ["0", "1", "2"]
    convs = {k: [m for m in h if isinstance(m, nn.Conv2d)] for k, h in disc.heads.items()}
    # 32 -> 16 -> 8 -> 4 (three stride-2 convs), then 4x4 stride 4 -> 1x1, then the 1x1 logit conv
    assert [(c.kernel_size, c.stride) for c in convs["0"]] == [((4, 4), (2, 2))] * 3 + [((4, 4), (4, 4)), ((1, 1),) * 2]
    assert len(convs["1"]) == 4 and len(convs["2"]) == 3
    feats = [torch.randn(4, 16, r, r) for r in (32, 16, 8)]
    logits = assert_heads_independent(disc, feats)
    # per-sample independence and the logit is the head's own output
    torch.testing.assert_close(logits[:, 1:2], disc.heads["1"](feats[1]).flatten(1))
    torch.testing.assert_close(disc(feats)[1:2], disc([f[1:2] for f in feats]), rtol=1e-5, atol=1e-6)
    # dict input picks the features by index
    torch.testing.assert_close(disc({0: feats[0], 1: feats[1], 2: feats[2]}), logits.detach())


def test_edm_default_uses_last_feature_only():
    disc = Discriminator_EDM(all_res=[16, 8], in_channels=8)
    assert disc.feature_indices == [1] and list(disc.heads) == ["1"]
    out = disc([torch.randn(2, 8, 8, 8)])
    assert out.shape == (2, 1)


def test_edm_small_channels_head_is_not_dead():
    """With 16 channels a one-channel GroupNorm at the 1x1 stage would make the logit constant."""
    torch.manual_seed(0)
    disc = Discriminator_EDM(feature_indices=[0], all_res=[8], in_channels=16)
    logits = disc([torch.randn(6, 16, 8, 8)])
    assert logits.std() > 1e-3


def test_edm_per_resolution_channels_and_tiny_resolutions():
    torch.manual_seed(0)
    disc = Discriminator_EDM(feature_indices=[0, 1, 2, 3], all_res=[8, 4, 2, 1], in_channels=[8, 12, 16, 20])
    convs = {k: [m for m in h if isinstance(m, nn.Conv2d)] for k, h in disc.heads.items()}
    assert [c.kernel_size[0] for c in convs["0"]] == [4, 4, 1]  # 8 -> 4 -> 1x1
    assert [c.kernel_size[0] for c in convs["1"]] == [4, 1]  # 4x4 input: no down-sampling stage
    assert [c.kernel_size[0] for c in convs["2"]] == [2, 1]  # 2x2 input: a 2x2 conv covers it
    assert [c.in_channels for c in convs["3"]] == [20, 20]
    feats = [torch.randn(3, c, r, r) for c, r in zip([8, 12, 16, 20], [8, 4, 2, 1])]
    assert_heads_independent(disc, feats)
    with pytest.raises(ValueError, match="one per feature"):
        Discriminator_EDM(all_res=[32, 16, 8], in_channels=[8, 8])


def test_edm_head_odd_resolution_reaches_1x1():
    head = edm_head(8, 6)
    assert head(torch.randn(2, 8, 6, 6)).shape == (2, 1, 1, 1)


def test_feature_errors():
    disc = Discriminator_EDM(feature_indices=[0, 1], all_res=[16, 8], in_channels=8)
    with pytest.raises(ValueError, match="expected 2"):
        disc([torch.randn(2, 8, 16, 16)])
    with pytest.raises(ValueError, match="out of range"):
        Discriminator_EDM(feature_indices=[3], all_res=[16, 8], in_channels=8)


def test_image_dit_discriminator():
    torch.manual_seed(0)
    disc = Discriminator_ImageDiT(num_blocks=6, inner_dim=16)
    assert disc.feature_indices == [3]
    disc = Discriminator_ImageDiT(feature_indices=[1, 4], num_blocks=6, inner_dim=16)
    head = disc.heads["1"]
    assert head[0].out_channels == 8 and head[0].stride == (2, 2) and head[1].num_groups == 2
    assert isinstance(head[2], nn.LeakyReLU) and head[2].negative_slope == 0.2
    feats = [torch.randn(3, 16, 8, 8), torch.randn(3, 16, 8, 8)]
    logits = assert_heads_independent(disc, feats)
    # global average pool of the 1x1-conv logit map
    torch.testing.assert_close(logits[:, 0], head[:-1](feats[0]).mean(dim=(1, 2, 3)))


def test_mlp_discriminator_for_vector_features():
    torch.manual_seed(0)
    disc = Discriminator_MLP(in_dims=[2, 8, 8], hidden_dim=16)
    assert disc.feature_indices == [2] and disc.heads["2"][0].in_features == 8
    disc = Discriminator_MLP(feature_indices=[0, 2], in_dims=[2, 8, 6], hidden_dim=16)
    logits = assert_heads_independent(disc, [torch.randn(5, 2), torch.randn(5, 6)])
    assert logits.shape == (5, 2)
    same_width = Discriminator_MLP(feature_indices=[1, 3], in_dims=8, hidden_dim=16)
    assert same_width.feature_indices == [1, 3]
    assert same_width([torch.randn(4, 8), torch.randn(4, 8)]).shape == (4, 2)


# ------------------------------------------------------------------------------ Stable Diffusion U-Net heads
def test_sd_discriminators_match_the_reference_layout():
    from fastgen.networks.discriminators import Discriminator_SD15, Discriminator_SDXL

    with torch.device("meta"):  # full-size 1280-channel heads: check the layout without allocating them
        sd15, sdxl, sdxl512 = Discriminator_SD15(), Discriminator_SDXL(), Discriminator_SDXL(resolution=512)
    assert sd15.all_res == [32, 16, 8, 8, 8] and sd15.feature_indices == [4] and sd15.in_channels[4] == 1280
    assert sd15.in_channels == [320, 640, 1280, 1280, 1280]
    assert sdxl512.all_res == [32, 16, 16, 16]
    assert sdxl.all_res == [64, 32, 32, 32] and sdxl.feature_indices == [3] and sdxl.in_channels[3] == 1280
    # the mid-block head: 8x8 -> (conv4x4 s2) 4x4 -> (conv4x4 s4) 1x1 -> 1x1 conv, as for EDM features
    head = sd15.heads["4"]
    assert [m.kernel_size for m in head if isinstance(m, nn.Conv2d)] == [(4, 4), (4, 4), (1, 1)]
    assert head[0].in_channels == 1280 and head[-1].out_channels == 1


@pytest.mark.parametrize("name", ["Discriminator_SD15", "Discriminator_SDXL"])
def test_sd_discriminators_logits_and_gradients(name):
    import fastgen.networks.discriminators as D

    torch.manual_seed(0)
    cls = getattr(D, name)
    n = 5 if name.endswith("SD15") else 4
    channels = [8, 8, 16, 16, 16][:n]
    disc = cls(feature_indices=range(n), resolution=128, in_channels=channels)  # latents 16x16
    res = disc.all_res
    assert res == ([8, 4, 2, 2, 2] if n == 5 else [8, 4, 4, 4])
    feats = [torch.randn(2, c, r, r) for c, r in zip(channels, res)]
    logits = assert_heads_independent(disc, feats)
    assert logits.shape == (2, n)
    # per-sample: a logit depends only on its own sample's features
    feats2 = [f.clone() for f in feats]
    feats2[0][1] += 1.0
    changed = disc(feats2)
    torch.testing.assert_close(changed[0], logits[0])
    assert not torch.allclose(changed[1, 0], logits[1, 0])


def test_smoke_overrides_fit_heads_to_tiny_features():
    from fastgen.networks.discriminators import Discriminator, Discriminator_SD15

    shapes = [(8, 4, 4), (16, 2, 2), (16, 2, 2)]
    kw = Discriminator_SD15.smoke_overrides({"feature_indices": [0, 4], "resolution": 512}, shapes)
    assert kw == {"all_res": [4, 2, 2], "in_channels": [8, 16, 16], "feature_indices": [0, 2]}
    disc = Discriminator_SD15(**kw)
    assert disc(dict(enumerate(torch.randn(2, *s) for s in shapes))).shape == (2, 2)
    # transformer heads: 57 Flux blocks -> the same relative depth of 3 tiny blocks; None (middle) stays None
    flux = Discriminator_ImageDiT.smoke_overrides({"num_blocks": 57, "feature_indices": [28, 56]}, [(6, 2, 2)] * 3)
    assert flux == {"num_blocks": 3, "inner_dim": 6, "feature_indices": [1, 2]}
    assert Discriminator_ImageDiT.smoke_overrides({"num_blocks": 60}, [(6, 2, 2)] * 4)["feature_indices"] is None
    assert Discriminator.smoke_indices([0, 1, 2], 3, 3) == [0, 1, 2]
    with pytest.raises(NotImplementedError, match="Discriminator declares no tiny size"):
        Discriminator.smoke_overrides({}, shapes)


@pytest.mark.parametrize("method", ["dmd2", "f_distill", "ladd"])
@pytest.mark.parametrize("disc", ["Discriminator_SD15_Res512_Config", "Discriminator_SDXL_Res1024_Config",
                                  "Discriminator_ImageDiT_Flux_Config"])
def test_gan_methods_use_the_image_discriminators_unchanged(method, disc, tmp_path, monkeypatch, capsys, one_thread):
    """One critic and one generator step of DMD2 / f-distill / LADD with each image discriminator on the features
    of a tiny EDM teacher (fitted by --smoke): finite losses, and the critic step trains the heads."""
    import importlib

    from fastgen.configs import discriminator as D
    from fastgen.smoke import apply_smoke
    from fastgen.utils import instantiate

    monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    config = importlib.import_module(f"fastgen.configs.methods.config_{method}").create_config()
    config.model.discriminator = getattr(D, disc)
    apply_smoke(config, output_root=str(tmp_path))
    torch.manual_seed(0)
    model = instantiate(config.model_class, config=config.model)
    model.on_train_begin()
    model.init_optimizers()
    data = next(iter(instantiate(config.dataloader_train)))
    freq = config.model.student_update_freq
    for iteration in (1, freq):  # critic step, then generator step
        model.optimizers_zero_grad(iteration)
        loss_map, _ = model.single_train_step(data, iteration)
        assert torch.isfinite(loss_map["total_loss"])
        loss_map["total_loss"].backward()
        grads = [p.grad for p in model.discriminator.parameters() if p.grad is not None]
        if iteration == 1:
            assert grads and sum(g.abs().sum() for g in grads) > 0
        else:  # generator step: the heads are frozen, the student gets the GAN gradient
            assert not grads
            assert sum(p.grad.abs().sum() for p in model.net.parameters() if p.grad is not None) > 0
    capsys.readouterr()
