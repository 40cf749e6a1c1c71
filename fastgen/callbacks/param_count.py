"""Count parameters of every checkpointed network (and the teacher) once, at the start of training."""

from __future__ import annotations

from typing import Any

import torch
from loguru import logger

from fastgen.callbacks.callback import Callback, unwrap_model


def count_parameters(module: torch.nn.Module) -> dict[str, int]:
    """total / trainable counts of the full (global) parameters, and `local` elements held by this rank."""
    total = trainable = local = 0
    for p in module.parameters():
        n = p.numel()
        total += n
        trainable += n if p.requires_grad else 0
        local += p.to_local().numel() if hasattr(p, "to_local") else n
    return {"total": total, "trainable": trainable, "local": local}


class ParamCountCallback(Callback):
    """Logs `params/<name>/total`, `params/<name>/trainable` (and `local` when sharded) once."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, dict[str, int]] = {}

    def on_train_begin(self, model: Any, iteration: int = 0, **kwargs: Any) -> None:
        if self.counts:
            return
        model = unwrap_model(model)
        modules = dict(getattr(model, "model_dict", {}) or {})
        teacher = getattr(model, "teacher", None)
        if isinstance(teacher, torch.nn.Module) and "teacher" not in modules:
            modules["teacher"] = teacher
        for name, module in modules.items():
            counts = count_parameters(module)
            self.counts[name] = counts
            self.logs[f"params/{name}/total"] = float(counts["total"])
            self.logs[f"params/{name}/trainable"] = float(counts["trainable"])
            if counts["local"] != counts["total"]:
                self.logs[f"params/{name}/local"] = float(counts["local"])
            logger.info(f"parameters of {name}: {counts['total']:,} total, {counts['trainable']:,} trainable")
