"""CausalWan (tiny random WanTransformer3DModel): the causal processor reproduces diffusers' Wan attention, chunk-by-chunk
generation with the KV cache equals one block-causal forward, chunks never see the future, flex == SDPA, the rolling
cache window, per-frame time, activation checkpointing, and the one-line errors."""

import copy

import pytest
import torch

from fastgen.networks.causal_attention import CacheMemoryError, KVCache
from fastgen.networks.hf import CausalWan, Wan
from fastgen.networks.hf.tiny import tiny_components
from fastgen.networks.network import require_causal

B, FRAMES = 2, 6


def _transformer(**overrides) -> dict:
    return {"transformer": {**tiny_components("wan")["transformer"], **overrides}}


def _causal(weights_from, chunk_size=2, total_num_frames=FRAMES, **kwargs):
    cfg = {"transformer": dict(weights_from.denoiser.config)}
    net = CausalWan(model_id="tiny/wan", load_pretrained=False, component_configs=cfg, chunk_size=chunk_size,
                    total_num_frames=total_num_frames, **kwargs).eval()
    net.load_state_dict(weights_from.state_dict())  # same keys as the bidirectional wrapper: a Wan checkpoint loads
    return net


@pytest.fixture(scope="module")
def wan():
    torch.manual_seed(0)
    return Wan(model_id="tiny/wan", load_pretrained=False, component_configs=_transformer()).eval()


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, 4, FRAMES, 8, 8, generator=g)
    t = torch.rand(B, FRAMES // 2, generator=g, dtype=torch.float64).repeat_interleave(2, dim=1)  # per chunk
    return x, t, {"prompt_embeds": torch.randn(B, 7, 32, generator=g)}


def _ar(net, x, t, cond, chunk, **kw):
    net.clear_caches()
    outs = [net(x[:, :, s:s + chunk], t[:, s:s + chunk], cond, is_ar=True, store_kv=True, cur_start_frame=s, **kw)
            for s in range(0, x.shape[2], chunk)]
    return torch.cat(outs, dim=2)


def test_one_chunk_equals_bidirectional_wan_and_per_frame_time_is_per_token(wan, inputs):
    x, t, cond = inputs
    net = _causal(wan, chunk_size=FRAMES)
    with torch.no_grad():
        assert torch.equal(net(x, t[:, 0], cond), wan(x, t[:, 0], cond))  # the processor is diffusers' math, exactly
        tokens = (t * 1000).float()[:, :, None].expand(B, FRAMES, 16).reshape(B, -1)  # 4x4 tokens per frame
        bare = wan.denoiser(hidden_states=x, timestep=tokens, encoder_hidden_states=cond["prompt_embeds"],
                            return_dict=False)[0]
        assert torch.equal(net(x, t, cond), bare)
        same = t[:, :1].expand(B, FRAMES)
        assert (net(x, same, cond) - net(x, t[:, 0], cond)).abs().max() == 0  # constant t takes the [B] path


def test_chunk_by_chunk_with_kv_cache_equals_block_causal_forward(wan, inputs):
    x, t, cond = inputs
    net = _causal(wan, chunk_size=2)
    with torch.no_grad():
        full = net(x, t, cond)
        assert net.kv_cache.nbytes() == 0  # is_ar=False never touches the cache
        ar = _ar(net, x, t, cond, 2)
        assert (ar - full).abs().max() <= 1e-5
        held = net.kv_cache.snapshot("pos")
        assert held[0].first_frame == 0 and held[0].num_frames == FRAMES
        again = net(x[:, :, 4:], t[:, 4:], cond, is_ar=True, cur_start_frame=4)  # store_kv=False: cache unchanged
        assert (again - full[:, :, 4:]).abs().max() <= 1e-5
        assert all(a is b for a, b in zip(net.kv_cache.snapshot("pos"), held))
        assert net.kv_cache.snapshot("neg") == (None, None)  # tags are separate caches
        # one AR call may hold several chunks: block-causal among them, all of the cache visible
        net.clear_caches()
        net(x[:, :, :2], t[:, :2], cond, is_ar=True, store_kv=True)
        two = net(x[:, :, 2:], t[:, 2:], cond, is_ar=True, cur_start_frame=2)
        assert (two - full[:, :, 2:]).abs().max() <= 1e-5
        # chunk k does not see later chunks: changing frames 4.. (inputs and times) leaves frames 0..3 bit-identical
        x2, t2 = x.clone(), t.clone()
        x2[:, :, 4:], t2[:, 4:] = torch.randn_like(x2[:, :, 4:]), 0.05
        changed = net(x2, t2, cond)
        assert torch.equal(changed[:, :, :4], full[:, :, :4]) and (changed - full)[:, :, 4:].abs().max() > 1e-2
        # and the cache genuinely feeds the AR call: without it the last chunk differs
        net.clear_caches()
        alone = net(x[:, :, 4:], t[:, 4:], cond, is_ar=True, cur_start_frame=4)
        assert (alone - full[:, :, 4:]).abs().max() > 1e-2


def test_flex_attention_equals_sdpa_and_falls_back_once_without_cpu_backward(wan, inputs):
    x, t, cond = inputs
    sdpa, flex = _causal(wan, attention_backend="sdpa"), _causal(wan, attention_backend="flex")
    with torch.no_grad():
        ref = sdpa(x, t, cond)
        assert (flex(x, t, cond) - ref).abs().max() <= 1e-5
        for net in (sdpa, flex):  # a masked AR call: two chunks after a cached one
            net.clear_caches()
            net(x[:, :, :2], t[:, :2], cond, is_ar=True, store_kv=True)
        ar = [net(x[:, :, 2:], t[:, 2:], cond, is_ar=True, cur_start_frame=2) for net in (sdpa, flex)]
        assert (ar[0] - ar[1]).abs().max() <= 1e-5 and (ar[0] - ref[:, :, 2:]).abs().max() <= 1e-5
    xg = x.clone().requires_grad_(True)
    with pytest.warns(UserWarning, match="falls back to SDPA") as record:
        out = flex(xg, t, cond)
    assert len(record) == 1 and (out.detach() - ref).abs().max() <= 1e-5  # one warning for all blocks


def test_rolling_window_equals_forward_over_the_last_frames(inputs):
    """max_cache_frames=W: the AR output of a chunk equals a block-causal forward over only the last W cached frames
    and the chunk, at the same rotary positions (one block, so a frame's keys depend on that frame only)."""
    x, t, cond = inputs
    torch.manual_seed(3)
    one_block = Wan(model_id="tiny/wan", load_pretrained=False, component_configs=_transformer(num_layers=1)).eval()
    window = _causal(one_block, chunk_size=1, max_cache_frames=2)
    keep_all = _causal(one_block, chunk_size=1)
    with torch.no_grad():
        rolled = _ar(window, x, t, cond, 1)
        held = window.kv_cache.snapshot("pos")[0]
        assert (held.first_frame, held.num_frames) == (FRAMES - 2, 2)
        for s in (2, 5):  # frames s-2, s-1 (cached) and s, positions s-2.. as in the AR call
            local = window(x[:, :, s - 2:s + 1], t[:, s - 2:s + 1], cond, frame_offset=s - 2)
            assert (rolled[:, :, s] - local[:, :, 2]).abs().max() <= 1e-5
        assert (rolled[:, :, 5] - _ar(keep_all, x, t, cond, 1)[:, :, 5]).abs().max() > 1e-3  # the window matters


def test_activation_checkpointing_and_deepcopy_keep_gradients_exact(wan, inputs):
    x, t, cond = inputs
    net = _causal(wan, chunk_size=2)
    ckpt = copy.deepcopy(net)  # an EMA-style copy: its processors use its own cache
    assert ckpt.denoiser.blocks[0].attn1.processor.state is ckpt._causal is not net._causal
    assert ckpt.enable_activation_checkpointing() == 2

    def grads(model):
        model.zero_grad()
        with torch.no_grad():
            _ar(model, x[:, :, :4], t, cond, 2)
        loss = model(x[:, :, 4:], t[:, 4:], cond, is_ar=True, cur_start_frame=4).square().mean()  # reads the cache
        loss = loss + model(x, t, cond).square().mean()  # block-causal training pass
        model.clear_caches()  # the backward must not depend on the cache still being there
        loss.backward()
        return [p.grad.clone() for p in model.parameters()]

    for a, b in zip(grads(net), grads(ckpt)):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5)


