"""Knowledge distillation: regress the student's x0 prediction onto teacher ODE solutions.

Data (fastgen.datasets.kd_dataset): "noise" (unit noise the teacher started from), "real" (the teacher's sample) and
optionally "path" [B, S, ...] (the teacher's state at each of S recorded times, path[:, 0] the scaled start state,
path[:, -1] the sample).
- 1 step: x = noise * sigma(max_t) (or path[:, 0]), loss = 0.5 * MSE(G(x, max_t), real).
- k steps with student t_list [t_0 > ... > t_k = 0]: per sample a random step i < k, x = path[:, i * stride]
  (stride = (S - 1) / k, so the path grid must contain the student grid), loss = 0.5 * MSE(G(x, t_i), real).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from fastgen.methods.model import FastGenModel


def knowledge_distillation_loss(gen: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """KD regression loss (Luhman & Luhman 2021): 0.5 * mean (G(x_t, t) - x_teacher)^2."""
    return 0.5 * F.mse_loss(gen.float(), target.float())


def one_step_regression(model: FastGenModel, noise: torch.Tensor, target: torch.Tensor,
                        condition: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(KD loss, G's x0): the student's first step from unit `noise` scaled to sigma(max_t), regressed onto the
    teacher's ODE solution `target` of the same noise. Also DMD's regression term (Yin et al. 2024a, eq. 7)."""
    schedule = model.net.noise_scheduler
    t = torch.full((noise.shape[0],), float(schedule.max_t), dtype=torch.float64, device=noise.device)
    gen = model.gen_data_from_net(model.net, schedule.latents(noise), t, condition=condition)
    return knowledge_distillation_loss(gen, target), gen


def path_inputs(path: torch.Tensor, t_list: torch.Tensor, step_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x [B, ...], t float64 [B]): each sample's path state at student step `step_ids[b]` and its time."""
    num_states, num_steps = path.shape[1], len(t_list) - 1
    if (num_states - 1) % num_steps != 0:
        raise ValueError(f"a teacher path with {num_states} states cannot serve a {num_steps}-step student: "
                         f"(states - 1) must be a multiple of student_sample_steps")
    stride = (num_states - 1) // num_steps
    rows = torch.arange(path.shape[0], device=path.device)
    x = path[rows, step_ids.to(path.device) * stride]
    return x, t_list.to(path.device)[step_ids.to(path.device)]


class KDModel(FastGenModel):
    """Student regression onto recorded teacher (noise -> sample) pairs or trajectories."""

    supports_lora = True

    def single_train_step(self, data: Mapping[str, Any], iteration: int) -> tuple[dict, dict]:
        real, condition, _ = self._prepare_training_data(data)
        schedule = self.net.noise_scheduler
        steps = int(self.config.student_sample_steps)
        batch = real.shape[0]
        if steps == 1 and "noise" in data:
            noise = data["noise"]
            loss, gen = one_step_regression(self, noise, real, condition)
            return {"total_loss": loss, "recon_loss": loss.detach()}, {"gen_rand": gen.detach(), "input_rand": noise}
        if steps == 1:
            if "path" not in data:
                raise KeyError(f"1-step KD needs data['noise'] or data['path']; the batch has {sorted(data)}")
            x = data["path"][:, 0]
            noise = x / schedule.max_sigma
            t = torch.full((batch,), float(schedule.max_t), dtype=torch.float64, device=real.device)
        else:
            if "path" not in data:
                raise KeyError(f"{steps}-step KD needs teacher trajectories data['path']; the batch has {sorted(data)}")
            t_list = self.student_t_list(self.net, steps)
            step_ids = torch.randint(0, steps, (batch,), device=real.device)
            x, t = path_inputs(data["path"], t_list, step_ids)
            noise = data.get("noise", data["path"][:, 0] / schedule.max_sigma)
        gen = self.gen_data_from_net(self.net, x, t, condition=condition)
        loss = knowledge_distillation_loss(gen, real)
        if steps == 1:
            gen_rand: Any = gen.detach()
        else:
            gen_rand = self.sample_outputs(noise, condition=condition)["gen_rand"]
        return {"total_loss": loss, "recon_loss": loss.detach()}, {"gen_rand": gen_rand, "input_rand": noise}
