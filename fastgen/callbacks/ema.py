"""Exponential moving average of the student network's weights (one callback per EMA copy).

The EMA networks themselves live in the model (`model.ema_dict[name]` or `model.<name>`) and are checkpointed as
`model_dict` entries, so a resume restores them bit-exactly; this callback only decides the decay and applies it.
It copies `net -> ema` exactly once, at `start_iter` (counted with `model.resume_iter`), so resuming after
`start_iter` never re-initialises a restored EMA.
"""

from __future__ import annotations

from typing import Any

import torch
from loguru import logger

from fastgen.callbacks.callback import Callback, global_batch_size, unwrap_model, unwrap_module

EMA_TYPES = ("constant", "power", "halflife")
_WRAPPER_PREFIXES = ("_checkpoint_wrapped_module.", "_orig_mod.", "module.")


def constant_beta(beta: float) -> float:
    """beta_t = beta (classic fixed-rate EMA)."""
    return float(beta)


def power_beta(iteration: int, gamma: float) -> float:
    """beta_t = (1 - 1/t)^(gamma + 1): EDM2 power-function EMA (Karras et al. 2024, eq. 2), t = iterations done."""
    if iteration < 1:
        return 0.0
    return (1.0 - 1.0 / iteration) ** (gamma + 1.0)


def halflife_beta(iteration: int, batch_size: int, halflife_kimg: float, rampup_ratio: float | None) -> float:
    """beta_t = 0.5^(B / min(h * 1000, nimg * r)) with nimg = t * B: EDM's half-life EMA with linear ramp-up."""
    halflife_nimg = halflife_kimg * 1000.0
    if rampup_ratio is not None:
        halflife_nimg = min(halflife_nimg, iteration * batch_size * rampup_ratio)
    if halflife_nimg <= 0:
        return 0.0
    return 0.5 ** (batch_size / halflife_nimg)


def _plain_name(name: str) -> str:
    for prefix in _WRAPPER_PREFIXES:
        name = name.replace(prefix, "")
    return name


def _full(tensor: torch.Tensor) -> torch.Tensor:
    """A sharded DTensor gathered to its full value; a plain tensor unchanged."""
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


@torch.no_grad()
def ema_update(ema: torch.nn.Module, net: torch.nn.Module, beta: float) -> None:
    """ema <- beta * ema + (1 - beta) * net for parameters; buffers (e.g. running stats) are copied."""
    net_params = {_plain_name(n): p for n, p in unwrap_module(net).named_parameters()}
    net_buffers = {_plain_name(n): b for n, b in unwrap_module(net).named_buffers()}
    for name, p_ema in ema.named_parameters():
        key = _plain_name(name)
        if key not in net_params:
            raise KeyError(f"EMA parameter '{key}' has no counterpart in the network; EMA and net architectures differ")
        src = _full(net_params[key].detach()).to(device=p_ema.device, dtype=p_ema.dtype)
        p_ema.lerp_(src, 1.0 - beta)
    for name, b_ema in ema.named_buffers():
        key = _plain_name(name)
        if key in net_buffers:
            b_ema.copy_(_full(net_buffers[key].detach()))


@torch.no_grad()
def ema_copy(ema: torch.nn.Module, net: torch.nn.Module) -> None:
    """ema <- net (parameters and buffers)."""
    ema_update(ema, net, beta=0.0)


