"""Callback base class and the ordered collection the trainer talks to.

The trainer calls hooks on one `CallbackDict`, which forwards every call to each callback in insertion order
(callbacks whose class sets a larger `order` run later: sinks such as W&B read what producers recorded in the
same hook). Every hook accepts `**kwargs` so the trainer can pass new arguments without breaking old callbacks.

Scalars flow through `Callback.logs`: a callback writes `self.logs["group/name"] = float` whenever it has a new
value; the W&B callback collects and clears the `logs` of all its siblings at each logging iteration.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from loguru import logger

from fastgen.utils import instantiate

TARGET_KEY = "_target_"


def unwrap_model(model: Any) -> Any:
    """The FastGenModel behind a DDP-style wrapper (which keeps it in `.module`), else `model` itself."""
    while model is not None and not hasattr(model, "model_dict") and hasattr(model, "module"):
        model = model.module
    return model


def unwrap_module(module: torch.nn.Module) -> torch.nn.Module:
    """A network behind DDP / torch.compile wrappers."""
    for attr in ("module", "_orig_mod"):
        while hasattr(module, attr) and isinstance(getattr(module, attr), torch.nn.Module):
            module = getattr(module, attr)
    return module


def active_optimizers(model: Any, iteration: int) -> dict[str, torch.optim.Optimizer]:
    """The `optimizer_dict` entries that step at `iteration` (all of them if the model does not say)."""
    model = unwrap_model(model)
    optimizer_dict = dict(getattr(model, "optimizer_dict", {}) or {})
    active_names = getattr(model, "active_optimizer_names", None)
    if active_names is not None:
        names = set(active_names(iteration))
        return {name: opt for name, opt in optimizer_dict.items() if name in names}
    get_optimizers = getattr(model, "get_optimizers", None)
    if get_optimizers is None:
        return optimizer_dict
    active = get_optimizers(iteration)
    return {name: opt for name, opt in optimizer_dict.items() if any(opt is a for a in active)}


def global_batch_size(trainer: Any, config: Any = None) -> int | None:
    """Images per optimizer step: trainer.global_batch_size, else batch_size * grad_accum_rounds * world_size of
    the trainer, else config.trainer.batch_size_global; None when none is known."""
    batch = getattr(trainer, "global_batch_size", None)
    if batch is None and all(hasattr(trainer, a) for a in ("batch_size", "grad_accum_rounds", "world_size")):
        batch = trainer.batch_size * trainer.grad_accum_rounds * trainer.world_size
    if batch is None:
        batch = getattr(getattr(config, "trainer", None), "batch_size_global", None)
    return int(batch) if batch is not None else None


def logging_interval(trainer: Any, config: Any = None, default: int = 1000) -> int:
    """trainer.logging_iter, else config.trainer.logging_iter, else `default`."""
    every = getattr(trainer, "logging_iter", None)
    if every is None:
        every = getattr(getattr(config, "trainer", None), "logging_iter", None)
    return int(every or default)


def is_rank0() -> bool:
    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) or (
        torch.distributed.get_rank() == 0
    )


class Callback:
    """No-op hooks; subclass and override what you need. `config`, `trainer` and `name` are set by CallbackDict."""

    order: int = 0  # broadcast order among callbacks: lower first, ties keep insertion order

    def __init__(self) -> None:
        self.config: Any = None
        self.trainer: Any = None
        self.name: str = type(self).__name__
        self.logs: dict[str, float] = {}
        self.siblings: CallbackDict | None = None

    # --- application / setup ---------------------------------------------------------------------------------------
    def on_app_begin(self, **kwargs: Any) -> None: ...
    def on_model_init_start(self, model: Any, **kwargs: Any) -> None: ...
    def on_model_init_end(self, model: Any, **kwargs: Any) -> None: ...
    def on_optimizer_init_start(self, model: Any, **kwargs: Any) -> None: ...
    def on_optimizer_init_end(self, model: Any, **kwargs: Any) -> None: ...
    def on_load_checkpoint_start(self, model: Any, iteration: int = 0, **kwargs: Any) -> None: ...
    def on_load_checkpoint_end(self, model: Any, iteration: int = 0, **kwargs: Any) -> None: ...
    def on_dataloader_init_start(self, **kwargs: Any) -> None: ...
    def on_dataloader_init_end(self, **kwargs: Any) -> None: ...

    # --- training ----------------------------------------------------------------------------------------------------
    def on_train_begin(self, model: Any, iteration: int = 0, **kwargs: Any) -> None: ...
    def on_train_end(self, model: Any, iteration: int = 0, **kwargs: Any) -> None: ...
    def on_training_step_begin(self, model: Any, iteration: int = 0, **kwargs: Any) -> None: ...
    def on_training_accum_step_begin(
        self, model: Any, data: Any = None, iteration: int = 0, accum_round: int = 0, **kwargs: Any
    ) -> None: ...
    def on_backward_begin(self, model: Any, loss_map: Any = None, iteration: int = 0, **kwargs: Any) -> None: ...
    def on_optimizer_step_begin(self, model: Any, iteration: int = 0, **kwargs: Any) -> None: ...
    def on_training_step_end(
        self, model: Any, data: Any = None, outputs: Any = None, loss_map: Any = None, iteration: int = 0,
        **kwargs: Any,
    ) -> None: ...

    # --- validation --------------------------------------------------------------------------------------------------
    def on_validation_begin(self, model: Any, iteration: int = 0, **kwargs: Any) -> None: ...
    def on_validation_end(self, model: Any, iteration: int = 0, **kwargs: Any) -> None: ...
    def on_validation_step_begin(
        self, model: Any, data: Any = None, outputs: Any = None, loss_map: Any = None, iteration: int = 0,
        **kwargs: Any,
    ) -> None: ...
    def on_validation_step_end(
        self, model: Any, data: Any = None, outputs: Any = None, loss_map: Any = None, iteration: int = 0,
        **kwargs: Any,
    ) -> None: ...

    # --- checkpointing / teardown ----------------------------------------------------------------------------------
    def on_save_checkpoint_start(self, model: Any, iteration: int = 0, **kwargs: Any) -> None: ...
    def on_save_checkpoint_success(self, model: Any, iteration: int = 0, **kwargs: Any) -> None: ...
    def on_save_checkpoint_end(self, model: Any, iteration: int = 0, **kwargs: Any) -> None: ...
    def on_app_end(self, **kwargs: Any) -> None: ...

    # --- state (saved in checkpoints under "callbacks"/<name>) --------------------------------------------------------
    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        return None


HOOK_NAMES = tuple(sorted(name for name in vars(Callback) if name.startswith("on_")))


class CallbackDict:
    """Builds the callbacks of `config.trainer.callbacks` (name -> LazyCall) and broadcasts hook calls to them."""

    def __init__(self, callbacks_cfg: Mapping[str, Any] | None = None, config: Any = None, trainer: Any = None):
        built: dict[str, Callback] = {}
        for name, cfg in (callbacks_cfg or {}).items():
            if cfg is None:
                continue  # `callbacks.<name> = None` switches an entry off
            if isinstance(cfg, Callback):
                callback = cfg
            elif isinstance(cfg, Mapping) and TARGET_KEY in cfg:
                callback = instantiate(cfg)
            else:
                raise ValueError(
                    f"callback entry '{name}' must be a LazyCall (a mapping with '{TARGET_KEY}'), a Callback or None; "
                    f"got {type(cfg).__name__}"
                )
            if not isinstance(callback, Callback):
                raise TypeError(
                    f"callback entry '{name}' built a {type(callback).__module__}.{type(callback).__qualname__}, "
                    "which is not a subclass of fastgen.callbacks.callback.Callback"
                )
            callback.name, callback.config, callback.trainer = name, config, trainer
            callback.siblings = self  # lets a sink (W&B) read the other callbacks' logs
            if not isinstance(getattr(callback, "logs", None), dict):
                callback.logs = {}  # a subclass that skipped Callback.__init__
            built[name] = callback
        ordered = sorted(enumerate(built.items()), key=lambda item: (item[1][1].order, item[0]))
        self._callbacks: dict[str, Callback] = {name: cb for _, (name, cb) in ordered}

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in HOOK_NAMES:
            raise AttributeError(f"CallbackDict has no hook '{name}'; known hooks: {', '.join(HOOK_NAMES)}")

        def broadcast(*args: Any, **kwargs: Any) -> None:
            for callback in self._callbacks.values():
                getattr(callback, name)(*args, **kwargs)

        return broadcast

    # --- mapping access ------------------------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Callback:
        return self._callbacks[name]

    def __contains__(self, name: object) -> bool:
        return name in self._callbacks

    def __iter__(self) -> Iterator[str]:
        return iter(self._callbacks)

    def __len__(self) -> int:
        return len(self._callbacks)

    def keys(self):
        return self._callbacks.keys()

    def values(self):
        return self._callbacks.values()

    def items(self):
        return self._callbacks.items()

    # --- state ---------------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, dict]:
        return {name: callback.state_dict() for name, callback in self._callbacks.items()}

    def load_state_dict(self, state_dict: Mapping[str, Any] | None) -> None:
        """Restore by name; a saved name with no callback now, or a callback with no saved state, is a warning."""
        state_dict = state_dict or {}
        for name in state_dict:
            if name not in self._callbacks:
                logger.warning(f"checkpoint holds state for callback '{name}', which is not configured now; ignored")
        for name, callback in self._callbacks.items():
            if name in state_dict:
                callback.load_state_dict(state_dict[name])
            else:
                logger.warning(f"checkpoint holds no state for callback '{name}'; it starts fresh")
