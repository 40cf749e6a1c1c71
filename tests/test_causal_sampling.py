"""The toy causal video net's KV cache against its full block-causal forward, the AR rollout (causal_generate) and
Self-Forcing's exit-step draw (identical on 2 gloo ranks)."""

import pytest
import torch

from fastgen.networks.causal_sampling import causal_generate, causal_rollout, draw_exit_steps, sample_exit_steps
from fastgen.networks.toy_causal import ToyCausalVideoNet, ToyVideoNet
from fastgen.utils.distributed.launch import spawn_local

D, CHUNK, FRAMES = 3, 2, 8


def _randomised(net):
    """Random weights everywhere (the zero-initialised output layer would hide the attention from the output)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.3)
    return net


def _net(max_cache_frames=None, **kw):
    return _randomised(ToyCausalVideoNet(dim=D, hidden_dim=16, num_heads=2, chunk_size=CHUNK, total_num_frames=FRAMES,
                                         max_cache_frames=max_cache_frames, **kw))


def _video(frames=FRAMES, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, D, frames, 1, 1, generator=g), torch.rand(2, frames, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("window", [None, 4])
def test_chunk_by_chunk_with_cache_equals_full_block_causal_forward(window):
    net = _net(window)
    x, t = _video()
    full = net(x, t, frame_offset=3)
    net.clear_caches()
    chunks = []
    for s in range(0, FRAMES, CHUNK):
        before = net.cached_frames()
        probe = net(x[:, :, s:s + CHUNK], t[:, s:s + CHUNK], is_ar=True, cur_start_frame=s, frame_offset=3)
        assert net.cached_frames() == before  # store_kv=False leaves the cache alone
        chunks.append(net(x[:, :, s:s + CHUNK], t[:, s:s + CHUNK], is_ar=True, cur_start_frame=s, store_kv=True,
                          frame_offset=3))
        assert torch.equal(probe, chunks[-1])
    assert (torch.cat(chunks, 2) - full).abs().max() <= 1e-5
    assert net.cached_frames() == (list(range(FRAMES)) if window is None else list(range(FRAMES - window, FRAMES)))
    # two chunks in one AR call (block-causal inside the call) give the same frames
    net.clear_caches()
    net(x[:, :, :4], t[:, :4], is_ar=True, store_kv=True, frame_offset=3)
    two = net(x[:, :, 4:], t[:, 4:], is_ar=True, cur_start_frame=4, frame_offset=3)
    assert (two - full[:, :, 4:]).abs().max() <= 1e-5
    # the context matters (the test can fail): without the cache the last chunk differs
    net.clear_caches()
    alone = net(x[:, :, 6:], t[:, 6:], is_ar=True, cur_start_frame=6, frame_offset=3)
    assert (alone - full[:, :, 6:]).abs().max() > 1e-3


def test_later_chunks_do_not_change_earlier_ones_and_caches_are_per_tag():
    net = _net()
    x, t = _video()
    y = x.clone()
    y[:, :, 4:] = torch.randn_like(y[:, :, 4:])
    a, b = net(x, t), net(y, t)
    assert torch.equal(a[:, :, :4], b[:, :, :4]) and (a[:, :, 4:] - b[:, :, 4:]).abs().max() > 1e-3
    net.clear_caches()
    net(x[:, :, :2], t[:, :2], is_ar=True, store_kv=True, cache_tag="pos")
    assert net.cached_frames("pos") == [0, 1] and net.cached_frames("neg") == []
    with pytest.raises(ValueError, match="not a multiple of chunk_size=2"):
        net(x[:, :, :3], t[:, :3])
    with pytest.raises(ValueError, match="cur_start_frame=1 must be a non-negative multiple"):
        net(x[:, :, :2], t[:, :2], is_ar=True, cur_start_frame=1)


def _manual_rollout(net, noise, t_list, context_noise, seed, states=None):
    """The AR loop of CONTRACTS.md written out by hand (same random stream as causal_generate's generator);
    states[(s, i)] = the input of step i of the chunk at frame s."""
    g = torch.Generator().manual_seed(seed)
    b = noise.shape[0]
    net.clear_caches()
    out = []
    for s in range(0, noise.shape[2], CHUNK):
        x = noise[:, :, s:s + CHUNK] * float(t_list[0])  # rf: sigma(t) = t
        for i in range(len(t_list) - 1):
            if states is not None:
                states[(s, i)] = x
            x0 = net(x, t_list[i].expand(b), is_ar=True, cur_start_frame=s, fwd_pred_type="x0")
            if i < len(t_list) - 2:
                eps = torch.randn(x.shape, generator=g)
                x = (1 - t_list[i + 1]) * x0 + t_list[i + 1] * eps
        eps = torch.randn(x0.shape, generator=g)
        ctx = ((1 - context_noise) * x0.double() + context_noise * eps.double()).float()
        net(ctx, torch.full((b,), context_noise, dtype=torch.float64), is_ar=True, cur_start_frame=s, store_kv=True)
        out.append(x0)
    return torch.cat(out, 2)


@torch.no_grad()
def test_causal_generate_equals_manual_loop_and_streams_chunks_in_order():
    net = _net(max_cache_frames=4)
    t_list = torch.tensor([0.999, 0.6, 0.3, 0.0], dtype=torch.float64)
    noise = _video(2 * FRAMES, seed=2)[0]  # 2x the training length: extrapolation through the rolling window
    seen = []

    def on_chunk(start, x0_chunk):
        seen.append((start, x0_chunk.clone(), net.cached_frames()))

    out = causal_generate(net, noise, t_list=t_list, context_noise=0.1, on_chunk=on_chunk,
                          generator=torch.Generator().manual_seed(5))
    ref = _manual_rollout(net, noise, t_list, 0.1, seed=5)
    assert out.shape == noise.shape and (out - ref).abs().max() <= 1e-5
    assert [s for s, _, _ in seen] == list(range(0, 2 * FRAMES, CHUNK))
    for start, chunk, cached in seen:
        assert torch.equal(chunk, out[:, :, start:start + CHUNK])
        assert cached == list(range(max(0, start + CHUNK - 4), start + CHUNK))  # the window holds the last 4 frames
    # guidance: the negative branch has its own cache; g = 1 is exactly the conditional rollout
    cnet = _net(label_dim=2)
    cond = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    plain = causal_generate(cnet, noise[:, :, :FRAMES], cond, t_list=t_list, generator=torch.Generator().manual_seed(0))
    g1 = causal_generate(cnet, noise[:, :, :FRAMES], cond, t_list=t_list, guidance_scale=1.0,
                         generator=torch.Generator().manual_seed(0))
    g3 = causal_generate(cnet, noise[:, :, :FRAMES], cond, t_list=t_list, guidance_scale=3.0,
                         generator=torch.Generator().manual_seed(0))
    assert torch.allclose(plain, g1, atol=1e-6) and (plain - g3).abs().max() > 1e-3
    # on_step sees every step's input, in order (the trajectory CausVid's backward simulation trains on)
    steps, ref_states = [], {}
    causal_rollout(net, noise, t_list=t_list, context_noise=0.1, generator=torch.Generator().manual_seed(5),
                   on_step=lambda s, i, x: steps.append((s, i, x.clone())))
    _manual_rollout(net, noise, t_list, 0.1, seed=5, states=ref_states)
    assert [(s, i) for s, i, _ in steps] == list(ref_states)
    assert max(float((x - ref_states[(s, i)]).abs().max()) for s, i, x in steps) <= 1e-5


def test_rollout_exit_steps_and_gradient_only_at_the_exit_step():
    net = _net()
    noise = _video()[0]
    t_list = torch.tensor([0.999, 0.5, 0.0], dtype=torch.float64)
    calls = []
    hook = net.register_forward_hook(lambda m, a, kw, out: calls.append((kw.get("store_kv"), torch.is_grad_enabled())),
                                     with_kwargs=True)
    out = causal_rollout(net, noise, t_list=t_list, exit_steps=[0, 1, 0, 1], grad_chunk=lambda s: s >= 2,
                         generator=torch.Generator().manual_seed(0))
    hook.remove()
    # per chunk: (exit + 1) denoising calls then one cache pass; grad only at the exit call of chunks 1..3
    expected = [(False, False), (True, False),
                (False, False), (False, True), (True, False),
                (False, True), (True, False),
                (False, False), (False, True), (True, False)]
    assert calls == expected
    params = list(net.parameters())
    first = torch.autograd.grad(out[:, :, :2].sum(), params, allow_unused=True, retain_graph=True)
    second = torch.autograd.grad(out[:, :, 2:4].sum(), params, allow_unused=True)
    assert all(g is None or not g.any() for g in first)  # chunk 0 (frame < 2) is outside the gradient
    assert sum(float(g.abs().sum()) for g in second if g is not None) > 0
    with pytest.raises(ValueError, match="one step index in \\[0, 2\\) per chunk"):
        causal_rollout(net, noise, t_list=t_list, exit_steps=[2, 0, 0, 0])


def test_bidirectional_toy_net_sees_the_future():
    net = _randomised(ToyVideoNet(dim=D, hidden_dim=16, num_heads=2))
    x, t = _video()
    y = x.clone()
    y[:, :, -1] += 1.0
    assert (net(x, t)[:, :, 0] - net(y, t)[:, :, 0]).abs().max() > 1e-4


def test_exit_step_draws():
    g = torch.Generator().manual_seed(0)
    assert sample_exit_steps(4, 3, last_step_only=True) == [2, 2, 2, 2]
    shared = sample_exit_steps(4, 3, same_step_across_blocks=True, generator=g)
    assert len(set(shared)) == 1 and 0 <= shared[0] < 3
    draws = [tuple(sample_exit_steps(4, 3, same_step_across_blocks=False, generator=g)) for _ in range(20)]
    assert len(set(draws)) > 1 and all(0 <= k < 3 for d in draws for k in d)


def _exit_step_worker(rank, out_dir):
    torch.manual_seed(100 + rank)  # every rank's own RNG stream, as in training (seeds derive from the rank)
    local = [sample_exit_steps(4, 4, same_step_across_blocks=False) for _ in range(6)]
    torch.manual_seed(100 + rank)
    shared = [draw_exit_steps(4, 4, same_step_across_blocks=False) for _ in range(6)]
    torch.save({"local": local, "shared": shared}, f"{out_dir}/rank{rank}.pt")


def test_self_forcing_exit_step_is_identical_on_two_gloo_ranks(tmp_path):
    spawn_local(_exit_step_worker, 2, args=(str(tmp_path),))
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0["local"] != r1["local"]  # the ranks' own draws differ ...
    assert r0["shared"] == r1["shared"] == r0["local"]  # ... and every rank runs rank 0's