def test_bad_input_is_one_clear_line(wan, inputs):
    x, t, cond = inputs
    net = _causal(wan, chunk_size=2)
    with pytest.raises(ValueError, match="5 latent frames is not a multiple of chunk_size=2"):
        net(x[:, :, :5], t[:, 0], cond)
    with pytest.raises(ValueError, match="chunk_size must divide total_num_frames"):
        _causal(wan, chunk_size=4)
    with pytest.raises(ValueError, match="cur_start_frame must be a non-negative multiple of chunk_size=2"):
        net(x[:, :, :2], t[:, 0], cond, is_ar=True, cur_start_frame=3)
    with pytest.raises(ValueError, match="pass is_ar=True"):
        net(x, t[:, 0], cond, store_kv=True)
    with pytest.raises(ValueError, match=r"rotary frame positions \[40, 46\) are outside the table of 32"):
        net(x, t[:, 0], cond, frame_offset=40)
    with pytest.raises(ValueError, match="CausVidModel needs a causal video network .* got Wan"):
        require_causal(wan, "CausVidModel")
    require_causal(net, "CausVidModel")
    huge = _causal(wan, chunk_size=1, total_num_frames=2**40)  # a training length no memory holds
    with pytest.raises(CacheMemoryError, match=r"KV cache 'pos' needs [\d.]+ GiB .* set max_cache_frames=\d+ or less"):
        huge(x[:, :, :1], t[:, 0], cond, is_ar=True, store_kv=True)
    assert huge.kv_cache.nbytes() == 0  # refused before allocating
    cache = KVCache(num_blocks=2, window=4, horizon=2**40)  # a window bounds the estimate: fits
    cache.write("pos", 0, torch.zeros(1, 2, 16, 8), torch.zeros(1, 2, 16, 8), 0, 1)
    with pytest.raises(ValueError, match="would leave a gap"):
        cache.write("pos", 0, torch.zeros(1, 2, 16, 8), torch.zeros(1, 2, 16, 8), 3, 1)


