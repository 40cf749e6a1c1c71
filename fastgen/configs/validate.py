"""Checks of a resolved config's values, run when the config resolves (so `--dryrun` catches them).

Each problem is one `ConfigError` line naming the key and what is allowed, raised before anything is built: a bad
value must not surface hours later as "integer modulo by zero" or a 60x slower run. Only cheap checks live here
(no torch import, except to ask whether a GPU exists when the config names `cuda`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig

from fastgen.configs.config_utils import ConfigError
from fastgen.configs.opt import OPTIMIZER_TYPES
from fastgen.utils.lazy import TARGET_KEY, InstantiationError, locate

WANDB_MODES = ("online", "offline", "disabled")  # fastgen.callbacks.wandb.WANDB_MODES (a test keeps them equal)
DEVICE_TYPES = ("auto", "cpu", "cuda")  # fastgen.methods.model.DEVICE_TYPES (a test keeps them equal)
BUDGET_CLOCKS = ("wall", "cpu")  # fastgen.trainer.BUDGET_CLOCKS (a test keeps them equal)
PATH_SCHEDULES = ("edm", "rf", "trig")  # fastgen.methods.consistency_model.mean_flow.PATH_SCHEDULES (a test keeps them equal)
GLOBAL_VARS = ("MAX_VAL_STEPS",)  # what trainer.global_vars / global_vars_val entries may set
OPTIMIZER_TARGET = "fastgen.configs.opt.get_optimizer"
# a micro-batch below this fraction of the best possible one is refused (e.g. global 257 / batch 256 -> micro 1)
MIN_MICRO_BATCH_FRACTION = 0.5


def _positive_int(value: Any, key: str, hint: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}={value!r} must be a positive integer{hint}")


def check_trainer(trainer: Any) -> None:
    for name in ("save_ckpt_iter", "logging_iter", "validation_iter"):
        _positive_int(getattr(trainer, name), f"trainer.{name}", " (every how many iterations; e.g. 1000)")
    _positive_int(trainer.max_iter, "trainer.max_iter", " (the last training iteration)")
    _positive_int(trainer.grad_accum_rounds, "trainer.grad_accum_rounds")
    if trainer.batch_size_global is not None:
        _positive_int(trainer.batch_size_global, "trainer.batch_size_global", " or null")
    minutes = trainer.max_minutes
    if minutes is not None and (isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or minutes <= 0):
        raise ConfigError(f"trainer.max_minutes={minutes!r} must be a positive number of minutes or null")
    if trainer.max_minutes_clock not in BUDGET_CLOCKS:
        raise ConfigError(f"trainer.max_minutes_clock={trainer.max_minutes_clock!r} is not one of "
                          f"{', '.join(BUDGET_CLOCKS)}")
    for key, entry in [("trainer.global_vars", trainer.global_vars)] + [
        (f"trainer.global_vars_val[{i}]", e) for i, e in enumerate(trainer.global_vars_val or [])
    ]:
        check_global_vars(entry, key)
    if not trainer.global_vars_val:
        raise ConfigError("trainer.global_vars_val must hold at least one entry (null = the plain validation pass)")


def check_global_vars(entry: Any, key: str) -> None:
    if entry is None:
        return
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{key} must be a mapping such as {{MAX_VAL_STEPS: 4}} or null, got {entry!r}")
    for name, value in entry.items():
        if name not in GLOBAL_VARS:
            raise ConfigError(f"{key}.{name} is not a global variable; allowed: {', '.join(GLOBAL_VARS)}")
        _positive_int(value, f"{key}.{name}")


def check_loaders(config: Any) -> None:
    for name in ("dataloader_train", "dataloader_val"):
        loader = getattr(config, name)
        if isinstance(loader, Mapping) and "batch_size" in loader:
            _positive_int(loader["batch_size"], f"{name}.batch_size")


def check_log_config(log_config: Any) -> None:
    if log_config.wandb_mode not in WANDB_MODES:
        raise ConfigError(f"log_config.wandb_mode={log_config.wandb_mode!r} is not one of {', '.join(WANDB_MODES)}")


def _lazy_fields(node: Any, prefix: str) -> list[tuple[str, DictConfig]]:
    """(key, LazyCall) for every LazyCall field of an attrs config node (not recursing into LazyCalls)."""
    fields = []
    for name, value in vars(node).items():
        if isinstance(value, DictConfig) and TARGET_KEY in value:
            fields.append((f"{prefix}.{name}", value))
    return fields


def check_optimizers_and_schedulers(model: Any) -> None:
    for key, lazy in _lazy_fields(model, "model"):
        target = lazy[TARGET_KEY]
        if key.endswith("_optimizer") and target == OPTIMIZER_TARGET:
            optim_type = lazy.get("optim_type", "adamw")
            if optim_type not in OPTIMIZER_TYPES:
                raise ConfigError(f"{key}.optim_type={optim_type!r} is not one of {', '.join(OPTIMIZER_TYPES)}")
        elif key.endswith(("_optimizer", "_scheduler")) and isinstance(target, str):
            try:
                found = locate(target)
            except InstantiationError:
                found = None
            if not callable(found):
                kind = "optimizer" if key.endswith("_optimizer") else "scheduler"
                raise ConfigError(f"{key}: unknown {kind} {target!r}; use a class of fastgen.utils.lr_scheduler "
                                  f"(e.g. LambdaLinearScheduler) or the LazyCalls in fastgen.configs.opt")


def check_device(device: Any, check_gpu: bool = True) -> None:
    """The device name always; whether a GPU is present only with `check_gpu` (--smoke runs on CPU whatever the
    config names, so a GPU config can be smoke-tested on a laptop)."""
    spec = "auto" if device is None else str(device)
    kind = spec.split(":")[0]
    if kind not in DEVICE_TYPES:
        raise ConfigError(f"model.device={spec!r} is not supported; expected one of {', '.join(DEVICE_TYPES)} "
                          f"(or 'cuda:N')")
    if kind == "cuda" and check_gpu:
        import torch  # only here: a config naming cuda is about to train on it anyway

        if not torch.cuda.is_available():
            raise ConfigError(f"model.device={spec!r} but no CUDA GPU is available here; use model.device=auto "
                              f"(GPU when present, else CPU) or model.device=cpu")


def check_model(model: Any, check_gpu: bool = True) -> None:
    check_device(model.device, check_gpu)
    check_optimizers_and_schedulers(model)
    use_ema = model.use_ema  # typed Any for OmegaConf's sake, so checked here
    names = [use_ema] if isinstance(use_ema, str) else use_ema
    if not (isinstance(use_ema, bool) or use_ema is None or (
            isinstance(names, (list, tuple, ListConfig)) and all(isinstance(n, str) for n in names))):
        raise ConfigError(f"model.use_ema={use_ema!r} must be true, false or a list of names starting with 'ema' "
                          f"(e.g. [ema, ema_2])")
    check_causal_chunks(model)
    disc_weight = getattr(model, "gan_loss_weight_disc", None)  # DMD2-family configs only
    if disc_weight is not None and (isinstance(disc_weight, bool) or not isinstance(disc_weight, (int, float))
                                    or disc_weight < 0):
        raise ConfigError(f"model.gan_loss_weight_disc={disc_weight!r} must be a number >= 0 or null (null: 1 on "
                          "teacher features, 0.01 on fake-score features)")
    path = getattr(model, "path_schedule", None)  # MeanFlow configs only
    if path is not None and path not in PATH_SCHEDULES:
        raise ConfigError(f"model.path_schedule={path!r} must be null (the network's own schedule) or one of "
                          f"{list(PATH_SCHEDULES)} (schedules whose SNR inverse has a closed form)")
    if model.skip_layers is not None:
        raise ConfigError(f"model.skip_layers={list(model.skip_layers)!r}: skip-layer guidance is not implemented by "
                          f"any network here (the reference uses it for Wan only); remove the override or set null")


def check_causal_chunks(model: Any) -> None:
    """A causal network's chunk_size must divide its total_num_frames and the latent frames of model.input_shape
    [C, T, H, W] (whole chunks at every forward)."""
    net = model.net
    if not isinstance(net, Mapping) or "chunk_size" not in net or net.get("chunk_size") is None:
        return
    chunk, total = net.get("chunk_size"), net.get("total_num_frames")
    _positive_int(chunk, "model.net.chunk_size", " (latent frames per chunk)")
    if total is not None:
        _positive_int(total, "model.net.total_num_frames", " (latent frames per training video)")
        if total % chunk:
            raise ConfigError(f"model.net.chunk_size={chunk} does not divide model.net.total_num_frames={total} "
                              "(latent frames): pick a chunk size that divides the frame count")
    shape = list(model.input_shape or [])
    if len(shape) == 4 and isinstance(shape[1], int) and shape[1] % chunk:
        raise ConfigError(f"model.net.chunk_size={chunk} does not divide the {shape[1]} latent frames of "
                          f"model.input_shape={shape}: pick a chunk size that divides the frame count")


def check_micro_batch(micro: int, batch_size: int, per_rank: int, batch_size_global: int, world: int) -> None:
    """Refuse a global batch whose only exact split uses a micro-batch far below what fits (e.g. 257 -> 1)."""
    best = min(batch_size, per_rank)
    if micro >= MIN_MICRO_BATCH_FRACTION * best:
        return
    step = best * world
    lower = batch_size_global // step * step
    choices = " or ".join(str(v) for v in (lower, lower + step) if v > 0)
    raise ConfigError(
        f"trainer.batch_size_global={batch_size_global} splits exactly only into micro-batches of {micro} per "
        f"process (dataloader_train.batch_size={batch_size}, {world} process(es), {per_rank // micro} accumulation "
        f"rounds: far slower than micro-batches of {best}); choose a global batch such as {choices}"
    )


def validate_config(config: Any, check_gpu: bool = True) -> None:
    """Raise ConfigError on the first value that cannot work (see the module docstring).

    `check_gpu=False` skips only the "is a GPU here" question (see check_device); every value is still checked.
    """
    check_trainer(config.trainer)
    check_loaders(config)
    check_log_config(config.log_config)
    check_model(config.model, check_gpu)
