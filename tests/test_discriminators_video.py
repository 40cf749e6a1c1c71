"""Video discriminator heads (all 14 reference kinds): logits [B, heads], gradients reach their own feature only,
inputs change logits, the trunks' structure (space/time factorisation, attention), --smoke sizing, configs."""

import pytest
import torch
from test_discriminators import assert_heads_independent

import fastgen.configs.discriminator as D
from fastgen.networks.discriminators_video import (
    VIDEO_DISC_TYPES,
    Discriminator_VideoDiT,
    FactorizedTrunk,
    TokenAttention,
    relative_indices,
)
from fastgen.utils import instantiate, locate

REFERENCE_KINDS = {
    "dit_simple_conv3d", "conv3d_down_mlp", "conv3d_down_mlp_efficient", "conv1d_2d_down_mlp",
    "conv1d_2d_down_mlp_efficient", "attention_down_mlp", "attention_down_mlp_efficient", "multiscale_down_mlp",
    "multiscale_down_mlp_efficient", "multiscale_down_mlp_medium", "multiscale_down_mlp_large",
    "factorized_down_mlp", "factorized_down_mlp_efficient", "factorized_down_mlp_large",
}


def test_all_reference_kinds_exist():
    assert set(VIDEO_DISC_TYPES) == REFERENCE_KINDS and len(VIDEO_DISC_TYPES) == 14


@pytest.mark.parametrize("disc_type", sorted(REFERENCE_KINDS))
def test_video_head_kind(disc_type):
    torch.manual_seed(0)
    disc = Discriminator_VideoDiT(feature_indices=[3, 1], num_blocks=4, disc_type=disc_type, inner_dim=16)
    assert disc.feature_indices == [1, 3]
    feats = [torch.randn(2, 16, 3, 6, 6), torch.randn(2, 16, 3, 6, 6)]
    logits = assert_heads_independent(disc, feats)  # [B, 2], finite, grads reach own feature only
    other = disc([torch.randn(2, 16, 3, 6, 6), torch.randn(2, 16, 3, 6, 6)])
    assert (other - logits).abs().min() > 1e-6  # every logit moves with its input
    assert (logits[0] - logits[1]).abs().min() > 1e-6  # and differs between samples
    # per-sample: a batch of one gives the same logit
    torch.testing.assert_close(disc([f[:1] for f in feats]), logits[:1].detach(), rtol=1e-4, atol=1e-5)
    # a single frame at 2x2 still works
    assert disc([torch.randn(2, 16, 1, 2, 2)] * 2).shape == (2, 2)


def test_trunk_structure():
    def convs(head):
        return [(m.kernel_size, m.stride) for m in head.modules() if isinstance(m, torch.nn.Conv3d)]

    disc = Discriminator_VideoDiT([0], 1, "conv1d_2d_down_mlp", inner_dim=16)
    space, time = ((1, 3, 3), (1, 2, 2)), ((3, 1, 1), (2, 1, 1))
    assert convs(disc.heads["0"]) == [space, time, space, time]
    eff = Discriminator_VideoDiT([0], 1, "conv1d_2d_down_mlp_efficient", inner_dim=16)
    assert convs(eff.heads["0"])[0] == ((1, 1, 1), (1, 1, 1)) and eff.heads["0"].reduce[0].out_channels == 4
    att = Discriminator_VideoDiT([0], 1, "attention_down_mlp", inner_dim=16).heads["0"]
    assert isinstance(att.trunk.mixer, TokenAttention) and convs(att) == [((3, 3, 3), (2, 2, 2))] * 2
    fac = Discriminator_VideoDiT([0], 1, "factorized_down_mlp_large", inner_dim=16).heads["0"]
    assert fac.trunk.out_features == 32 and fac.mlp[0].out_features == 32
    large = Discriminator_VideoDiT([0], 1, "multiscale_down_mlp_large", inner_dim=16).heads["0"]
    assert large.mlp[0].in_features == 16 * 3 and large.mlp[0].out_features == 32
    medium = Discriminator_VideoDiT([0], 1, "multiscale_down_mlp_medium", inner_dim=16).heads["0"]
    assert medium.mlp[0].in_features == 8 * 3 and medium.mlp[0].out_features == 16


def test_width_cap_keeps_wide_features_cheap():
    """Trunk width = min(channels // reduce, max_width): a 1x1x1 cut appears whenever the width is below C."""
    for disc_type in ("conv3d_down_mlp", "dit_simple_conv3d", "factorized_down_mlp_large"):
        disc = Discriminator_VideoDiT([0], 1, disc_type, inner_dim=32, max_width=8)
        first = next(m for m in disc.heads["0"].modules() if isinstance(m, torch.nn.Conv3d))
        assert (first.in_channels, first.out_channels, first.kernel_size) == (32, 8, (1, 1, 1))
        assert disc([torch.randn(2, 32, 2, 4, 4)]).shape == (2, 1)
    full = Discriminator_VideoDiT([0], 1, "conv3d_down_mlp", inner_dim=32)  # below the default cap: no cut
    assert isinstance(full.heads["0"].reduce, torch.nn.Identity)
    # Cosmos-14B's 5120-wide features (built on the meta device: no memory): ~90M weights per head with the default
    # cap instead of ~2.1B at full width
    with torch.device("meta"):
        capped = Discriminator_VideoDiT([18], 36, "multiscale_down_mlp_large", inner_dim=5120)
        uncapped = Discriminator_VideoDiT([18], 36, "multiscale_down_mlp_large", inner_dim=5120, max_width=5120)
    n_capped, n_full = (sum(p.numel() for p in d.parameters()) for d in (capped, uncapped))
    assert 80e6 < n_capped < 100e6 and n_full > 2e9