def test_net_configs_build_at_smoke_size():
    from fastgen.configs.net import CausalWan_1_3B_Config, CausalWan_14B_Config
    from fastgen.utils import instantiate

    assert [(c.chunk_size, c.total_num_frames) for c in (CausalWan_1_3B_Config, CausalWan_14B_Config)] == [(3, 21)] * 2
    net = instantiate(CausalWan_14B_Config, **CausalWan.smoke_overrides({}))
    assert isinstance(net, CausalWan) and (net.chunk_size, net.num_chunks) == (1, 2) and len(net.denoiser.blocks) == 2


def test_rolling_window_masks_the_full_pass_as_the_cache_does(wan, inputs):
    """max_cache_frames=W: the is_ar=False pass sees, for chunk k, the frames >= start of chunk k - W (what the
    rolling cache holds), so chunk-by-chunk generation with the cache still equals it."""
    x, t, cond = inputs
    window, keep_all = _causal(wan, chunk_size=2, max_cache_frames=2), _causal(wan, chunk_size=2)
    with torch.no_grad():
        full = window(x, t, cond)
        assert (_ar(window, x, t, cond, 2) - full).abs().max() <= 1e-5
        flex = _causal(wan, chunk_size=2, max_cache_frames=2, attention_backend="flex")
        assert (flex(x, t, cond) - full).abs().max() <= 1e-5  # the window in flex's mask function too
        unwindowed = keep_all(x, t, cond)
        assert torch.equal(full[:, :, :4], unwindowed[:, :, :4])  # chunks 0, 1 see at most 2 earlier frames anyway
        assert (full - unwindowed)[:, :, 4:].abs().max() > 1e-3  # chunk 2 no longer attends to frames 0, 1


def _family_pair(family: str, causal_cls, plain_cls, seed: int, **kwargs):
    """A tiny bidirectional net of `family` and its causal variant on the same weights (chunks of 2 frames)."""
    from fastgen.networks.hf.tiny import tiny_components

    torch.manual_seed(seed)
    cfg = {"transformer": tiny_components(family)["transformer"]}
    plain = plain_cls(model_id="tiny/x", load_pretrained=False, component_configs=cfg, **kwargs).eval()
    causal = {}
    for chunk in (2, FRAMES):
        causal[chunk] = causal_cls(model_id="tiny/x", load_pretrained=False, component_configs=cfg, chunk_size=chunk,
                                   total_num_frames=FRAMES, **kwargs).eval()
        causal[chunk].load_state_dict(plain.state_dict())
    return plain, causal[2], causal[FRAMES]


