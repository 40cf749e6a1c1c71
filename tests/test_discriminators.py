"""Discriminator heads: logits [B, heads], each head sees only its own feature, GroupNorm group choice, tiny
resolutions (the video heads: test_discriminators_video.py)."""

import pytest
import torch
from torch import nn

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
        (64, 32),
        (48, 24),
        (100, 25),
        (37, 1),
        (96, 32),
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