class EMACallback(Callback):
    """Updates one EMA copy of `model.net` after every optimizer step.

    Args:
        type: "constant" | "power" | "halflife" (see the beta functions above).
        beta: decay of the constant EMA.
        gamma: exponent of the power EMA (EDM2: 16.97 ~ sigma_rel 0.05, 6.94 ~ 0.10).
        ema_halflife_kimg, ema_rampup_ratio: half-life EMA parameters (ramp-up None disables it).
        start_iter: total iteration (resume_iter + iteration) at which net is copied into the EMA; updates follow.
        ema_name: which EMA of the model this callback drives.
        batch_size: global batch size for the half-life EMA; None -> `trainer.global_batch_size`.
    """

    def __init__(
        self,
        type: str = "constant",  # noqa: A002 - the config field name
        beta: float = 0.9999,
        gamma: float = 16.97,
        ema_halflife_kimg: float = 500.0,
        ema_rampup_ratio: float | None = 0.05,
        start_iter: int = 0,
        ema_name: str = "ema",
        batch_size: int | None = None,
    ):
        super().__init__()
        if type not in EMA_TYPES:
            raise ValueError(f"EMACallback type got {type!r}; expected one of {', '.join(EMA_TYPES)}")
        if type == "constant" and not 0.0 <= beta <= 1.0:
            raise ValueError(f"EMACallback beta got {beta}; expected a value in [0, 1]")
        if not str(ema_name).startswith("ema"):
            raise ValueError(f"EMACallback ema_name got {ema_name!r}; EMA names must start with 'ema'")
        self.ema_type = type
        self.beta = beta
        self.gamma = gamma
        self.ema_halflife_kimg = ema_halflife_kimg
        self.ema_rampup_ratio = ema_rampup_ratio
        self.start_iter = int(start_iter)
        self.ema_name = ema_name
        self.batch_size = batch_size
        self.num_updates = 0
        self._warned_missing = False

    def compute_beta(self, total_iter: int) -> float:
        if self.ema_type == "constant":
            return constant_beta(self.beta)
        if self.ema_type == "power":
            return power_beta(total_iter, self.gamma)
        return halflife_beta(total_iter, self._global_batch_size(), self.ema_halflife_kimg, self.ema_rampup_ratio)

    def _global_batch_size(self) -> int:
        if self.batch_size is not None:
            return int(self.batch_size)
        batch = global_batch_size(self.trainer, self.config)
        if batch is None:
            raise ValueError(
                f"EMACallback '{self.ema_name}' (type halflife) needs the global batch size: set batch_size=... "
                "or run it under a trainer that defines global_batch_size"
            )
        return batch

    def find_ema(self, model: Any) -> torch.nn.Module | None:
        model = unwrap_model(model)
        ema_dict = getattr(model, "ema_dict", None)
        if ema_dict is not None and self.ema_name in ema_dict:
            return ema_dict[self.ema_name]
        ema = getattr(model, self.ema_name, None)
        return ema if isinstance(ema, torch.nn.Module) else None

    def on_model_init_end(self, model: Any, **kwargs: Any) -> None:
        ema = self.find_ema(model)
        if ema is None:
            self._warn_missing()
            return
        if any(p.requires_grad for p in ema.parameters()):
            raise ValueError(f"EMA network '{self.ema_name}' has trainable parameters; EMA copies must be frozen")

    def _warn_missing(self) -> None:
        if not self._warned_missing:
            logger.warning(
                f"EMA callback '{self.name}': the model has no EMA network '{self.ema_name}' "
                "(set model.use_ema to include it); the callback does nothing"
            )
            self._warned_missing = True

    def on_training_step_end(self, model: Any, data: Any = None, outputs: Any = None, loss_map: Any = None,
                             iteration: int = 0, **kwargs: Any) -> None:
        ema = self.find_ema(model)
        if ema is None:
            self._warn_missing()
            return
        base = unwrap_model(model)
        total_iter = int(iteration) + int(getattr(base, "resume_iter", 0) or 0)
        if total_iter < self.start_iter:
            return
        if total_iter == self.start_iter and self.start_iter > 0:
            ema_copy(ema, base.net)  # start_iter 0: the model built the EMA as a copy of the initial net
            beta = 0.0
        else:
            beta = self.compute_beta(total_iter)
            ema_update(ema, base.net, beta)
        self.num_updates += 1
        self.logs[f"ema/{self.ema_name}_beta"] = beta

    def state_dict(self) -> dict:
        return {"num_updates": self.num_updates}

    def load_state_dict(self, state_dict: Any) -> None:
        self.num_updates = int((state_dict or {}).get("num_updates", 0))