def _family_cases():
    from fastgen.networks.hf import VACEWan, Wan22I2V, WanI2V
    from fastgen.networks.hf.causal_families import CausalVACEWan, CausalWan22I2V, CausalWanI2V

    g = torch.Generator().manual_seed(5)
    prompt = {"prompt_embeds": torch.randn(B, 7, 32, generator=g)}
    return {
        "wan21_i2v": (("wan_i2v", CausalWanI2V, WanI2V, 11, {}),
                      {**prompt, "image_embeds": torch.randn(B, 3, 32, generator=g),
                       "first_frame_cond": torch.randn(B, 6, FRAMES, 8, 8, generator=g)}),
        "wan22_i2v": (("wan22_i2v", CausalWan22I2V, Wan22I2V, 12, {"expand_timesteps": True}),
                      {**prompt, "first_frame_cond": torch.randn(B, 4, 1, 8, 8, generator=g)}),
        "vace": (("vace_wan", CausalVACEWan, VACEWan, 13, {}),
                 {**prompt, "control_hidden_states": torch.randn(B, 12, FRAMES, 8, 8, generator=g)}),
    }


@pytest.mark.parametrize("name", ["wan21_i2v", "wan22_i2v", "vace"])
def test_causal_wan_family_cache_equals_full_pass_and_one_chunk_equals_bidirectional(inputs, name):
    (family, causal_cls, plain_cls, seed, kwargs), cond = _family_cases()[name]
    plain, causal, one_chunk = _family_pair(family, causal_cls, plain_cls, seed, **kwargs)
    x, t, _ = inputs
    with torch.no_grad():
        if name == "vace":  # the added per-token-time path is diffusers' VACE math: equal at constant per-token t
            from fastgen.networks.hf.vace_per_token import PerTokenVACETransformer

            d = PerTokenVACETransformer.from_config(plain.denoiser.config)
            d.load_state_dict(plain.denoiser.state_dict())
            d.use_per_token_blocks()
            inputs = dict(hidden_states=x, encoder_hidden_states=cond["prompt_embeds"],
                          control_hidden_states=cond["control_hidden_states"], return_dict=False)
            per_sample = plain.denoiser(timestep=(t[:, 0] * 1000).float(), **inputs)[0]
            tokens = (t[:, :1] * 1000).float().expand(B, FRAMES * 16)
            assert (d(timestep=tokens, **inputs)[0] - per_sample).abs().max() <= 1e-5
        assert (one_chunk(x, t[:, 0], cond) - plain(x, t[:, 0], cond)).abs().max() <= 1e-6
        full = causal(x, t, cond)
        assert (_ar(causal, x, t, cond, 2) - full).abs().max() <= 1e-5
        assert (full - one_chunk(x, t, cond)).abs().max() > 1e-3  # block-causal: not the bidirectional output
        if name == "vace":  # chunk k never sees later control frames: the control branch is block-causal too
            later = {**cond, "control_hidden_states": cond["control_hidden_states"].clone()}
            later["control_hidden_states"][:, :, 4:] += 1.0
            changed = causal(x, t, later)
            assert torch.equal(changed[:, :, :4], full[:, :, :4]) and (changed - full)[:, :, 4:].abs().max() > 1e-3
            assert len(causal.kv_cache.snapshot("pos")) == 4  # 2 main + 2 control blocks, each its own entries
        if name == "wan22_i2v":  # frame 0 is the image in the call that holds it, a plain frame in later chunks
            x0 = causal(x, t, cond, fwd_pred_type="x0")
            assert torch.equal(x0[:, :, :1], cond["first_frame_cond"].to(x0))
            causal.clear_caches()
            causal(x[:, :, :2], t[:, :2], cond, is_ar=True, store_kv=True)
            later = causal(x[:, :, 2:4], t[:, 2:4], cond, is_ar=True, cur_start_frame=2, fwd_pred_type="x0")
            assert (later - x0[:, :, 2:4]).abs().max() <= 1e-5
