"""EDMPrecond (SongUNet / DhariwalUNet): preconditioning math, conditioning, features, logvar, r, JVP, sampling."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fastgen.networks.EDM.layers import Conv2d, UNetBlock, resample_kernel
from fastgen.networks.EDM.network import EDMPrecond
from fastgen.networks.EDM.precond import edm_precond_coefficients

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
SONG = dict(model_type="SongUNet", model_channels=16, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4])
DHARIWAL = dict(model_type="DhariwalUNet", model_channels=64, channel_mult=[1, 1], num_blocks=1, attn_resolutions=[4])


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny convolutions run much faster on one thread than on a shared, oversubscribed pair of cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_net(seed=0, arch=SONG, **kw):
    torch.manual_seed(seed)
    args = dict(img_resolution=8, img_channels=3, label_dim=10, dropout=0.0, **arch)
    args.update(kw)
    return EDMPrecond(**args).eval()


def randomize_(net, seed=1, std=0.3):
    """Replace the (partly zero) init by random weights so every path contributes."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * std)
    return net


def one_hot(classes, n=10):
    return F.one_hot(torch.tensor(classes), n).float()


def inputs(batch=2, res=8, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, res, res, generator=gen).to(dtype)
    t = torch.tensor([0.3, 4.0, 20.0, 0.05][:batch], dtype=torch.float64)
    return x, t


def final_conv(net):
    return net.unet.dec["8x8_aux_conv"] if net.model_type == "SongUNet" else net.unet.out_conv


