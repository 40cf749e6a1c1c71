"""Single-file checkpoints that meet the reliability contract (DESIGN.md).

Layout: `{save_dir}/{iteration:07d}.pth`, a `torch.save` of
    {"model": {name: state_dict}, "optimizer": {name: sd}, "scheduler": {name: sd}, "grad_scaler": sd,
     "callbacks": {name: sd}, "iteration": int, "rng": [per-rank RNG state], "data": {loader: global position},
     "config": resolved YAML text, "world_size": int, "format_version": 1}
- written atomically: temporary file in the same directory, flush + fsync, `os.replace`, fsync of the directory, so
  a crash mid-write never leaves a file that looks like a checkpoint;
- read with `torch.load(weights_only=True)`: loading never runs code; a file with a pickled payload is refused;
- `load_latest()` walks from the newest file down and reports (warning naming the file and error) every unreadable
  one before falling back to the previous checkpoint.

The interface is deliberately narrow, `save(state, iteration)`, `load(path)`, `load_latest()`, `list_checkpoints()`,
so a sharded (DCP) or S3 variant only has to re-implement those. Turning a model/optimizers into a state dict and
back is done by `collect_state` / `restore_state`.
"""

from __future__ import annotations

import difflib
import os
import pickle
import re
from collections.abc import Mapping
from typing import Any

import torch
from loguru import logger

