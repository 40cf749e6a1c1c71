"""DiT/SiT network: shapes and features, adaLN-Zero init, null class, time conditioning, SiT convention, JVP,
and loading the official DiT/SiT checkpoint layout (checked against an independent reference forward)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fastgen.networks.DiT.convert import (
    convert_official_state_dict,
    dit_alphas_cumprod,
    load_official_checkpoint,
    load_official_state_dict,
    official_to_fastgen_key,
)
from fastgen.networks.DiT.network import DiT

TINY = dict(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=2, num_heads=2, num_classes=10)


def make_net(seed=0, perturb=True, **kw):
    """Tiny DiT; `perturb` replaces the zero-initialised adaLN/output weights by random ones so outputs depend on
    every input (a freshly initialised DiT outputs exactly zero)."""
    torch.manual_seed(seed)
    net = DiT(**{**TINY, **kw})
    if perturb:
        with torch.no_grad():
            for name, p in net.named_parameters():
                if "modulation" in name or "final_layer" in name or "logvar" in name:
                    p.normal_(0, 0.2)
    return net.eval()


def inputs(batch=3, seed=1, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, 8, 8, generator=g, dtype=dtype)
    t = torch.rand(batch, generator=g, dtype=torch.float64) * 0.8 + 0.1
    return x, t


def one_hot(labels, n=10):
    return F.one_hot(torch.tensor(labels), n).float()


# ------------------------------------------------------------------------------------------------ forward
def test_forward_shapes_and_features_match_block_outputs():
    net = make_net()
    x, t = inputs()
    captured = []
    hooks = [b.register_forward_hook(lambda m, i, o: captured.append(o.detach())) for b in net.blocks]
    out, feats = net(x, t, one_hot([1, 2, 3]), feature_indices=[1, 0])
    for h in hooks:
        h.remove()
    assert out.shape == (3, 4, 8, 8) and out.dtype == torch.float32
    assert [f.shape for f in feats] == [(3, 32, 4, 4)] * 2
    for block_idx, feat in enumerate(feats):  # features in increasing block order; token (i, j) -> map[:, :, i, j]
        tokens = captured[block_idx]
        assert torch.equal(feat[:, :, 1, 3], tokens[:, 1 * 4 + 3])
        assert torch.equal(feat.flatten(2).transpose(1, 2), tokens)
    early = net(x, t, one_hot([1, 2, 3]), feature_indices=[0], return_features_early=True)
    assert isinstance(early, list) and len(early) == 1 and torch.equal(early[0], feats[0])
    assert torch.equal(net(x, t, one_hot([1, 2, 3])), out)


def test_return_features_early_stops_after_last_requested_block():
    net = make_net()
    x, t = inputs()
    calls = []
    net.blocks[1].register_forward_hook(lambda m, i, o: calls.append(1))
    net.final_layer.register_forward_hook(lambda m, i, o: calls.append(2))
    net(x, t, feature_indices=[0], return_features_early=True)
    assert calls == []


def test_fwd_pred_type_converts_through_rf_schedule():
    net = make_net()
    x, t = inputs()
    flow = net(x, t)
    x0 = net(x, t, fwd_pred_type="x0")
    torch.testing.assert_close(x0, x - t.float()[:, None, None, None] * flow, rtol=1e-5, atol=1e-5)


def test_learn_sigma_keeps_first_half_of_output_channels():
    net = make_net(learn_sigma=True)
    assert net.final_layer.linear.out_features == 2 * 2 * 8
    x, t = inputs()
    captured = []
    net.final_layer.register_forward_hook(lambda m, i, o: captured.append(o))
    out = net(x, t)
    full = captured[0].reshape(3, 4, 4, 2, 2, 8).permute(0, 5, 1, 3, 2, 4).reshape(3, 8, 8, 8)
    assert out.shape == (3, 4, 8, 8) and torch.equal(out, full[:, :4])


def test_logvar_head_on_time_embedding():
    net = make_net(enable_logvar_linear=True)
    x, t = inputs()
    out, logvar = net(x, t, return_logvar=True)
    assert logvar.shape == (3, 1)
    expected = net.logvar_linear(net.t_embed(t * 1000))
    torch.testing.assert_close(logvar, expected)
    out2, feats, logvar2 = net(x, t, feature_indices=[1], return_logvar=True)
    assert torch.equal(out2, out) and torch.equal(logvar2, logvar) and len(feats) == 1
    with pytest.raises(ValueError, match="enable_logvar_linear"):
        make_net()(x, t, return_logvar=True)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="time_cond_type"):
        DiT(**TINY, time_cond_type="relative")
    net = make_net()
    x, t = inputs()
    with pytest.raises(ValueError, match="0..1"):
        net(x, t, feature_indices=[2])
    with pytest.raises(ValueError, match="one-hot"):
        net(x, t, torch.zeros(3, 7))


# ----------------------------------------------------------------------------------------------- adaLN-Zero
def test_adaln_zero_init_outputs_exact_zero_until_perturbed():
    net = make_net(perturb=False)
    x, t = inputs()
    out, feats = net(x, t, one_hot([0, 4, 9]), feature_indices=[0, 1])
    assert torch.equal(out, torch.zeros_like(out))
    # zero gates: every block is the identity, so block features equal the embedded patches
    patches = net.patch_embed(x).flatten(2).transpose(1, 2) + net.pos_embed
    for feat in feats:
        assert torch.equal(feat.flatten(2).transpose(1, 2), patches)
    with torch.no_grad():
        net.final_layer.linear.weight.normal_(0, 0.1)
        net.final_layer.modulation.weight.normal_(0, 0.1)
    out = net(x, t, one_hot([0, 4, 9]))
    assert out.abs().min() >= 0 and out.abs().mean() > 1e-3


def test_meta_init_then_reset_parameters_matches_fresh_init():
    with torch.device("meta"):
        net = DiT(**TINY)
    net.to_empty(device="cpu")
    net.reset_parameters()
    fresh = DiT(**TINY)
    assert torch.equal(net.pos_embed, fresh.pos_embed)
    x, t = inputs()
    assert torch.equal(net(x, t), torch.zeros_like(x))
    assert int(torch.count_nonzero(net.final_layer.linear.weight.detach())) == 0
    assert float(net.label_embed.weight.detach().std()) == pytest.approx(0.02, rel=0.3)
    assert net.fsdp_units() == list(net.blocks)


# ------------------------------------------------------------------------------------------------- labels
def test_null_class_for_none_empty_and_zero_one_hot():
    net = make_net()
    x, t = inputs()
    out_none = net(x, t, None)
    assert torch.equal(net(x, t, torch.zeros(3, 10)), out_none)
    assert torch.equal(net(x, t, torch.zeros(3, 0)), out_none)
    # a one-hot row selects its class: same as integer labels, different from the null class
    out_cls = net(x, t, one_hot([1, 2, 3]))
    torch.testing.assert_close(net(x, t, torch.tensor([1, 2, 3])), out_cls, rtol=0, atol=1e-6)
    assert (out_cls - out_none).abs().mean() > 1e-3
    # mixed batch: the zero row alone is unconditional
    mixed = torch.stack([one_hot([1])[0], torch.zeros(10), one_hot([3])[0]])
    out_mixed = net(x, t, mixed)
    torch.testing.assert_close(out_mixed[1], out_none[1], rtol=0, atol=1e-6)
    torch.testing.assert_close(out_mixed[2], out_cls[2], rtol=0, atol=1e-6)


def test_class_dropout_only_in_training_when_enabled():
    net = make_net(enable_class_dropout=True, class_dropout_prob=1.0)
    x, t = inputs()
    cond = one_hot([1, 2, 3])
    out_eval = net(x, t, cond)
    net.train()
    torch.testing.assert_close(net(x, t, cond), net(x, t, None), rtol=0, atol=1e-6)
    net.eval()
    assert torch.equal(net(x, t, cond), out_eval)
    net_off = make_net(enable_class_dropout=False, class_dropout_prob=1.0).train()
    assert (net_off(x, t, cond) - net_off(x, t, None)).abs().mean() > 1e-3


# --------------------------------------------------------------------------------------------------- time
def test_time_cond_abs_embeds_r_and_diff_embeds_interval():
    x, t = inputs()
    r = t * 0.5
    net_abs = make_net(r_timestep=True, time_cond_type="abs")
    expected = net_abs.t_embed(t * 1000) + net_abs.r_embed(r * 1000)
    torch.testing.assert_close(net_abs._time_condition(t, r), expected)

    net_diff = make_net(r_timestep=True, time_cond_type="diff")
    expected = net_diff.t_embed(t * 1000) + net_diff.r_embed((t - r) * 1000)
    torch.testing.assert_close(net_diff._time_condition(t, r), expected)
    # r = t: the r-embedding is that of 0; r=None means r = t
    zero_r = net_diff.t_embed(t * 1000) + net_diff.r_embed(torch.zeros_like(t))
    torch.testing.assert_close(net_diff._time_condition(t, t), zero_r)
    assert torch.equal(net_diff(x, t, r=t), net_diff(x, t))
    # diff depends on t - r only: shifting both changes only the t-embedding part
    r_part = net_diff._time_condition(t, r) - net_diff.t_embed(t * 1000)
    r_part_shifted = net_diff._time_condition(t + 0.05, r + 0.05) - net_diff.t_embed((t + 0.05) * 1000)
    torch.testing.assert_close(r_part, r_part_shifted, rtol=1e-4, atol=1e-5)
    # and r matters in the output
    assert (net_diff(x, t, r=r) - net_diff(x, t, r=t)).abs().mean() > 1e-4


def test_scale_t_multiplies_time_by_1000():
    net = make_net(scale_t=True)
    net_raw = make_net(scale_t=False)
    net_raw.load_state_dict(net.state_dict())
    x, t = inputs()
    t_small = t / 1000  # the unscaled net must see 1000 x the time to match
    torch.testing.assert_close(net(x, t_small), net_raw(x, t), rtol=1e-5, atol=1e-5)


def test_sit_convention_flips_time_and_negates_velocity():
    sit = make_net(use_sit_convention=True, scale_t=False)
    plain = make_net(use_sit_convention=False, scale_t=False)
    plain.load_state_dict(sit.state_dict())
    x, t = inputs()
    torch.testing.assert_close(sit(x, t), -plain(x, 1.0 - t), rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------------------- JVP
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")  # torch's own JVP setup
@pytest.mark.parametrize("attention_type", ["sdpa", "math"])
def test_jvp_matches_finite_differences(attention_type):
    """MeanFlow: d/dt u(x_t, t, r) along (dx/dt = v, dt = 1, dr = 0), in float64."""
    net = make_net(r_timestep=True, time_cond_type="diff", attention_type=attention_type).double()
    x, t = inputs(dtype=torch.float64)
    r = t * 0.3
    cond = one_hot([1, 2, 3]).double()
    v = torch.randn_like(x)

    def u(x_in, t_in, r_in):
        return net(x_in, t_in, cond, r=r_in)

    out, tangent = torch.func.jvp(u, (x, t, r), (v, torch.ones_like(t), torch.zeros_like(r)))
    torch.testing.assert_close(out, u(x, t, r))
    h = 1e-6
    fd = (u(x + h * v, t + h, r) - u(x - h * v, t - h, r)) / (2 * h)
    assert tangent.abs().mean() > 1e-3
    torch.testing.assert_close(tangent, fd, rtol=1e-5, atol=1e-6)


def test_sample_of_zero_flow_net_keeps_the_noise():
    """Untrained DiT predicts flow 0, so the inherited ODE sampler must leave x = noise * sigma(max_t)."""
    net = make_net(perturb=False)
    noise = torch.randn(2, 4, 8, 8)
    out = net.sample(noise, num_steps=2, sampler_type="euler")
    torch.testing.assert_close(out, noise * net.noise_scheduler.max_sigma, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------ official layout
def mae_pos_embed(dim, grid):
    """2-D sin-cos table as the MAE/DiT reference code builds it (numpy, meshgrid(w, h))."""

    def one_d(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    g = np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32))
    g = np.stack(g, axis=0).reshape(2, 1, grid, grid)
    return np.concatenate([one_d(dim // 2, g[0]), one_d(dim // 2, g[1])], axis=1)


def official_state_dict(hidden=32, depth=2, p=2, c_in=4, c_out=8, classes=10, grid=4, mlp=4, seed=0):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=g) * 0.2

    sd = {
        "x_embedder.proj.weight": rnd(hidden, c_in, p, p),
        "x_embedder.proj.bias": rnd(hidden),
        "t_embedder.mlp.0.weight": rnd(hidden, 256),
        "t_embedder.mlp.0.bias": rnd(hidden),
        "t_embedder.mlp.2.weight": rnd(hidden, hidden),
        "t_embedder.mlp.2.bias": rnd(hidden),
        "y_embedder.embedding_table.weight": rnd(classes + 1, hidden),
        "pos_embed": torch.from_numpy(mae_pos_embed(hidden, grid)).float()[None],
        "final_layer.linear.weight": rnd(p * p * c_out, hidden),
        "final_layer.linear.bias": rnd(p * p * c_out),
        "final_layer.adaLN_modulation.1.weight": rnd(2 * hidden, hidden),
        "final_layer.adaLN_modulation.1.bias": rnd(2 * hidden),
    }
    for i in range(depth):
        sd.update(
            {
                f"blocks.{i}.attn.qkv.weight": rnd(3 * hidden, hidden),
                f"blocks.{i}.attn.qkv.bias": rnd(3 * hidden),
                f"blocks.{i}.attn.proj.weight": rnd(hidden, hidden),
                f"blocks.{i}.attn.proj.bias": rnd(hidden),
                f"blocks.{i}.mlp.fc1.weight": rnd(mlp * hidden, hidden),
                f"blocks.{i}.mlp.fc1.bias": rnd(mlp * hidden),
                f"blocks.{i}.mlp.fc2.weight": rnd(hidden, mlp * hidden),
                f"blocks.{i}.mlp.fc2.bias": rnd(hidden),
                f"blocks.{i}.adaLN_modulation.1.weight": rnd(6 * hidden, hidden),
                f"blocks.{i}.adaLN_modulation.1.bias": rnd(6 * hidden),
            }
        )
    return sd


def official_forward(sd, x, timesteps, labels, depth=2, heads=2, p=2, freq_dtype=torch.float64):
    """The official DiT forward, written against the official key names (reference for the conversion).
    The official code builds the timestep frequencies in float32; ours uses float64 (more precise, differs by
    ~1e-4 at t ~ 1000), so the layout checks use float64 here and float32 is checked with a looser tolerance."""
    h = F.conv2d(x, sd["x_embedder.proj.weight"], sd["x_embedder.proj.bias"], stride=p)
    h = h.flatten(2).transpose(1, 2) + sd["pos_embed"]
    half = 128
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=freq_dtype) / half)
    args = timesteps[:, None].to(freq_dtype) * freqs[None]
    t_freq = torch.cat([torch.cos(args), torch.sin(args)], dim=-1).float()
    t_emb = F.linear(
        F.silu(F.linear(t_freq, sd["t_embedder.mlp.0.weight"], sd["t_embedder.mlp.0.bias"])),
        sd["t_embedder.mlp.2.weight"],
        sd["t_embedder.mlp.2.bias"],
    )
    c = t_emb + sd["y_embedder.embedding_table.weight"][labels]
    n_tok, dim = h.shape[1], h.shape[2]

    def mod(z, shift, scale):
        return z * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)

    def ln(z):
        return F.layer_norm(z, (dim,), eps=1e-6)

    for i in range(depth):
        k = f"blocks.{i}."
        m = F.linear(F.silu(c), sd[k + "adaLN_modulation.1.weight"], sd[k + "adaLN_modulation.1.bias"]).chunk(6, 1)
        z = mod(ln(h), m[0], m[1])
        qkv = F.linear(z, sd[k + "attn.qkv.weight"], sd[k + "attn.qkv.bias"])
        qkv = qkv.reshape(x.shape[0], n_tok, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        attn = (qkv[0] @ qkv[1].transpose(-2, -1) * (dim // heads) ** -0.5).softmax(-1) @ qkv[2]
        attn = F.linear(
            attn.transpose(1, 2).reshape(x.shape[0], n_tok, dim), sd[k + "attn.proj.weight"], sd[k + "attn.proj.bias"]
        )
        h = h + m[2].unsqueeze(1) * attn
        z = mod(ln(h), m[3], m[4])
        z = F.gelu(F.linear(z, sd[k + "mlp.fc1.weight"], sd[k + "mlp.fc1.bias"]), approximate="tanh")
        h = h + m[5].unsqueeze(1) * F.linear(z, sd[k + "mlp.fc2.weight"], sd[k + "mlp.fc2.bias"])
    shift, scale = F.linear(
        F.silu(c), sd["final_layer.adaLN_modulation.1.weight"], sd["final_layer.adaLN_modulation.1.bias"]
    ).chunk(2, 1)
    out = F.linear(mod(ln(h), shift, scale), sd["final_layer.linear.weight"], sd["final_layer.linear.bias"])
    grid, c_out = int(n_tok**0.5), out.shape[-1] // (p * p)
    out = out.reshape(x.shape[0], grid, grid, p, p, c_out)
    return torch.einsum("nhwpqc->nchpwq", out).reshape(x.shape[0], c_out, grid * p, grid * p)


def test_official_keys_all_map_and_shapes_match():
    sd = official_state_dict()
    converted, dropped = convert_official_state_dict(sd)
    ours = DiT(**TINY, learn_sigma=True).state_dict()
    assert set(dropped) == {"pos_embed"}
    assert set(converted) == set(ours)
    assert all(converted[k].shape == ours[k].shape for k in ours)
    assert official_to_fastgen_key("blocks.1.attn.proj.bias") == "blocks.1.attn.out_proj.bias"
    assert official_to_fastgen_key("final_layer.adaLN_modulation.1.weight") == "final_layer.modulation.weight"
    with pytest.raises(ValueError, match="unknown key"):
        official_to_fastgen_key("blocks.0.attn.q_proj.weight")


def test_converted_dit_checkpoint_reproduces_official_forward(tmp_path):
    sd = official_state_dict()
    x, t = inputs()
    labels = torch.tensor([0, 5, 9])
    reference = official_forward(sd, x, t * 1000, labels)[:, :4]  # DiT: integer-scale timesteps, eps half

    # a training checkpoint container with a DDP prefix; EMA weights are preferred
    ckpt = {
        "ema": {f"module.{k}": v for k, v in sd.items()},
        "model": {k: torch.zeros_like(v) for k, v in sd.items()},
        "args": {"lr": 1e-4},
    }
    path = tmp_path / "dit.pt"
    torch.save(ckpt, path)
    net = DiT(**TINY, learn_sigma=True, net_pred_type="eps", enable_logvar_linear=True).eval()
    fresh = load_official_checkpoint(net, path)
    assert fresh == ["logvar_linear.weight", "logvar_linear.bias"]
    out = net(x, t, one_hot(labels.tolist()))
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-5)
    reference_fp32_freq = official_forward(sd, x, t * 1000, labels, freq_dtype=torch.float32)[:, :4]
    torch.testing.assert_close(out, reference_fp32_freq, rtol=0, atol=5e-4)
    # the null class is the checkpoint's last table row
    ref_null = official_forward(sd, x, t * 1000, torch.full((3,), 10))[:, :4]
    torch.testing.assert_close(net(x, t, None), ref_null, rtol=1e-4, atol=1e-5)


def test_converted_sit_checkpoint_in_fastgen_rf_convention():
    sd = official_state_dict(seed=3)
    x, t = inputs()
    labels = torch.tensor([2, 2, 7])
    net = DiT(**TINY, learn_sigma=True, scale_t=False, use_sit_convention=True).eval()
    load_official_state_dict(net, sd)
    # SiT: its time 1 - t (no 1000 scaling), its velocity points to data -> ours is its negative
    reference = -official_forward(sd, x, 1.0 - t, labels)[:, :4]
    torch.testing.assert_close(net(x, t, one_hot(labels.tolist())), reference, rtol=1e-4, atol=1e-5)


def test_load_rejects_mismatched_or_incomplete_checkpoints():
    sd = official_state_dict()
    with pytest.raises(ValueError, match="mismatched"):
        load_official_state_dict(DiT(**{**TINY, "num_classes": 12}, learn_sigma=True), sd)
    with pytest.raises(ValueError, match="lacks weights"):
        load_official_state_dict(DiT(**TINY, learn_sigma=True), {k: v for k, v in sd.items() if "blocks.1." not in k})
    bad_pos = dict(sd, pos_embed=sd["pos_embed"] + 1.0)
    with pytest.raises(ValueError, match="pos_embed"):
        load_official_state_dict(DiT(**TINY, learn_sigma=True), bad_pos)
    # a table without the null row (no class dropout in training) keeps our null row
    net = DiT(**TINY, learn_sigma=True)
    null_before = net.label_embed.weight[-1].clone()
    no_null = dict(sd, **{"y_embedder.embedding_table.weight": sd["y_embedder.embedding_table.weight"][:10]})
    load_official_state_dict(net, no_null)
    assert torch.equal(net.label_embed.weight[-1], null_before)
    assert torch.equal(net.label_embed.weight[:10], sd["y_embedder.embedding_table.weight"][:10])


def test_dit_schedule_table_matches_integer_steps():
    """fastgen time t = step / 1000 on the `alphas` schedule reproduces DiT's linear-beta alpha-bar at that step."""
    table = torch.tensor(dit_alphas_cumprod(), dtype=torch.float64)
    assert table[0] == pytest.approx(1 - 1e-4) and len(table) == 1000
    net = DiT(**TINY, net_pred_type="eps", schedule_type="alphas", alphas_cumprod=table.tolist())
    steps = torch.tensor([0, 1, 250, 999])
    alpha = net.noise_scheduler.alpha(steps.double() / 1000)
    torch.testing.assert_close(alpha**2, table[steps], rtol=1e-9, atol=1e-12)
    x, _ = inputs()
    # eps 0 (untrained) -> x0 = x / alpha
    x0 = net(x, steps[1:].double() / 1000, fwd_pred_type="x0")
    torch.testing.assert_close(x0, x / alpha[1:].float()[:, None, None, None], rtol=1e-5, atol=1e-5)
