"""Autoregressive (chunk-by-chunk) rollout of a causal video network with its KV cache.

One function serves inference (`causal_generate`: CausVid / Self-Forcing / CausalSFT / CausalKD sampling and the
streaming `--causal` inference) and training (`causal_rollout` with an exit step per chunk and gradient control:
Self-Forcing's training-time rollout). Per chunk c starting at frame s (x = noise[:, :, s:s+n] * sigma(t_0)):
    for the steps (t_i, t_{i+1}) of t_list up to the chunk's exit step k (default: the last):
        x0 = net(x, t_i, is_ar=True, store_kv=False, cur_start_frame=s)          # attends to the cache + itself
        x  = alpha(t_{i+1}) x0 + sigma(t_{i+1}) eps   (fresh eps; not after the exit step)
    cache pass (no gradient): net(ctx, t_ctx, is_ar=True, store_kv=True, cur_start_frame=s) with
        ctx = x0 re-noised to t_ctx = context_noise (> 0), else ctx = x0 at t_ctx = 0
The chunk's output is the x0 of its exit step. `noise` may have more frames than net.total_num_frames: frames
past the training length are generated the same way, the net's rolling cache window (max_cache_frames) keeping
the attended context bounded (rotary positions keep growing; only their differences matter).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import torch

from fastgen.networks.samplers import cfg_combine, negative_condition
from fastgen.utils import distributed as dist_utils

DEFAULT_CAUSAL_STEPS = 4


def causal_t_list(net, t_list=None) -> torch.Tensor:
    """float64 t_list (strictly decreasing, ending in 0); None = the net schedule's 4-step grid."""
    if t_list is None:
        t_list = net.noise_scheduler.get_t_list(DEFAULT_CAUSAL_STEPS)
    t_list = torch.as_tensor(t_list, dtype=torch.float64).flatten()
    if len(t_list) < 2 or float(t_list[-1]) != 0.0 or (t_list[1:] >= t_list[:-1]).any():
        raise ValueError(f"t_list must be strictly decreasing with at least 2 entries and end in 0; got {t_list.tolist()}")
    return t_list


def _guided_x0(net, x, t, condition, neg_condition, guidance_scale, start, store_kv):
    """x0 of one AR call; with guidance the negative branch runs on its own cache ("neg")."""
    kw = {"is_ar": True, "cur_start_frame": start, "store_kv": store_kv, "fwd_pred_type": "x0"}
    pos = net(x, t, condition=condition, cache_tag="pos", **kw)
    if guidance_scale is None:
        return pos
    neg = net(x, t, condition=negative_condition(condition, neg_condition), cache_tag="neg", **kw)
    return cfg_combine(pos, neg, guidance_scale)


