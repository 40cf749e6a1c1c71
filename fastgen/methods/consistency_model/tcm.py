"""Truncated consistency models (Lee et al. 2024): stage 2 of a two-stage consistency training.

Stage 1 is an ordinary CM (CMModel). Stage 2 trains the student only on t >= transition_t; the consistency target
below transition_t comes from the frozen stage-1 model (`cm_teacher`), which provides the boundary condition
f(x, t') = f_stage1(x, t') in place of f(x, 0) = x. The student thus spends its capacity on the noisy half of the
trajectory, where 1-step generation needs it. Per step, a fraction `boundary_prob` of the batch is placed at
t = transition_t (so r < transition_t and the target is the stage-1 model) and weighted by `w_boundary`:
    loss = mean(lambda d)[not boundary] + w_boundary * mean(lambda d)[boundary].

The stage-1 networks come from `trainer.checkpointer.pretrained_ckpt_path` through
`trainer.checkpointer.pretrained_ckpt_key_map` (e.g. {"cm_teacher": "ema", "net": "ema", "ema": "ema"}); the
`cm_teacher` is frozen and never checkpointed (a resumed stage-2 run reloads it from the stage-1 file).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from loguru import logger
from torch import nn

from fastgen.methods.consistency_model.cm import CMModel
from fastgen.methods.consistency_model.losses import ect_r_from_t

# boundary samples sit just above transition_t so that they are routed to the student
BOUNDARY_OFFSET = 1e-8


def route_by_time(student_fn, teacher_fn, x: torch.Tensor, t: torch.Tensor, transition_t: float) -> torch.Tensor:
    """Per sample: student_fn for t >= transition_t, teacher_fn below.

    The student always runs on the whole batch, first: its dropout masks then depend only on the RNG state and the
    batch shape, so the no-grad target pass at r (replaying the RNG of the pass at t, see CMModel) draws the same
    mask for every sample as the trained pass did, whichever samples the teacher takes over. (Running the student on
    `x[mask]` alone would shift the masks between the two passes.) The teacher runs afterwards on its own samples.
    """
    use_student = t >= transition_t
    out = student_fn(x, t)
    if bool(use_student.all()):
        return out
    rows = (~use_student).nonzero(as_tuple=True)[0]
    return out.index_put((rows,), teacher_fn(x[~use_student], t[~use_student]).to(out.dtype))


def _select(condition: Any, mask: torch.Tensor) -> Any:
    if condition is None:
        return None
    if isinstance(condition, dict):
        return {k: _select(v, mask) for k, v in condition.items()}
    return condition[mask] if condition.shape[0] == mask.shape[0] else condition


class TCMModel(CMModel):
    """Stage-2 truncated consistency training (see module docstring)."""

    def __init__(self, config: Any):
        if not 0.0 <= float(config.boundary_prob) < 1.0:
            raise ValueError(f"model.boundary_prob must be in [0, 1); got {config.boundary_prob}")
        super().__init__(config)

    def build_model(self) -> None:
        super().build_model()
        # the stage-1 CM; replaced by the checkpoint's weights (key map) before training starts. Kept in train mode:
        # its targets then see dropout exactly as the stage-1 model's own consistency targets did.
        self.cm_teacher = copy.deepcopy(self.net).train().requires_grad_(False)

    @property
    def fsdp_dict(self) -> nn.ModuleDict:
        """cm_teacher is moved / sharded with the trained nets but is not in model_dict (never checkpointed)."""
        modules = dict(super().fsdp_dict.items())
        modules["cm_teacher"] = self.cm_teacher
        return nn.ModuleDict(modules)

    def on_train_begin(self, is_fsdp: bool = False) -> None:
        if self.resume_iter == 0:
            logger.warning("TCM stage 2: cm_teacher was not loaded from a stage-1 checkpoint (set "
                           "trainer.checkpointer.pretrained_ckpt_path); it is a copy of the initial student")
        super().on_train_begin(is_fsdp=is_fsdp)
        self.cm_teacher.train()

    # --- times ---------------------------------------------------------------------------------------------------
    def sample_t_r(self, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """t >= transition_t (sample_t_cfg.min_t), a `boundary_prob` share exactly at the transition."""
        transition_t = float(self.config.transition_t)
        t = self.sample_t(n, device)
        boundary = torch.rand(n, device=device) < float(self.config.boundary_prob)
        t = torch.where(boundary, torch.full_like(t, transition_t + BOUNDARY_OFFSET), t)
        if not bool((t >= transition_t).any()):
            raise ValueError(f"every sampled t lies below transition_t={transition_t}: set sample_t_cfg.min_t >= "
                             "transition_t (the student is only trained above the transition)")
        self._boundary = boundary
        r = ect_r_from_t(t, float(self.ratio), float(getattr(self.config.sample_t_cfg, "min_r", 0.0)))
        return torch.maximum(t, r + 1e-6), r

    # --- routing through the stage-1 model -------------------------------------------------------------------------
    def _routed(self, x: torch.Tensor, t: torch.Tensor, condition: Any) -> torch.Tensor:
        transition_t = float(self.config.transition_t)
        mask = t >= transition_t

        def student(x_s, t_s):
            return self.gen_data_from_net(self.net, x_s, t_s, condition=condition)

        def teacher(x_s, t_s):
            with torch.no_grad():
                return self.gen_data_from_net(self.cm_teacher, x_s, t_s, condition=_select(condition, ~mask))

        return route_by_time(student, teacher, x, t, transition_t)

    def student_x0(self, y_t, t, condition):
        return self._routed(y_t, t, condition)

    def target_x0(self, y_r, r, condition):
        return self._routed(y_r, r, condition)

    def reduce_loss(self, weighted: torch.Tensor, t: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """mean over interior samples + w_boundary * mean over boundary samples (an empty group contributes 0)."""
        boundary = self._boundary
        zero = weighted.new_zeros(())
        interior = weighted[~boundary].mean() if bool((~boundary).any()) else zero
        at_boundary = weighted[boundary].mean() if bool(boundary.any()) else zero
        total = interior + float(self.config.w_boundary) * at_boundary
        return total, {"loss_interior": interior.detach().float(), "loss_boundary": at_boundary.detach().float()}
