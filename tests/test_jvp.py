"""JVP via torch.func.jvp and central differences agree with each other and with analytic derivatives; RNG replay
gives the trained pass the dropout mask of the target pass; EDM's SongUNet (tiny) supports the autograd JVP."""

import pytest
import torch

from fastgen.methods.consistency_model.jvp import capture_rng, jvp, replay_rng
from fastgen.networks.EDM.network import EDMPrecond
from fastgen.networks.toy import ToyMLP


def test_jvp_matches_analytic_derivative():
    x = torch.tensor([[0.3, -1.2], [2.0, 0.5]], dtype=torch.float64)
    t = torch.tensor([0.7, 1.9], dtype=torch.float64)
    v = torch.tensor([[1.0, 2.0], [-0.5, 0.25]], dtype=torch.float64)

    def fn(x, t):  # f = sin(x) * t^2 -> df = cos(x) v t^2 + sin(x) 2 t
        return torch.sin(x) * t[:, None] ** 2

    expected = torch.cos(x) * v * t[:, None] ** 2 + torch.sin(x) * 2 * t[:, None]
    for jvp_type in ("autograd", "finite_diff"):
        out, tangent = jvp(fn, (x, t), (v, torch.ones_like(t)), jvp_type=jvp_type, finite_diff_eps=1e-5)
        torch.testing.assert_close(out, fn(x, t))
        torch.testing.assert_close(tangent, expected, atol=1e-8, rtol=1e-7)
    # a per-sample step size works the same
    _, tangent = jvp(fn, (x, t), (v, torch.ones_like(t)), "finite_diff", finite_diff_eps=1e-5 * t)
    torch.testing.assert_close(tangent, expected, atol=1e-8, rtol=1e-7)
    with pytest.raises(ValueError, match="jvp_type"):
        jvp(fn, (x, t), (v, t), jvp_type="forward")


def test_toy_mlp_jvp_autograd_equals_finite_difference():
    torch.manual_seed(0)
    net = ToyMLP(hidden_dim=32, num_layers=2, r_timestep=True, net_pred_type="flow", schedule_type="rf").double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.3 * torch.randn_like(p))
    x = torch.randn(6, 2, dtype=torch.float64)
    t = torch.rand(6, dtype=torch.float64) * 0.8 + 0.1
    r = t * 0.5
    v = torch.randn_like(x)

    def u(x, t, r):
        return net(x, t, r=r)

    args = ((x, t, r), (v, torch.ones_like(t), torch.zeros_like(r)))
    out_a, tan_a = jvp(u, *args, jvp_type="autograd")
    out_f, tan_f = jvp(u, *args, jvp_type="finite_diff", finite_diff_eps=1e-6)
    torch.testing.assert_close(out_a, out_f)
    torch.testing.assert_close(tan_a, tan_f, atol=1e-6, rtol=1e-5)
    assert tan_a.abs().max() > 1e-3  # a non-trivial derivative


def test_rng_replay_shares_dropout_mask_and_restores_stream():
    drop = torch.nn.Dropout(0.5)
    x = torch.ones(1000)
    torch.manual_seed(3)
    state = capture_rng()
    first = drop(x)
    after_first = torch.rand(3)
    torch.manual_seed(3)
    _ = capture_rng()
    _ = drop(x)
    with replay_rng(state):
        replayed = drop(x)
    assert torch.equal(first, replayed)
    assert torch.equal(torch.rand(3), after_first)  # the global stream is untouched by the replay


def test_edm_songunet_tiny_jvp_with_dropout():
    """EDM SongUNet (8x8, 16 channels, attention at 4x4, dropout 0.2, train mode) under torch.func.jvp equals
    the central finite difference with the same dropout mask (float64 for a tight comparison)."""
    torch.manual_seed(0)
    net = EDMPrecond(img_resolution=8, img_channels=3, model_channels=16, channel_mult=[1, 2], num_blocks=1,
                     attn_resolutions=[4], dropout=0.2, enable_logvar=True).double().train()
    with torch.no_grad():  # EDM zero-initialises output layers; random weights make the derivative non-trivial
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    t = torch.tensor([0.4, 3.0], dtype=torch.float64)
    v = torch.randn_like(x)
    state = capture_rng()

    def fn(x, t):
        return net(x, t)

    out_a, tan_a = jvp(fn, (x, t), (v, torch.ones_like(t)), "autograd", rng_state=state)
    out_f, tan_f = jvp(fn, (x, t), (v, torch.ones_like(t)), "finite_diff", finite_diff_eps=1e-6, rng_state=state)
    torch.testing.assert_close(out_a, out_f)
    torch.testing.assert_close(tan_a, tan_f, atol=1e-5, rtol=1e-4)
    with replay_rng(state):
        torch.testing.assert_close(net(x, t), out_a)  # the trained pass sees the same dropout mask
    assert tan_a.abs().mean() > 1e-3
