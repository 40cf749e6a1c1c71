"""CausalKD: knowledge distillation of teacher ODE solutions into a causal student, chunk by chunk.

Data as KD: "real" (the teacher's sample), "path" [B, S, C, T, H, W] (its ODE states; path[:, 0] the scaled start)
and/or "noise". With the student grid t_list = [t_0 > ... > t_k = 0], the states on that grid are
states[:, i] = the path at t_i (i < k) and states[:, k] = real. Per sample and chunk an independent index
i ~ U{0..k} (the clean index k included: such chunks are clean context, as at AR sampling), the chunk's frames taken
from states[:, i] at t_i; loss = 0.5 * MSE(G(x, t [B, T]), real) in one block-causal pass.
Sampling: causal_generate on t_list (`student_sample_steps` steps per chunk).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from fastgen.methods.causal.common import CausalMethodMixin
from fastgen.methods.knowledge_distillation.kd import KDModel, knowledge_distillation_loss


def grid_states(real: torch.Tensor, t_list: torch.Tensor, schedule, path: torch.Tensor | None = None,
                noise: torch.Tensor | None = None) -> torch.Tensor:
    """[B, k+1, ...]: the teacher's states at t_list (k = len(t_list) - 1), the last one `real`.

    `path` holds either k states (the grid without its clean end) or S states with (S - 1) % k == 0 (its last the
    sample); without a path only k = 1 works, from `noise` (start state noise * sigma(t_0))."""
    k = len(t_list) - 1
    if path is None:
        if noise is None or k != 1:
            raise KeyError(f"{k}-step causal KD needs teacher trajectories data['path'] (1 step: data['noise'])")
        return torch.stack([schedule.latents(noise, t_list[0]), real], 1)
    s = path.shape[1]
    if s == k:
        noisy = path
    elif (s - 1) % k == 0:
        noisy = path[:, : s - 1 : (s - 1) // k]
    else:
        raise ValueError(f"a teacher path with {s} states cannot serve a {k}-step student: it needs {k} states or "
                         f"(states - 1) a multiple of {k}")
    return torch.cat([noisy.to(real.dtype), real[:, None]], 1)


def gather_chunk_states(states: torch.Tensor, frame_ids: torch.Tensor) -> torch.Tensor:
    """x[b, :, f] = states[b, frame_ids[b, f], :, f] for states [B, K, C, T, H, W] and frame_ids [B, T]."""
    b, _, c, frames, h, w = states.shape
    index = frame_ids.to(states.device).reshape(b, 1, 1, frames, 1, 1).expand(b, 1, c, frames, h, w)
    return states.gather(1, index)[:, 0]


class CausalKDModel(CausalMethodMixin, KDModel):
    non_causal_method = "KDModel"

    def single_train_step(self, data: Mapping[str, Any], iteration: int) -> tuple[dict, dict]:
        real, condition, _ = self._prepare_training_data(data)
        schedule = self.net.noise_scheduler
        t_list = self.student_t_list(self.net, int(self.config.student_sample_steps)).to(real.device)
        states = grid_states(real, t_list, schedule, data.get("path"), data.get("noise"))
        t, ids = schedule.sample_t_inhom(real.shape[0], real.shape[2], self.net.chunk_size, t_list, return_ids=True,
                                         device=real.device)
        x = gather_chunk_states(states, ids)
        gen = self.gen_data_from_net(self.net, x, t, condition=condition)
        loss = knowledge_distillation_loss(gen, real)
        noise = data["noise"] if "noise" in data else states[:, 0] / schedule.sigma(t_list[0]).to(real.dtype)
        return {"total_loss": loss, "recon_loss": loss.detach()}, self.sample_outputs(noise, condition=condition)
