"""CausVid (Yin et al. 2025, "From Slow Bidirectional to Fast Autoregressive Video Diffusion Models").

DMD2 (see distribution_matching/dmd2.py) with a causal student G and a bidirectional teacher T (`model.teacher`);
the fake score F has the teacher's architecture (or `model.fake_score_net`). The student (usually initialised from a
CausalKD checkpoint, `pretrained_student_net_path`) is trained with diffusion forcing:
    x = real video noised per chunk with t_c drawn from t_list (sample_t_inhom: every entry, the clean 0 included;
        chunks at t_list[0] start from pure noise as at inference),
    `model.backward_simulation=True` (DMD2's multi-step fix, off in the paper's CausVid): x = instead each chunk's
        state at its t_c in the student's own no-grad AR rollout from the step's noise (its earlier steps, its own
        finished chunks in the cache), t_c = 0 giving its finished chunk, so the inputs have the law of sampling,
    gen = G(x, t [B, T]) in one block-causal pass (is_ar=False),
    `model.chunk_t_order` (default "independent", the paper's draw) reorders the per-chunk t: "nondecreasing" (no
    chunk noisier than a later one) or "clean_context" (t = 0 before a drawn chunk c, chunk c's t from c on).
    With backward simulation, "clean_context" makes chunk c's input and context exactly what sampling computes at
    its step (the student's own finished chunks in the cache, its own state at t_c): the Toy config's choice, the
    only combination that improved the CausalKD init on the exact oracle (benchmarks/results/oracle_causal.md;
    the paper's draw degraded it, each option alone did not fix it),
then DMD2's losses on the whole video: x_t = noise(gen, t ~ sample_t_cfg), VSD(gen; T_x0(x_t), F_x0(x_t)) (+ GAN);
critic steps train F by DSM on gen. Sampling (generator_fn): causal_generate, chunk by chunk with the KV cache.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from fastgen.methods.causal.common import CausalMethodMixin
from fastgen.methods.causal.kd import gather_chunk_states
from fastgen.methods.distribution_matching.dmd2 import DMD2Model
from fastgen.networks.causal_sampling import causal_rollout

CHUNK_T_ORDERS = ("independent", "nondecreasing", "clean_context")


def order_chunk_times(t: torch.Tensor, chunk_size: int, order: str) -> torch.Tensor:
    """Per-chunk times t [B, T] (constant per chunk) as drawn ("independent") or sorted along the chunks of each
    sample so that t never decreases ("nondecreasing": an earlier chunk is never noisier than a later one), or
    ("clean_context") clean (t = 0) before a chunk c drawn uniformly per sample and chunk c's drawn t from c on, so
    each generated chunk c sees clean context as AR sampling's cache holds it (real chunks, or with backward
    simulation the student's own finished chunks)."""
    if order == "independent":
        return t
    if order not in CHUNK_T_ORDERS:
        raise ValueError(f"model.chunk_t_order must be one of {CHUNK_T_ORDERS}; got {order!r}")
    per_chunk = t[:, ::chunk_size]
    if order == "nondecreasing":
        per_chunk = per_chunk.sort(dim=1).values
    else:
        n, chunks = per_chunk.shape
        first = torch.randint(0, chunks, (n, 1), device=t.device)
        at_first = per_chunk.gather(1, first).expand(n, chunks)
        per_chunk = torch.where(torch.arange(chunks, device=t.device) < first, torch.zeros_like(at_first), at_first)
    return per_chunk.repeat_interleave(chunk_size, dim=1)


class CausVidModel(CausalMethodMixin, DMD2Model):
    non_causal_method = "DMD2Model"

    def __init__(self, config: Any):
        order = getattr(config, "chunk_t_order", "independent")
        if order not in CHUNK_T_ORDERS:
            raise ValueError(f"model.chunk_t_order must be one of {CHUNK_T_ORDERS}; got {order!r}")
        super().__init__(config)

    def sampling_guidance(self, guidance_scale: float | None) -> float | None:
        return guidance_scale  # config.guidance_scale guides the teacher, not the distilled student

    def student_input(self, real: torch.Tensor, condition: Any = None) -> tuple[torch.Tensor, torch.Tensor,
                                                                               torch.Tensor]:
        """(x_student, t_student float64 [B, T] constant per chunk, unit noise z): diffusion forcing on real data,
        or with `model.backward_simulation` each chunk's state at its t in the student's own AR rollout from z."""
        schedule = self.net.noise_scheduler
        noise = torch.randn_like(real)
        t_list = self.student_t_list(self.net, int(self.config.student_sample_steps)).to(real.device)
        t = schedule.sample_t_inhom(real.shape[0], real.shape[2], self.net.chunk_size, t_list,
                                    device=real.device).to(schedule.t_precision)
        t = order_chunk_times(t, self.net.chunk_size, getattr(self.config, "chunk_t_order", "independent"))
        if getattr(self.config, "backward_simulation", False):
            states = self.simulated_states(noise, condition, t_list)
            ids = (t[..., None] == t_list.to(t.dtype)).to(torch.uint8).argmax(-1)  # t is an entry of t_list
            return gather_chunk_states(states, ids), t, noise
        x_first = schedule.latents(noise, t_list[0])
        at_first = (t == t_list[0])[:, None, :, None, None]
        return torch.where(at_first, x_first, schedule.forward_process(real, noise, t)), t, noise

    @torch.no_grad()
    def simulated_states(self, noise: torch.Tensor, condition: Any, t_list: torch.Tensor) -> torch.Tensor:
        """[B, K+1, C, T, H, W]: the student's own AR rollout from `noise` on t_list (K = len(t_list) - 1 steps per
        chunk, the cache holding its finished chunks at t = context_noise, exactly as generator_fn samples), states[:,
        i] = each chunk's input at t_list[i], states[:, K] = the finished video (DMD2's backward simulation)."""
        k, chunk = len(t_list) - 1, self.net.chunk_size
        states = noise.new_empty(noise.shape[0], k + 1, *noise.shape[1:])

        def record(start: int, i: int, x: torch.Tensor) -> None:
            states[:, i, :, start:start + chunk] = x

        states[:, k] = causal_rollout(self.net, noise, condition, t_list=t_list, context_noise=self.context_noise,
                                      on_step=record)
        return states

    def step_outputs(self, gen: torch.Tensor, noise: torch.Tensor, condition: Any) -> dict[str, Any]:
        """A deferred AR sample from the step's noise (the training gen is teacher-forced, not a rollout)."""
        return {"gen_rand": functools.partial(self.generator_fn, self.net_inference, noise, condition=condition),
                "input_rand": noise}