def test_factorized_trunk_separates_appearance_from_motion():
    """Reversing the frames leaves the appearance half unchanged (per-frame convs, mean over T) and moves the
    motion half (temporal convs see the order)."""
    torch.manual_seed(0)
    trunk = FactorizedTrunk(8, num_down=2)
    x = torch.randn(2, 8, 5, 6, 6)
    out, rev = trunk(x), trunk(x.flip(2))
    torch.testing.assert_close(out[:, :8], rev[:, :8], rtol=1e-5, atol=1e-6)
    assert (out[:, 8:] - rev[:, 8:]).abs().max() > 1e-3


def test_token_attention_mixes_all_tokens():
    """Changing one far token changes the output at another position (a 3^3 conv could not)."""
    torch.manual_seed(0)
    att = TokenAttention(8)
    x = torch.randn(1, 8, 2, 4, 4)
    y = x.clone()
    y[:, :, -1, -1, -1] += torch.randn(1, 8)  # not constant over channels (LayerNorm would remove that)
    diff = (att(x) - att(y)).abs()
    assert diff[:, :, 0, 0, 0].max() > 1e-4


def test_defaults_and_unknown_type():
    disc = Discriminator_VideoDiT(num_blocks=30, inner_dim=16)
    assert disc.feature_indices == [15] and disc.disc_type == "conv3d_down_mlp_efficient"
    assert disc.heads["15"].reduce[0].out_channels == 4
    with pytest.raises(ValueError, match="conv3d_down_mlp_efficient") as err:
        Discriminator_VideoDiT([0], num_blocks=2, disc_type="transformer_head", inner_dim=16)
    assert "transformer_head" in str(err.value) and "factorized_down_mlp_large" in str(err.value)


def test_old_dotted_target_and_family_configs():
    assert locate("fastgen.networks.discriminators.Discriminator_VideoDiT") is Discriminator_VideoDiT
    from fastgen.networks.discriminators import VIDEO_DISC_TYPES as old

    assert old is VIDEO_DISC_TYPES
    expected = {  # (num_blocks, inner_dim, experiment feature indices)
        "CogVideoX_2B": (30, 480, [15, 22, 29]), "CogVideoX_5B": (42, 768, [21, 31, 41]),
        "Wan_1_3B": (30, 384, [15, 22, 29]), "Wan_14B": (40, 1280, [20, 30, 39]),
        "Wan22_5B": (30, 768, [15, 22, 29]), "CosmosPredict2_2B": (28, 2048, [13, 20, 27]),
        "CosmosPredict2_14B": (36, 5120, [18, 27, 35]),
    }
    for family, (blocks, dim, indices) in expected.items():
        base, exp = getattr(D, f"Discriminator_{family}_Config"), getattr(D, f"Discriminator_{family}_Multiscale_Config")
        assert (base.num_blocks, base.inner_dim, base.feature_indices) == (blocks, dim, None)
        assert (exp.num_blocks, exp.inner_dim, list(exp.feature_indices)) == (blocks, dim, indices)
        assert exp.disc_type == "multiscale_down_mlp_large" and locate(exp._target_) is Discriminator_VideoDiT


def test_smoke_overrides_fit_a_tiny_teacher():
    cfg = D.Discriminator_Wan_1_3B_Multiscale_Config
    shapes = [(8, 2, 4, 4)] * 4  # a 4-block tiny teacher with 8-channel video features
    over = Discriminator_VideoDiT.smoke_overrides(dict(cfg), shapes)
    assert over == {"num_blocks": 4, "inner_dim": 8, "feature_indices": [2, 3]}  # 15,22,29 of 30 -> 2,2,3 of 4
    disc = instantiate(cfg, **over)
    assert disc.disc_type == "multiscale_down_mlp_large"
    assert disc([torch.randn(2, 8, 2, 4, 4)] * 2).shape == (2, 2)
    assert Discriminator_VideoDiT.smoke_overrides(dict(D.Discriminator_Wan_1_3B_Config), shapes)[
        "feature_indices"] is None
    with pytest.raises(ValueError, match=r"video features \(C, T, h, w\)"):
        Discriminator_VideoDiT.smoke_overrides(dict(cfg), [(8, 4, 4)])
    assert relative_indices([0, 39], 40, 4) == [0, 3]