def causal_rollout(net, noise: torch.Tensor, condition: Any = None, t_list=None, context_noise: float = 0.0,
                   neg_condition: Any = None, guidance_scale: float | None = None,
                   on_chunk: Callable[[int, torch.Tensor], None] | None = None,
                   exit_steps: Sequence[int] | torch.Tensor | None = None,
                   grad_chunk: Callable[[int], bool] | None = None,
                   generator: torch.Generator | None = None,
                   on_step: Callable[[int, int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """The AR rollout of the module docstring; returns the x0 video like `noise`.

    exit_steps[c]: index (into t_list[:-1]) of chunk c's last denoising step (None = every step). grad_chunk(s):
    whether chunk starting at frame s keeps the graph of its exit step (None = never); every other network call
    runs under no_grad, so gradients reach the weights only through exit steps. on_step(start_frame, i, x) sees
    each step's input x (the chunk's state at t_list[i]) before the network call: the student's own trajectory,
    which CausVid's backward simulation trains on.
    """
    net.check_chunked(noise.shape[2])
    t_list = causal_t_list(net, t_list).to(noise.device)
    schedule = net.noise_scheduler
    n_steps, chunk, batch = len(t_list) - 1, net.chunk_size, noise.shape[0]
    num_chunks = noise.shape[2] // chunk
    if exit_steps is None:
        exit_steps = [n_steps - 1] * num_chunks
    exit_steps = [int(k) for k in exit_steps]
    if len(exit_steps) != num_chunks or not all(0 <= k < n_steps for k in exit_steps):
        raise ValueError(f"exit_steps must hold one step index in [0, {n_steps}) per chunk ({num_chunks}); "
                         f"got {exit_steps}")
    context_noise = float(context_noise)
    if context_noise < 0:
        raise ValueError(f"context_noise must be >= 0; got {context_noise}")
    t_ctx = torch.full((batch,), context_noise, dtype=torch.float64, device=noise.device)

    net.clear_caches()
    chunks = []
    for c in range(num_chunks):
        start = c * chunk
        x = schedule.latents(noise[:, :, start:start + chunk], t_list[0])
        with_grad = grad_chunk is not None and bool(grad_chunk(start)) and torch.is_grad_enabled()
        for i in range(exit_steps[c] + 1):
            t = t_list[i].expand(batch)
            is_exit = i == exit_steps[c]
            if on_step is not None:
                on_step(start, i, x.detach())
            with contextlib.nullcontext() if (is_exit and with_grad) else torch.no_grad():
                x0 = _guided_x0(net, x, t, condition, neg_condition, guidance_scale, start, store_kv=False)
            if not is_exit:
                eps = torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)
                x = schedule.forward_process(x0, eps, t_list[i + 1])
        with torch.no_grad():  # write the finished chunk (as context) into the cache
            ctx = x0.detach()
            if context_noise > 0:
                eps = torch.randn(ctx.shape, dtype=ctx.dtype, device=ctx.device, generator=generator)
                ctx = schedule.forward_process(ctx, eps, t_ctx)
            _guided_x0(net, ctx, t_ctx, condition, neg_condition, guidance_scale, start, store_kv=True)
        if on_chunk is not None:
            on_chunk(start, x0.detach())
        chunks.append(x0)
    net.clear_caches()
    return torch.cat(chunks, dim=2).to(noise.dtype)


@torch.no_grad()
def causal_generate(net, noise: torch.Tensor, condition: Any = None, t_list=None, context_noise: float = 0.0,
                    neg_condition: Any = None, guidance_scale: float | None = None,
                    on_chunk: Callable[[int, torch.Tensor], None] | None = None,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Few-step AR generation of a whole video (every chunk runs all of t_list; see the module docstring).

    noise [B, C, T, H, W] unit noise, T any multiple of net.chunk_size (past net.total_num_frames too);
    on_chunk(start_frame, x0_chunk) is called as each chunk is finished (streaming writes); CFG with
    `guidance_scale` (pred + (g - 1)(pred - pred_neg), the negative branch on its own "neg" cache).
    """
    return causal_rollout(net, noise, condition=condition, t_list=t_list, context_noise=context_noise,
                          neg_condition=neg_condition, guidance_scale=guidance_scale, on_chunk=on_chunk,
                          generator=generator)


def sample_exit_steps(num_chunks: int, num_steps: int, same_step_across_blocks: bool = True,
                      last_step_only: bool = False, generator: torch.Generator | None = None) -> list[int]:
    """This process's draw of each chunk's exit step in [0, num_steps) (Self-Forcing's gradient step): one shared
    step (same_step_across_blocks), one per chunk, or the last (last_step_only)."""
    if last_step_only:
        return [num_steps - 1] * num_chunks
    draws = torch.randint(0, num_steps, (1 if same_step_across_blocks else num_chunks,), generator=generator)
    return (draws.expand(num_chunks) if same_step_across_blocks else draws).tolist()


def draw_exit_steps(num_chunks: int, num_steps: int, same_step_across_blocks: bool = True,
                    last_step_only: bool = False, generator: torch.Generator | None = None) -> list[int]:
    """Rank 0's sample_exit_steps, broadcast so that every rank runs the same rollout schedule (one backward
    structure across DDP/FSDP ranks)."""
    steps = sample_exit_steps(num_chunks, num_steps, same_step_across_blocks, last_step_only, generator)
    if dist_utils.is_initialized() and dist_utils.world_size() > 1:
        steps = dist_utils.broadcast_object(steps, src=0)
    return [int(k) for k in steps]