# ---------------------------------------------------------------- preconditioning
def test_precond_coefficients_match_edm_table():
    sigma = torch.tensor([0.002, 0.5, 1.0, 80.0], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = edm_precond_coefficients(sigma, 0.5)
    for i, s in enumerate(sigma.tolist()):
        assert c_skip[i].item() == pytest.approx(0.25 / (s * s + 0.25), rel=1e-12)
        assert c_out[i].item() == pytest.approx(s * 0.5 / math.sqrt(s * s + 0.25), rel=1e-12)
        assert c_in[i].item() == pytest.approx(1 / math.sqrt(0.25 + s * s), rel=1e-12)
        assert c_noise[i].item() == pytest.approx(math.log(s) / 4, rel=1e-12)
    # at sigma = sigma_data the skip and output weights are both 1/2 and 1/sqrt(2) * sd
    c_skip, c_out, _, _ = edm_precond_coefficients(torch.tensor(0.5, dtype=torch.float64), 0.5)
    assert c_skip.item() == pytest.approx(0.5) and c_out.item() == pytest.approx(0.5 / math.sqrt(2))


@pytest.mark.parametrize("arch", [SONG, DHARIWAL], ids=["song", "dhariwal"])
def test_zero_final_layer_gives_c_skip_x_and_bias_gives_c_out(arch):
    net = randomize_(make_net(arch=arch))
    conv = final_conv(net)
    x, t = inputs(3)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
    out = net(x, t, one_hot([1, 2, 3]))
    c_skip = (0.25 / (t**2 + 0.25)).float().view(-1, 1, 1, 1)
    torch.testing.assert_close(out, c_skip * x, rtol=1e-6, atol=1e-7)
    bias = torch.tensor([1.0, -2.0, 3.0])
    with torch.no_grad():
        conv.bias.copy_(bias)
    out = net(x, t, one_hot([1, 2, 3]))
    c_out = (t * 0.5 / (t**2 + 0.25).sqrt()).float().view(-1, 1, 1, 1)
    torch.testing.assert_close(out, c_skip * x + c_out * bias.view(1, 3, 1, 1), rtol=1e-5, atol=1e-6)


def test_forward_is_c_skip_x_plus_c_out_unet_of_c_in_x():
    net = randomize_(make_net())
    x, t = inputs(2)
    cond = one_hot([4, 7])
    c_in = (1 / (t**2 + 0.25).sqrt()).float().view(-1, 1, 1, 1)
    raw, _ = net.unet(c_in * x, (t.log() / 4).float(), cond)
    c_skip = (0.25 / (t**2 + 0.25)).float().view(-1, 1, 1, 1)
    c_out = (t * 0.5 / (t**2 + 0.25).sqrt()).float().view(-1, 1, 1, 1)
    torch.testing.assert_close(net(x, t, cond), c_skip * x + c_out * raw, rtol=1e-5, atol=1e-6)
    # drop_precond="both" exposes that raw output; "input" feeds x unscaled
    both = make_net(drop_precond="both")
    both.load_state_dict(net.state_dict())
    torch.testing.assert_close(both(c_in * x, t, cond), raw, rtol=1e-5, atol=1e-6)
    inp = make_net(drop_precond="input")
    inp.load_state_dict(net.state_dict())
    torch.testing.assert_close(inp(c_in * x, t, cond), c_skip * c_in * x + c_out * raw, rtol=1e-5, atol=1e-6)


def test_fwd_pred_type_converts_through_the_schedule():
    net = randomize_(make_net())
    x, t = inputs(2)
    x0 = net(x, t)
    eps = net(x, t, fwd_pred_type="eps")
    torch.testing.assert_close(eps, (x - x0) / t.float().view(-1, 1, 1, 1), rtol=1e-5, atol=1e-5)


def test_rf_schedule_with_dropped_precond_outputs_raw_flow():
    net = randomize_(make_net(schedule_type="rf", drop_precond="both", net_pred_type="flow"))
    x, _ = inputs(2)
    t = torch.tensor([0.0, 0.7], dtype=torch.float64)
    flow = net(x, t)
    raw, _ = net.unet(x, (t * 1000).float(), torch.zeros(2, 10))
    torch.testing.assert_close(flow, raw)
    x0 = net(x, t, fwd_pred_type="x0")  # rf: x0 = x_t - t * flow
    torch.testing.assert_close(x0, x - t.float().view(-1, 1, 1, 1) * flow, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="drop_precond='both'"):
        make_net(schedule_type="rf")


def test_sigma_shift_applies_in_eval_only():
    base = randomize_(make_net())
    shifted = make_net(sigma_shift=0.1)
    shifted.load_state_dict(base.state_dict())
    x, t = inputs(2)
    torch.testing.assert_close(shifted(x, t), base(x, t - 0.1))
    shifted.train()
    base.train()
    torch.testing.assert_close(shifted(x, t), base(x, t))


# ---------------------------------------------------------------- shapes, dtypes, determinism
@pytest.mark.parametrize("arch", [SONG, DHARIWAL], ids=["song", "dhariwal"])
def test_forward_shapes_dtypes_and_determinism(arch):
    net_a, net_b = make_net(seed=3, arch=arch), make_net(seed=3, arch=arch)
    for (ka, va), (kb, vb) in zip(net_a.state_dict().items(), net_b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    x, t = inputs(2)
    out = net_a(x, t, one_hot([0, 1]))
    assert out.shape == x.shape and out.dtype == torch.float32 and torch.isfinite(out).all()
    torch.testing.assert_close(out, net_b(x, t, one_hot([0, 1])), rtol=0, atol=0)
    other = randomize_(make_net(seed=4, arch=arch), seed=5)
    assert not torch.allclose(other(x, t, one_hot([0, 1])), out)
    # float64 network and input -> float64; a bf16 input runs in bf16 and stays close to float32
    out64 = net_a.double()(x.double(), t, one_hot([0, 1]))
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64.float(), out, rtol=1e-4, atol=1e-5)
    net_a.float()
    out_bf16 = net_a(x.bfloat16(), t, one_hot([0, 1]))
    assert out_bf16.dtype == torch.bfloat16
    assert (out_bf16.float() - out).abs().max() < 0.1


def test_scalar_time_broadcasts_to_the_batch():
    net = randomize_(make_net())
    x, _ = inputs(2)
    torch.testing.assert_close(net(x, 2.0), net(x, torch.tensor([2.0, 2.0], dtype=torch.float64)))


# ---------------------------------------------------------------- conditioning
def test_class_labels_change_output_and_unconditional_forms_agree():
    net = randomize_(make_net())
    x, t = inputs(2)
    a, b = net(x, t, one_hot([1, 1])), net(x, t, one_hot([2, 2]))
    assert (a - b).abs().mean() > 1e-3
    uncond = net(x, t, torch.zeros(2, 10))
    torch.testing.assert_close(net(x, t, None), uncond)
    torch.testing.assert_close(net(x, t, torch.zeros(2, 0)), uncond)
    with pytest.raises(ValueError, match="label_dim"):
        net(x, t, torch.zeros(2, 7))


def test_label_dropout_one_makes_training_forward_unconditional():
    net = randomize_(make_net(label_dropout=1.0)).train()
    x, t = inputs(2)
    torch.testing.assert_close(net(x, t, one_hot([3, 4])), net(x, t, None))


def test_augment_labels_from_dict_condition():
    net = randomize_(make_net(augment_dim=9))
    x, t = inputs(2)
    cond = one_hot([1, 5])
    plain = net(x, t, cond)
    zero_aug = net(x, t, {"orig_condition": cond, "aug_condition": torch.zeros(2, 9)})
    torch.testing.assert_close(zero_aug, plain)  # map_augment has no bias: zero labels add nothing
    aug = net(x, t, {"orig_condition": cond, "aug_condition": torch.ones(2, 9)})
    assert (aug - plain).abs().mean() > 1e-3
    with pytest.raises(ValueError, match="augment_dim"):
        net(x, t, {"orig_condition": cond, "aug_condition": torch.ones(2, 6)})


def test_unconditional_network_ignores_condition():
    net = randomize_(make_net(label_dim=0))
    x, t = inputs(2)
    torch.testing.assert_close(net(x, t, one_hot([1, 2])), net(x, t))


# ---------------------------------------------------------------- features / logvar / r
@pytest.mark.parametrize("arch", [SONG, DHARIWAL], ids=["song", "dhariwal"])
def test_features_are_last_encoder_block_per_resolution(arch):
    net = randomize_(make_net(arch=dict(arch, channel_mult=[1, 2, 2], num_blocks=2), img_resolution=16))
    x, t = inputs(2, res=16)
    captured, decoder_calls = {}, []
    for name in ("16x16_block1", "8x8_block1", "4x4_block1"):
        net.unet.enc[name].register_forward_hook(lambda m, i, o, name=name: captured.__setitem__(name, o))
    next(iter(net.unet.dec.values())).register_forward_hook(lambda *a: decoder_calls.append(1))
    out, feats = net(x, t, one_hot([0, 1]), feature_indices={2, 0, 1})
    c = arch["model_channels"]
    assert [tuple(f.shape) for f in feats] == [(2, c, 16, 16), (2, 2 * c, 8, 8), (2, 2 * c, 4, 4)]
    assert net.feature_channels == [c, 2 * c, 2 * c] and net.feature_resolutions == [16, 8, 4]
    for f, name in zip(feats, ("16x16_block1", "8x8_block1", "4x4_block1")):
        assert torch.equal(f, captured[name])
    assert len(decoder_calls) == 1
    early = net(x, t, one_hot([0, 1]), feature_indices=[1], return_features_early=True)
    assert isinstance(early, list) and len(early) == 1
    torch.testing.assert_close(early[0], feats[1])
    assert len(decoder_calls) == 1  # the early pass never reached the decoder
    with pytest.raises(ValueError, match="out of range"):
        net(x, t, feature_indices=[3])
    assert net(x, t, return_features_early=True) == []  # no features asked: nothing to compute


def test_logvar_head_on_noise_embedding():
    net = randomize_(make_net(enable_logvar=True))
    x, t = inputs(2)
    out, logvar = net(x, t, return_logvar=True)
    emb = net.unet.noise_features((t.log() / 4).float())
    expected = emb @ net.logvar_linear.weight.t() + net.logvar_linear.bias
    assert logvar.shape == (2, 1)
    torch.testing.assert_close(logvar, expected)
    torch.testing.assert_close(out, net(x, t))
    out2, feats, logvar2 = net(x, t, feature_indices=[0], return_logvar=True)
    torch.testing.assert_close(logvar2, logvar)
    assert len(feats) == 1
    fresh = make_net(enable_logvar=True)
    assert torch.count_nonzero(fresh(x, t, return_logvar=True)[1]) == 0  # zero init: u(t) = 1
    with pytest.raises(ValueError, match="enable_logvar"):
        make_net()(x, t, return_logvar=True)


@pytest.mark.parametrize("arch", [SONG, DHARIWAL], ids=["song", "dhariwal"])
def test_r_timestep_starts_neutral_then_conditions(arch):
    net = make_net(arch=arch, r_timestep=True)
    randomize_(net)
    with torch.no_grad():
        net.unet.map_r.weight.zero_()
    x, t = inputs(2)
    r = t / 2
    torch.testing.assert_close(net(x, t, r=r), net(x, t, r=t))
    torch.testing.assert_close(net(x, t), net(x, t, r=t))  # r defaults to t
    with torch.no_grad():
        net.unet.map_r.weight.normal_()
    assert (net(x, t, r=r) - net(x, t, r=t)).abs().mean() > 1e-3
    # r below min_t (MeanFlow's final r = 0) is embedded as min_t on edm, not at log(1e-20) / 4
    min_t = net.noise_scheduler.min_t
    assert min_t > 0
    torch.testing.assert_close(net(x, t, r=torch.zeros_like(t)), net(x, t, r=torch.full_like(t, min_t)))
    assert (net(x, t, r=torch.full_like(t, 2 * min_t)) - net(x, t, r=torch.full_like(t, min_t))).abs().max() > 0
    with pytest.raises(ValueError, match="r_timestep"):
        make_net(arch=arch)(x, t, r=r)


# ---------------------------------------------------------------- JVP (sCM / MeanFlow)
def _jvp_check(net, x, t, dx, dt, **kw):
    def f(x_, t_):
        return net(x_, t_, **kw)

    out, tangent = torch.func.jvp(f, (x, t), (dx, dt))
    h = 1e-6
    fd = (f(x + h * dx, t + h * dt) - f(x - h * dx, t - h * dt)) / (2 * h)
    torch.testing.assert_close(out, f(x, t))
    torch.testing.assert_close(tangent, fd, rtol=1e-5, atol=1e-6)
    return out


@pytest.mark.parametrize("arch", [SONG, DHARIWAL], ids=["song", "dhariwal"])
def test_jvp_matches_finite_differences(arch):
    net = randomize_(make_net(arch=arch, r_timestep=True), std=0.1).double()
    x, t = inputs(2, dtype=torch.float64)
    gen = torch.Generator().manual_seed(9)
    dx = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    dt = torch.tensor([0.1, -0.5], dtype=torch.float64)
    cond = one_hot([2, 3]).double()
    _jvp_check(net, x, t, dx, dt, condition=cond, r=t / 3)
    # MeanFlow: flow prediction on rf, tangent in t only with r fixed
    mf = randomize_(make_net(arch=arch, r_timestep=True, schedule_type="rf", drop_precond="both"), std=0.1).double()
    _jvp_check(mf, x, torch.tensor([0.4, 0.9], dtype=torch.float64), dx, dt, r=torch.tensor([0.1, 0.2]).double())


def test_gradients_flow_through_jvp_primal():
    net = randomize_(make_net(r_timestep=True), std=0.1).train()
    x, t = inputs(2)
    out, tangent = torch.func.jvp(lambda x_: net(x_, t, r=t / 2), (x,), (torch.ones_like(x),))
    out.square().sum().backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    net.zero_grad()
    net(x, t, r=t / 2).square().sum().backward()
    for n, p in net.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(grads[n], p.grad, rtol=1e-4, atol=1e-6)
    assert torch.isfinite(tangent).all()


# ---------------------------------------------------------------- sampling / meta init / FSDP units
def _scalar_heun(scale: float, sigmas: list[float], sigma_data: float = 0.5) -> float:
    """EDM's Heun solver (Karras et al. Alg. 1) for D(x) = c_skip x, run on a scalar."""

    def denoise(x, s):
        return sigma_data**2 / (s**2 + sigma_data**2) * x

    x = scale * sigmas[0]
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        d = (x - denoise(x, s)) / s
        if s_next == 0:
            return denoise(x, s)
        x_pred = x + (s_next - s) * d
        x = x + (s_next - s) * 0.5 * (d + (x_pred - denoise(x_pred, s_next)) / s_next)
    return x


def test_heun_sample_of_zero_network_matches_scalar_heun_and_converges_to_the_ode_solution():
    """F = 0 -> D(x) = c_skip x, whose PF-ODE solution is x(s) = x(s_max) sqrt(s^2 + sd^2) / sqrt(s_max^2 + sd^2)."""
    net = make_net()
    with torch.no_grad():
        final_conv(net).weight.zero_()
        final_conv(net).bias.zero_()
    noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    s_min, s_max, rho = 0.002, 80.0, 7.0
    for num_steps, tol in ((35, None), (101, 1e-2)):
        n = (num_steps + 1) // 2
        sigmas = [
            (s_max ** (1 / rho) + i / (n - 1) * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho for i in range(n)
        ]
        sample = net.sample(noise, condition=one_hot([0, 1]), num_steps=num_steps)
        torch.testing.assert_close(sample, noise * _scalar_heun(1.0, sigmas + [0.0]), rtol=1e-4, atol=1e-6)
        if tol is not None:
            exact = s_max * math.sqrt(s_min**2 + 0.25) / math.sqrt(s_max**2 + 0.25) * 0.25 / (s_min**2 + 0.25)
            torch.testing.assert_close(sample, noise * exact, rtol=tol, atol=1e-4)


def test_meta_init_then_reset_parameters():
    with torch.device("meta"):
        net = EDMPrecond(img_resolution=8, img_channels=3, label_dim=10, dropout=0.0, **SONG)
    net.to_empty(device="cpu")
    torch.manual_seed(0)
    net.reset_parameters()
    downs = [m for m in net.modules() if isinstance(m, Conv2d) and (m.up or m.down)]
    assert downs and all(torch.equal(m.resample_filter, resample_kernel([1, 1])) for m in downs)
    norm = net.unet.enc["8x8_block0"].norm0
    assert torch.equal(norm.weight, torch.ones_like(norm.weight)) and torch.count_nonzero(norm.bias) == 0
    conv0 = net.unet.enc["8x8_block0"].conv0.weight  # xavier_uniform bound sqrt(6 / (fan_in + fan_out))
    bound = math.sqrt(6 / (16 * 9 + 16 * 9))
    assert conv0.abs().max() <= bound and conv0.abs().max() > 0.8 * bound
    x, t = inputs(2)
    assert torch.isfinite(net.eval()(x, t)).all()


def test_fsdp_units_are_the_unet_blocks():
    net = make_net()
    units = net.fsdp_units()
    assert len(units) == sum(isinstance(m, UNetBlock) for m in net.modules()) == 10
    assert all(isinstance(u, UNetBlock) for u in units)


def test_argument_errors_are_clear():
    with pytest.raises(ValueError, match="model_type"):
        make_net(arch=dict(SONG, model_type="Transformer"))
    with pytest.raises(ValueError, match="SongUNet option"):
        make_net(arch=DHARIWAL, embedding_type="fourier")
    with pytest.raises(ValueError, match="embedding_type"):
        make_net(embedding_type="sinusoidal")
    with pytest.raises(ValueError, match="drop_precond"):
        make_net(drop_precond="middle")
    with pytest.raises(TypeError, match="skip_layers"):
        make_net()(*inputs(2), skip_layers=[1])


@pytest.mark.parametrize(
    "variant",
    [
        dict(embedding_type="fourier", encoder_type="residual", channel_mult_noise=2, resample_filter=[1, 3, 3, 1]),
        dict(encoder_type="skip", decoder_type="skip"),
    ],
    ids=["ncsnpp", "skip"],
)
def test_song_unet_variants_run(variant):
    net = randomize_(make_net(**variant), std=0.1)
    x, t = inputs(2)
    out, feats = net(x, t, one_hot([0, 1]), feature_indices=[0, 1])
    assert out.shape == x.shape and torch.isfinite(out).all() and [f.shape[1] for f in feats] == [16, 32]
    names = list(net.unet.enc) + list(net.unet.dec)
    key = "4x4_aux_residual" if variant.get("encoder_type") == "residual" else "4x4_aux_skip"
    assert key in names


# ---------------------------------------------------------------- FSDP2 (2 gloo processes)
def _fsdp_worker(rank, world_size, init_file, out_dir):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        reference = randomize_(make_net(r_timestep=True), seed=2)
        sharded = randomize_(make_net(r_timestep=True), seed=2).fully_shard()
        x, t = inputs(2)  # same batch on both ranks
        out_ref, out = reference(x, t, one_hot([1, 2]), r=t / 2), sharded(x, t, one_hot([1, 2]), r=t / 2)
        out_ref.square().mean().backward()
        out.square().mean().backward()
        grads = {n: p.grad.full_tensor() for n, p in sharded.named_parameters()}
        grad_diff = max((grads[n] - p.grad).abs().max().item() for n, p in reference.named_parameters())
        torch.save({"out_diff": (out - out_ref).abs().max().item(), "grad_diff": grad_diff},
                   f"{out_dir}/rank{rank}.pt")  # fmt: skip
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_fully_shard_matches_the_unsharded_network(tmp_path):
    torch.multiprocessing.spawn(_fsdp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert result["out_diff"] < 1e-6 and result["grad_diff"] < 1e-6, result
