"""EDM2Precond: magnitude-preserving layers, preconditioning, logvar head, forced weight normalisation, JVP."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fastgen.networks.EDM2.layers import MPConv, mp_cat, mp_silu, mp_sum, normalize
from fastgen.networks.EDM2.network import EDM2Precond

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
TINY = dict(img_resolution=8, img_channels=3, label_dim=10, model_channels=16, channel_mult=[1, 2], num_blocks=1,
            attn_resolutions=[4], channels_per_head=8, logvar_channels=16)  # fmt: skip


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny convolutions run much faster on one thread than on a shared, oversubscribed pair of cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_net(seed=0, gains=True, **kw):
    """Tiny EDM2 net; `gains` sets the zero-initialised gains to 1 so the UNet output is not identically 0."""
    torch.manual_seed(seed)
    net = EDM2Precond(**{**TINY, **kw}).eval()
    if gains:
        with torch.no_grad():
            for name, p in net.named_parameters():
                if name.endswith("gain"):
                    p.fill_(1.0)
    return net


def one_hot(classes, n=10):
    return F.one_hot(torch.tensor(classes), n).float()


def inputs(batch=2, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, 8, 8, generator=gen).to(dtype), torch.tensor([0.3, 5.0, 40.0][:batch]).double()


# ---------------------------------------------------------------- magnitude-preserving primitives
def test_mp_primitives_preserve_unit_magnitude():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 64, 32, 32, generator=gen), torch.randn(4, 64, 32, 32, generator=gen)
    rms = lambda v: v.square().mean().sqrt().item()  # noqa: E731
    assert rms(mp_sum(a, b, t=0.3)) == pytest.approx(1.0, abs=0.02)
    assert rms(mp_cat(a[:, :16], b, t=0.7)) == pytest.approx(1.0, abs=0.02)
    assert rms(mp_silu(a)) == pytest.approx(1.0, abs=0.02)
    conv = MPConv(64, 32, kernel=[3, 3])
    with torch.no_grad():
        conv.weight.mul_(7.0)  # any weight scale: the forward normalises it
    assert rms(conv(a)[:, :, 1:-1, 1:-1]) == pytest.approx(1.0, abs=0.05)
    n = normalize(torch.randn(5, 3, 4, generator=gen) * 9)
    torch.testing.assert_close(n.flatten(1).norm(dim=1) / math.sqrt(12), torch.ones(5), rtol=1e-3, atol=1e-3)
    # eq. 103 weights: sqrt((Na + Nb) / ((1-t)^2 + t^2)) * (1-t) / sqrt(Na) on the first part
    cat = mp_cat(torch.ones(1, 16), torch.ones(1, 48), t=0.25)
    assert cat[0, 0].item() == pytest.approx(math.sqrt(64 / 0.625) * 0.75 / 4)
    assert cat[0, -1].item() == pytest.approx(math.sqrt(64 / 0.625) * 0.25 / math.sqrt(48))


# ---------------------------------------------------------------- preconditioning / shapes
def test_fresh_network_has_zero_unet_output_so_out_is_c_skip_x():
    net = make_net(gains=False)  # EDM2 initialises out_gain = 0 -> F = 0
    x, t = inputs(3)
    c_skip = (0.25 / (t**2 + 0.25)).float().view(-1, 1, 1, 1)
    torch.testing.assert_close(net(x, t, one_hot([1, 2, 3])), c_skip * x, rtol=1e-6, atol=1e-7)


def test_forward_is_c_skip_x_plus_c_out_unet_of_c_in_x():
    net = make_net()
    x, t = inputs(2)
    cond = one_hot([4, 7])
    c_in = (1 / (t**2 + 0.25).sqrt()).float().view(-1, 1, 1, 1)
    raw, _ = net.unet(c_in * x, (t.log() / 4).float(), cond)
    c_skip = (0.25 / (t**2 + 0.25)).float().view(-1, 1, 1, 1)
    c_out = (t * 0.5 / (t**2 + 0.25).sqrt()).float().view(-1, 1, 1, 1)
    out = net(x, t, cond)
    torch.testing.assert_close(out, c_skip * x + c_out * raw, rtol=1e-5, atol=1e-6)
    assert out.shape == x.shape and out.dtype == torch.float32 and raw.abs().mean() > 1e-2


def test_determinism_and_seed_dependence():
    a, b, c = make_net(seed=1), make_net(seed=1), make_net(seed=2)
    x, t = inputs(2)
    torch.testing.assert_close(a(x, t), b(x, t), rtol=0, atol=0)
    assert not torch.allclose(a(x, t), c(x, t))
    out64 = a.double()(x.double(), t)
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64.float(), b(x, t), rtol=1e-4, atol=1e-5)


def test_label_conditioning():
    net = make_net()
    x, t = inputs(2)
    assert (net(x, t, one_hot([1, 1])) - net(x, t, one_hot([2, 2]))).abs().mean() > 1e-3
    torch.testing.assert_close(net(x, t, None), net(x, t, torch.zeros(2, 10)))
    torch.testing.assert_close(net(x, t, torch.zeros(2, 0)), net(x, t, torch.zeros(2, 10)))


def test_features_and_early_return():
    net = make_net(img_resolution=16, channel_mult=[1, 2, 2], num_blocks=2)
    gen = torch.Generator().manual_seed(0)
    x, t = torch.randn(2, 3, 16, 16, generator=gen), torch.tensor([1.0, 2.0]).double()
    captured = {}
    for name in ("16x16_block1", "8x8_block1", "4x4_block1"):
        net.unet.enc[name].register_forward_hook(lambda m, i, o, name=name: captured.__setitem__(name, o))
    out, feats = net(x, t, feature_indices=[0, 1, 2])
    assert [tuple(f.shape) for f in feats] == [(2, 16, 16, 16), (2, 32, 8, 8), (2, 32, 4, 4)]
    assert net.feature_channels == [16, 32, 32]
    for f, name in zip(feats, ("16x16_block1", "8x8_block1", "4x4_block1")):
        assert torch.equal(f, captured[name])
    early = net(x, t, feature_indices=[2], return_features_early=True)
    torch.testing.assert_close(early[0], feats[2])


def test_logvar_head_is_mp_linear_of_mp_fourier_of_c_noise():
    net = make_net()
    x, t = inputs(2)
    out, logvar = net(x, t, return_logvar=True)
    c_noise = (t.log() / 4).float()
    fourier = net.logvar_fourier
    feats = math.sqrt(2) * torch.cos(torch.outer(c_noise, fourier.freqs) + fourier.phases)
    w = net.logvar_linear.weight  # [1, C]
    w_unit = w / (1e-4 + w.norm(dim=1, keepdim=True) / math.sqrt(w.shape[1]))
    expected = feats @ w_unit.t() / math.sqrt(w.shape[1])
    assert logvar.shape == (2, 1)
    torch.testing.assert_close(logvar, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out, net(x, t))


# ---------------------------------------------------------------- forced weight normalisation
def test_forced_weight_normalization_projects_weights_and_keeps_outputs():
    net = make_net()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, MPConv):
                m.weight.mul_(torch.rand(m.weight.shape[0], *([1] * (m.weight.ndim - 1))) * 5 + 0.5)
    x, t = inputs(2)
    before = net(x, t)
    net.train()
    snapshot = {k: v.clone() for k, v in net.state_dict().items()}
    net(x, t)  # a training forward is pure: it does not rewrite the weights
    assert all(torch.equal(v, snapshot[k]) for k, v in net.state_dict().items())
    net.forced_weight_normalization()
    for m in net.modules():
        if isinstance(m, MPConv):
            rms = m.weight.flatten(1).norm(dim=1) / math.sqrt(m.weight[0].numel())
            torch.testing.assert_close(rms, torch.ones_like(rms), rtol=2e-4, atol=2e-4)
    torch.testing.assert_close(net.eval()(x, t), before, rtol=1e-3, atol=1e-4)


def test_dropout_resolutions_and_embedding_options():
    net = make_net(dropout=0.3, dropout_resolutions=[4])
    drops = {name: blk.dropout for name, blk in list(net.unet.enc.items()) + list(net.unet.dec.items())
             if hasattr(blk, "dropout")}  # fmt: skip
    assert drops["8x8_block0"] == 0.0 and drops["4x4_block0"] == 0.3 and drops["4x4_in0"] == 0.3
    assert drops["8x8_up"] == 0.0
    wide = make_net(mp_fourier_bandwidth=4.0, model_channels=64, channel_mult=[1], attn_resolutions=[])
    narrow = make_net(mp_fourier_bandwidth=0.25, model_channels=64, channel_mult=[1], attn_resolutions=[])
    ratio = wide.unet.emb_fourier.freqs.std() / narrow.unet.emb_fourier.freqs.std()
    assert ratio.item() == pytest.approx(16.0, rel=1e-5)  # same seed: freqs scale with the bandwidth
    pos = make_net(embedding_type="positional")
    x, t = inputs(2)
    assert torch.isfinite(pos(x, t)).all() and "unet.emb_fourier.freqs" not in pos.state_dict()
    with pytest.raises(ValueError, match="embedding_type"):
        make_net(embedding_type="learned")


def test_jvp_matches_finite_differences():
    net = make_net().double()
    gen = torch.Generator().manual_seed(3)
    x, t = inputs(2, dtype=torch.float64)
    dx = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    dt = torch.tensor([0.05, -1.0], dtype=torch.float64)
    cond = one_hot([2, 5]).double()

    def f(x_, t_):
        return net(x_, t_, cond)

    out, tangent = torch.func.jvp(f, (x, t), (dx, dt))
    h = 1e-6
    fd = (f(x + h * dx, t + h * dt) - f(x - h * dx, t - h * dt)) / (2 * h)
    torch.testing.assert_close(out, f(x, t))
    torch.testing.assert_close(tangent, fd, rtol=1e-5, atol=1e-6)


def test_meta_init_and_fsdp_units():
    with torch.device("meta"):
        net = EDM2Precond(**TINY)
    net.to_empty(device="cpu")
    torch.manual_seed(0)
    net.reset_parameters()
    assert net.unet.out_gain.item() == 0.0 and torch.isfinite(net.unet.emb_fourier.freqs).all()
    x, t = inputs(2)
    assert torch.isfinite(net.eval()(x, t)).all()
    # enc: 8x8_block0, 4x4_down, 4x4_block0; dec: 4x4_in0/in1/block0/block1, 8x8_up/block0/block1
    assert len(net.fsdp_units()) == 3 + 7


# ---------------------------------------------------------------- FSDP2 (2 gloo processes)
def _fsdp_worker(rank, world_size, init_file, out_dir):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        reference, sharded = make_net(seed=4), make_net(seed=4).fully_shard()
        for net in (reference, sharded):
            with torch.no_grad():
                for m in net.modules():
                    if isinstance(m, MPConv):
                        m.weight.mul_(3.0)
            net.forced_weight_normalization()  # on the sharded net this runs on each rank's shard
        x, t = inputs(2)
        out_ref, out = reference(x, t, one_hot([1, 2])), sharded(x, t, one_hot([1, 2]))
        out_ref.square().mean().backward()
        out.square().mean().backward()
        grads = {n: p.grad.full_tensor() for n, p in sharded.named_parameters() if p.grad is not None}
        weights = {n: p.full_tensor() for n, p in sharded.named_parameters()}
        torch.save({
            "out_diff": (out - out_ref).abs().max().item(),
            "grad_diff": max((grads[n] - p.grad).abs().max().item() for n, p in reference.named_parameters()
                             if p.grad is not None),
            "grad_key_mismatch": float(grads.keys() != {n for n, p in reference.named_parameters() if p.grad is not None}),
            "weight_diff": max((weights[n] - p).abs().max().item() for n, p in reference.named_parameters()),
        }, f"{out_dir}/rank{rank}.pt")  # fmt: skip
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_fully_shard_and_sharded_forced_weight_normalization(tmp_path):
    torch.multiprocessing.spawn(_fsdp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert max(result.values()) < 1e-5, result
