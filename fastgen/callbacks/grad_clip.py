"""Gradient clipping for every network whose optimizer steps at this iteration.

Runs in `on_optimizer_step_begin`, after the last backward of the iteration and before `optimizer.step()`:
1. unscale the gradients with the grad scaler (fp16) so the norm is measured in true units; the scaler remembers
   the unscale and still skips the step if it found inf/NaN;
2. replace non-finite gradient entries (NaN -> 0, +inf -> posinf, -inf -> neginf) and count them;
3. clip the total norm of each optimizer's parameters to `grad_norm`.
Unlike the reference (which only clipped `net`, so e.g. the DMD2 critic went unclipped), the default
`model_key="all"` clips every active optimizer's parameters; a name restricts it to one `optimizer_dict` entry.
"""

from __future__ import annotations

from typing import Any

import torch

from fastgen.callbacks.callback import Callback, active_optimizers, unwrap_model


def optimizer_params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]


@torch.no_grad()
def replace_nonfinite_grads(params: list[torch.Tensor], posinf: float = 0.0, neginf: float = 0.0) -> int:
    """Replace NaN/inf gradient entries in place; returns how many there were (one device sync in all)."""
    grads = [p.grad.to_local() if hasattr(p.grad, "to_local") else p.grad for p in params]
    if not grads:
        return 0
    count = int(torch.stack([(~torch.isfinite(g)).sum().to(grads[0].device) for g in grads]).sum())
    if count:
        for g in grads:
            torch.nan_to_num_(g, nan=0.0, posinf=posinf, neginf=neginf)
    return count


def clip_grad_norm(params: list[torch.Tensor], max_norm: float | None) -> float:
    """Total L2 norm before clipping; scales grads so the norm is at most `max_norm` (None: measure only)."""
    if not params:
        return 0.0
    norm = torch.nn.utils.clip_grad_norm_(params, float("inf") if max_norm is None else max_norm)
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    return float(norm)


class GradClipCallback(Callback):
    """Args:
    grad_norm: maximum total L2 norm per network (None or <= 0: only measure and log the norm).
    model_key: "all" (every optimizer stepping now) or one `optimizer_dict` name such as "net".
    posinf / neginf: values that replace +inf / -inf gradient entries (NaN always becomes 0).
    """

    def __init__(self, grad_norm: float | None = 10.0, model_key: str = "all", posinf: float = 0.0,
                 neginf: float = 0.0):
        super().__init__()
        self.grad_norm = grad_norm if grad_norm is not None and grad_norm > 0 else None
        self.model_key = model_key
        self.posinf = posinf
        self.neginf = neginf
        self.last_norms: dict[str, float] = {}
        self.last_nonfinite: dict[str, int] = {}
        self.total_nonfinite = 0

    def on_optimizer_step_begin(self, model: Any, iteration: int = 0, **kwargs: Any) -> None:
        model = unwrap_model(model)
        optimizer_dict = getattr(model, "optimizer_dict", {}) or {}
        if self.model_key != "all" and self.model_key not in optimizer_dict:
            raise ValueError(
                f"GradClipCallback model_key got {self.model_key!r}; expected 'all' or one of "
                f"{', '.join(optimizer_dict) or '(no optimizers)'}"
            )
        active = active_optimizers(model, iteration)
        if self.model_key != "all":
            active = {k: v for k, v in active.items() if k == self.model_key}
        scaler = getattr(model, "grad_scaler", None)
        self.last_norms, self.last_nonfinite = {}, {}
        for name, optimizer in active.items():
            if self._scaler_in_use(model, scaler, optimizer):
                scaler.unscale_(optimizer)
            params = optimizer_params(optimizer)
            nonfinite = replace_nonfinite_grads(params, self.posinf, self.neginf)
            norm = clip_grad_norm(params, self.grad_norm)
            self.last_norms[name], self.last_nonfinite[name] = norm, nonfinite
            self.total_nonfinite += nonfinite
            self.logs[f"grad_norm/{name}"] = norm
            self.logs[f"grad_nonfinite/{name}"] = float(nonfinite)

    @staticmethod
    def _scaler_in_use(model: Any, scaler: Any, optimizer: torch.optim.Optimizer) -> bool:
        if scaler is None or not scaler.is_enabled():
            return False
        should_use = getattr(model, "should_use_grad_scaler", None)
        return bool(should_use(optimizer)) if should_use is not None else True

    def state_dict(self) -> dict:
        return {"total_nonfinite": self.total_nonfinite}

    def load_state_dict(self, state_dict: Any) -> None:
        self.total_nonfinite = int((state_dict or {}).get("total_nonfinite", 0))