CHECKPOINT_PATTERN = re.compile(r"^(\d{7,})\.pth$")
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used (unreadable, truncated, unsafe, or not a fastgen checkpoint)."""


def checkpoint_path(save_dir: str, iteration: int) -> str:
    return os.path.join(save_dir, f"{int(iteration):07d}.pth")


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # e.g. platforms that cannot open directories; the rename is still atomic
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_torch_save(obj: Any, path: str) -> None:
    """torch.save to `path` so that readers see either the old file, nothing, or the complete new file."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp_path = os.path.join(directory, f".{os.path.basename(path)}.tmp{os.getpid()}")
    try:
        with open(tmp_path, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise
    _fsync_dir(directory)


def safe_torch_load(path: str) -> Any:
    """torch.load(weights_only=True) with clear errors: missing file, unsafe pickle, truncated/corrupt file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"refusing to load {path}: it contains objects other than tensors and plain containers, and loading it "
            f"could run arbitrary code (torch.load weights_only=True rejected it: {str(error).splitlines()[0]})"
        ) from error
    except Exception as error:  # truncated zip, bad magic number, EOF ...
        raise CheckpointError(f"cannot read {path} (truncated or corrupt?): {type(error).__name__}: {error}") from error


class Checkpointer:
    """Plain (single-file, rank-0-written) checkpoints in `save_dir`."""

    def __init__(self, save_dir: str, pretrained_ckpt_path: str = "", pretrained_ckpt_key_map: Mapping | None = None):
        self.save_dir = str(save_dir)
        self.pretrained_ckpt_path = pretrained_ckpt_path or ""
        self.pretrained_ckpt_key_map = dict(pretrained_ckpt_key_map or {"net": "net"})

    @classmethod
    def from_config(cls, checkpointer_config: Any, save_dir: str | None = None) -> Checkpointer:
        if getattr(checkpointer_config, "use_s3", False):
            raise ValueError(
                "trainer.checkpointer.use_s3=True is not supported by the plain Checkpointer yet; set it to false"
            )
        return cls(
            save_dir=save_dir or checkpointer_config.save_dir,
            pretrained_ckpt_path=checkpointer_config.pretrained_ckpt_path,
            pretrained_ckpt_key_map=checkpointer_config.pretrained_ckpt_key_map,
        )

    # --- storage ----------------------------------------------------------------------------------------------------
    def save(self, state: Mapping[str, Any], iteration: int) -> str:
        """Write `state` as `{save_dir}/{iteration:07d}.pth` atomically; returns the path. Call on rank 0 only."""
        path = checkpoint_path(self.save_dir, iteration)
        atomic_torch_save(dict(state), path)
        return path

    def list_checkpoints(self) -> list[tuple[int, str]]:
        """(iteration, path) of the complete checkpoint files, oldest first (temporary files are ignored)."""
        if not os.path.isdir(self.save_dir):
            return []
        found = []
        for name in os.listdir(self.save_dir):
            match = CHECKPOINT_PATTERN.match(name)
            if match:
                found.append((int(match.group(1)), os.path.join(self.save_dir, name)))
        return sorted(found)

    def load(self, path: str) -> dict[str, Any]:
        """The state stored in `path` (weights_only); raises CheckpointError / FileNotFoundError with the reason."""
        state = safe_torch_load(path)
        if not isinstance(state, dict) or "model" not in state or "iteration" not in state:
            keys = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise CheckpointError(f"{path} is not a fastgen checkpoint (expected keys 'model' and 'iteration', got {keys})")
        return state

    def load_latest(self) -> tuple[dict[str, Any], str] | None:
        """(state, path) of the newest readable checkpoint, or None when there is none.

        An unreadable newest file is reported and the previous one is tried, so a crash during a save (or a
        damaged file) costs at most one checkpoint interval.
        """
        for iteration, path in reversed(self.list_checkpoints()):
            try:
                return self.load(path), path
            except (CheckpointError, OSError) as error:
                logger.warning(f"checkpoint {path} (iteration {iteration}) is unusable and is skipped; "
                               f"falling back to the previous checkpoint. Reason: {error}")
        return None


# --- model <-> state ---------------------------------------------------------------------------------------------------
def collect_state(model: Any, callbacks: Any = None, iteration: int = 0, rng: list | None = None,
                  data: Mapping[str, int] | None = None, config_yaml: str | None = None, world_size: int = 1) -> dict:
    """Everything needed to continue training `model` (a FastGenModel) from `iteration`."""
    scaler = getattr(model, "grad_scaler", None)
    scaler_state = scaler.state_dict() if scaler is not None and scaler.is_enabled() else {}
    return {
        "format_version": FORMAT_VERSION,
        "iteration": int(iteration),
        "model": {name: module.state_dict() for name, module in model.model_dict.items()},
        "optimizer": {name: opt.state_dict() for name, opt in model.optimizer_dict.items()},
        "scheduler": {name: sch.state_dict() for name, sch in model.scheduler_dict.items()},
        "grad_scaler": scaler_state,
        "callbacks": callbacks.state_dict() if callbacks is not None else {},
        "rng": list(rng or []),
        "data": dict(data or {}),
        "config": config_yaml or "",
        "world_size": int(world_size),
    }


def load_module_state(module: torch.nn.Module, state_dict: Mapping[str, Any], name: str, strict: bool = True) -> None:
    """load_state_dict with an error (strict) or warning naming the network and the mismatching keys."""
    result = module.load_state_dict(state_dict, strict=False)
    problems = []
    if result.missing_keys:
        problems.append(f"missing keys {result.missing_keys[:8]}{' ...' if len(result.missing_keys) > 8 else ''}")
    if result.unexpected_keys:
        extra = result.unexpected_keys
        problems.append(f"unexpected keys {extra[:8]}{' ...' if len(extra) > 8 else ''}")
    if problems:
        message = f"loading weights into '{name}': {'; '.join(problems)}"
        if strict:
            raise CheckpointError(message + " (does the checkpoint come from a different network config?)")
        logger.warning(message)


def restore_state(model: Any, state: Mapping[str, Any], callbacks: Any = None, strict: bool = True) -> int:
    """Load networks, optimizers, schedulers, grad scaler and callbacks from `state`; returns its iteration."""
    saved_models = state.get("model") or {}
    for name, module in model.model_dict.items():
        if name not in saved_models:
            raise CheckpointError(f"checkpoint has no weights for '{name}' (it holds {sorted(saved_models)})")
        load_module_state(module, saved_models[name], name, strict=strict)
    for kind, current in (("optimizer", model.optimizer_dict), ("scheduler", model.scheduler_dict)):
        saved = state.get(kind) or {}
        for name, obj in current.items():
            if name not in saved:
                raise CheckpointError(f"checkpoint has no {kind} state for '{name}' (it holds {sorted(saved)})")
            obj.load_state_dict(saved[name])
    scaler = getattr(model, "grad_scaler", None)
    if scaler is not None and scaler.is_enabled() and state.get("grad_scaler"):
        scaler.load_state_dict(state["grad_scaler"])
    if callbacks is not None:
        callbacks.load_state_dict(state.get("callbacks") or {})
    return int(state["iteration"])


def load_pretrained_checkpoint(model: Any, path: str, key_map: Mapping[str, str], checkpointer: Checkpointer) -> int:
    """Load networks of an earlier stage's checkpoint: `model.<attr>` <- `ckpt["model"][key]` for each attr: key."""
    state = checkpointer.load(path)
    saved = state["model"]
    for attr, key in key_map.items():
        module = getattr(model, attr, None)
        if module is None:
            raise ValueError(f"pretrained_ckpt_key_map names model attribute '{attr}', which this model does not have")
        if key not in saved:
            raise CheckpointError(f"{path} has no network '{key}' (pretrained_ckpt_key_map {dict(key_map)}); "
                                  f"it holds {sorted(saved)}")
        load_module_state(module, saved[key], attr, strict=False)
        logger.info(f"loaded '{attr}' from '{key}' of {path} (iteration {state['iteration']})")
    return int(state["iteration"])


def config_drift(saved_yaml: str, current_yaml: str, max_lines: int = 20) -> list[str]:
    """Changed lines between the config a checkpoint was written with and the current one (unified diff)."""
    if not saved_yaml or not current_yaml or saved_yaml == current_yaml:
        return []
    diff = difflib.unified_diff(saved_yaml.splitlines(), current_yaml.splitlines(), "checkpoint", "current",
                                lineterm="", n=0)
    lines = [line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    return lines[:max_lines] + ([f"... ({len(lines) - max_lines} more)"] if len(lines) > max_lines else [])
