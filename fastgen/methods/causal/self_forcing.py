"""Self-Forcing (Huang et al. 2025, "Self Forcing: Bridging the Train-Test Gap in Autoregressive Video Diffusion").

CausVid's DMD2 losses, but the generator sample is the student's own AR rollout from pure noise with the KV cache,
exactly as at inference (no teacher forcing, so no exposure bias):
    exit step k_c per chunk: drawn on rank 0 and broadcast (identical on every rank);
        same_step_across_blocks -> one k for all chunks; last_step_only -> k = the last step;
    per chunk c (frames [s, s + chunk)): the t_list steps 0..k_c-1 under no_grad (re-noising with fresh noise),
        step k_c with the graph iff enable_gradient_in_rollout and s >= start_gradient_frame; its x0 is the chunk;
        then the cache pass (no_grad) on that x0 at t = 0, or re-noised to t = context_noise;
    gen = the concatenated chunks -> VSD(gen; T, F) as DMD2 (critic steps roll out under no_grad).
The gradient reaches the weights only through the exit steps (truncated backprop through the rollout, sec. 3.3).
"""

from __future__ import annotations

from typing import Any

import torch

from fastgen.methods.causal.causvid import CausVidModel
from fastgen.networks.causal_sampling import causal_rollout, draw_exit_steps


class SelfForcingModel(CausVidModel):

    def __init__(self, config: Any):
        frames = getattr(config, "start_gradient_frame", 0)
        if int(frames) < 0:
            raise ValueError(f"model.start_gradient_frame must be >= 0; got {frames}")
        super().__init__(config)

    def generate(self, real: torch.Tensor, condition: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(gen = the student's AR rollout from pure noise, unit noise); a graph only at the exit steps of chunks
        at or past start_gradient_frame, and only when the student is being trained (generator steps)."""
        cfg = self.config
        noise = torch.randn_like(real)
        steps = int(cfg.student_sample_steps)
        t_list = self.student_t_list(self.net, steps).to(real.device)
        exit_steps = draw_exit_steps(real.shape[2] // self.net.chunk_size, steps, cfg.same_step_across_blocks,
                                     cfg.last_step_only)
        train = cfg.enable_gradient_in_rollout and any(p.requires_grad for p in self.net.parameters())
        start = int(cfg.start_gradient_frame)
        gen = causal_rollout(self.net, noise, condition, t_list=t_list, context_noise=self.context_noise,
                             exit_steps=exit_steps, grad_chunk=(lambda s: s >= start) if train else None)
        self.last_exit_steps = exit_steps  # logged
        return gen, noise

    def generator_step(self, real, condition, neg_condition) -> tuple[dict, dict]:
        loss_map, outputs = super().generator_step(real, condition, neg_condition)
        if not loss_map["total_loss"].requires_grad:
            raise ValueError("Self-Forcing's generator step has no gradient: set model.enable_gradient_in_rollout="
                             f"True and model.start_gradient_frame below the {real.shape[2]} frames")
        loss_map["exit_step"] = torch.tensor(float(sum(self.last_exit_steps)) / len(self.last_exit_steps))
        return loss_map, outputs
