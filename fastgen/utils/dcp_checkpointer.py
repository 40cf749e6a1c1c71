"""Sharded checkpoints through torch.distributed.checkpoint (DCP), for FSDP2 runs (any world size on load).

Layout: one folder per checkpoint, `{save_dir}/{iteration:07d}/`:
    .metadata, __{rank}_{i}.distcp   DCP: {"model": {name: model state}, "optimizer": {name: optimizer state}}
    extras.pth                       rank 0, torch.save: schedulers, grad scaler, callbacks, iteration, per-rank RNG
                                     states, data-loader position, resolved config, world size (weights_only-safe)
Model and optimizer states come from `get_model_state_dict` / `get_optimizer_state_dict`, whose optimizer state is
keyed by parameter name and *initialised before loading*: a freshly built AdamW has no moments yet, and loading
into `optimizer.state_dict()` would silently drop exp_avg / exp_avg_sq (anchors §5a). Each rank writes only its
shards; DCP reshards on load, so a checkpoint written by W ranks loads on any other number of ranks, or in a plain
single process (`load(path, model)` without a process group), or as full tensors (`consolidate(folder)`).

Atomic: everything is written to `{iteration:07d}.tmp/`; once DCP has written `.metadata` (which it does after all
shards) and rank 0 its `extras.pth`, the folder is renamed to `{iteration:07d}/`. Only folders with both files
count; `load_latest` reports an unreadable newest folder and falls back to the previous one.

Interface of the single-file Checkpointer: `save(state, iteration)`, `load(path)`, `load_latest()`,
`list_checkpoints()`, plus `collect_state(model, ...)` / `restore_state(model, state, ...)` that build and apply
the DCP form of the state; unlike the single-file variant, `save` and `load` must run on *every* rank
(`all_ranks_save = True`).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any

import torch
from loguru import logger

from fastgen.utils import distributed as dist_utils
from fastgen.utils.checkpointer import (
    FORMAT_VERSION,
    CheckpointError,
    _fsync_dir,
    atomic_torch_save,
    check_keep_last,
    has_entry,
    prunable,
    safe_torch_load,
)

FOLDER_PATTERN = re.compile(r"^(\d{7,})$")
EXTRAS_FILE = "extras.pth"
METADATA_FILE = ".metadata"
TENSOR_KEYS = ("model", "optimizer")


def checkpoint_folder(save_dir: str, iteration: int) -> str:
    return os.path.join(save_dir, f"{int(iteration):07d}")


def is_complete(folder: str) -> bool:
    """A folder counts as a checkpoint only when DCP's .metadata and rank 0's extras are both there."""
    return os.path.isfile(os.path.join(folder, METADATA_FILE)) and os.path.isfile(os.path.join(folder, EXTRAS_FILE))


def _optimizer_root(model: Any) -> torch.nn.Module:
    """The module whose parameter names key the optimizer states: the FastGenModel itself ('net.blocks.0.weight')."""
    while not hasattr(model, "model_dict") and isinstance(getattr(model, "module", None), torch.nn.Module):
        model = model.module  # a DDP-style wrapper
    return model


def model_tensor_state(model: Any, for_save: bool = False) -> dict[str, dict]:
    """{"model": {name: get_model_state_dict}, "optimizer": {name: get_optimizer_state_dict}} of a FastGenModel.

    Sharded networks give DTensors (each rank its shards), plain ones full tensors. `get_optimizer_state_dict`
    initialises the state of an optimizer that has not stepped yet (so there is something to load into); when
    saving, that initialisation is undone, so writing a checkpoint never changes the run (Adam's step count).
    """
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    from fastgen.utils.distributed.fsdp import reshard_all

    root = _optimizer_root(model)
    reshard_all(root)
    optimizers = {}
    for name, optimizer in root.optimizer_dict.items():
        never_stepped = not optimizer.state
        optimizers[name] = get_optimizer_state_dict(root, optimizer)
        if for_save and never_stepped:
            optimizer.state.clear()
            optimizers[name]["state"] = {}
    return {"model": {name: get_model_state_dict(module) for name, module in root.model_dict.items()},
            "optimizer": optimizers}


def _prune_to_saved(targets: dict, folder: str) -> dict:
    """Drop optimizer-state entries the checkpoint does not hold (parameters that never received a gradient, or
    optimizers that had not stepped), so loading restores exactly the saved state instead of failing."""
    from torch.distributed.checkpoint import FileSystemReader

    saved = set(FileSystemReader(folder).read_metadata().state_dict_metadata)
    for name, optim_state in targets["optimizer"].items():
        per_param = optim_state.get("state", {})
        for fqn in list(per_param):
            per_param[fqn] = {k: v for k, v in per_param[fqn].items() if f"optimizer.{name}.state.{fqn}.{k}" in saved}
            if not per_param[fqn]:
                del per_param[fqn]
    return targets


def _clone_tensors(tree: Any) -> Any:
    if isinstance(tree, torch.Tensor):
        return tree.detach().clone()
    if isinstance(tree, Mapping):
        return {k: _clone_tensors(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_clone_tensors(v) for v in tree]
    return tree


def consolidate(folder: str) -> dict[str, Any]:
    """A DCP checkpoint folder as plain full tensors, in one process without a process group:
    {"model": {name: state_dict}, "optimizer": {name: {"state": {param_name: {...}}, "param_groups": [...]}}}
    plus the extras (iteration, schedulers, ...). `state["model"]["net"]` loads into a plain network with
    `load_state_dict`."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    if not is_complete(folder):
        raise CheckpointError(f"{folder} is not a complete DCP checkpoint (needs {METADATA_FILE} and {EXTRAS_FILE})")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "full.pth")
        dcp_to_torch_save(folder, path)
        tensors = safe_torch_load(path)
    state = dict(safe_torch_load(os.path.join(folder, EXTRAS_FILE)))
    for key in TENSOR_KEYS:
        state[key] = tensors.get(key, {})
    return state


class DCPCheckpointer:
    """Sharded checkpoints in `save_dir` (see module docstring). Every method but `list_checkpoints` is collective."""

    all_ranks_save = True

    def __init__(self, save_dir: str, pretrained_ckpt_path: str = "", pretrained_ckpt_key_map: Mapping | None = None,
                 keep_last: int = 0):
        self.save_dir = str(save_dir)
        self.pretrained_ckpt_path = pretrained_ckpt_path or ""
        self.pretrained_ckpt_key_map = dict(pretrained_ckpt_key_map or {"net": "net"})
        self.keep_last = check_keep_last(keep_last)

    @classmethod
    def from_config(cls, checkpointer_config: Any, save_dir: str | None = None) -> DCPCheckpointer:
        """Local folders, or with `use_s3` the S3 variant (fastgen/utils/s3_dcp_checkpointer.py)."""
        if getattr(checkpointer_config, "use_s3", False) and cls is DCPCheckpointer:
            from fastgen.utils.s3_dcp_checkpointer import S3DCPCheckpointer

            return S3DCPCheckpointer.from_config(checkpointer_config, save_dir=save_dir)
        return cls(
            save_dir=save_dir or checkpointer_config.save_dir,
            pretrained_ckpt_path=checkpointer_config.pretrained_ckpt_path,
            pretrained_ckpt_key_map=checkpointer_config.pretrained_ckpt_key_map,
            keep_last=getattr(checkpointer_config, "keep_last", 0),
        )

    # --- model <-> state ----------------------------------------------------------------------------------------
    def collect_state(self, model: Any, callbacks: Any = None, iteration: int = 0, rng: list | None = None,
                      data: Mapping[str, int] | None = None, config_yaml: str | None = None,
                      world_size: int = 1) -> dict:
        """The single-file checkpointer's state, with model / optimizer entries in DCP form (call on all ranks)."""
        root = _optimizer_root(model)
        scaler = getattr(root, "grad_scaler", None)
        state = {
            "format_version": FORMAT_VERSION,
            "iteration": int(iteration),
            "scheduler": {name: sch.state_dict() for name, sch in root.scheduler_dict.items()},
            "grad_scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else {},
            "callbacks": callbacks.state_dict() if callbacks is not None else {},
            "rng": list(rng or []),
            "data": dict(data or {}),
            "config": config_yaml or "",
            "world_size": int(world_size),
        }
        state.update(model_tensor_state(root, for_save=True))
        return state

    def restore_state(self, model: Any, state: Mapping[str, Any], callbacks: Any = None, strict: bool = True) -> int:
        """Load networks and optimizers (set_*_state_dict), schedulers, grad scaler, callbacks; returns iteration."""
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        root = _optimizer_root(model)
        full = bool(state.get("_full_tensors"))
        options = StateDictOptions(full_state_dict=full, strict=strict)
        # parameters that never received a gradient legitimately have no optimizer state
        optim_options = StateDictOptions(full_state_dict=full, strict=False)
        saved_models, saved_optims = state.get("model") or {}, state.get("optimizer") or {}
        for name, module in root.model_dict.items():
            if has_entry(saved_models, name, "weights", strict):
                set_model_state_dict(module, saved_models[name], options=options)
        for name, optimizer in root.optimizer_dict.items():
            if has_entry(saved_optims, name, "optimizer state", strict):
                set_optimizer_state_dict(root, optimizer, saved_optims[name], options=optim_options)
        saved_schedulers = state.get("scheduler") or {}
        for name, scheduler in root.scheduler_dict.items():
            if has_entry(saved_schedulers, name, "scheduler state", strict):
                scheduler.load_state_dict(saved_schedulers[name])
        scaler = getattr(root, "grad_scaler", None)
        if scaler is not None and scaler.is_enabled() and state.get("grad_scaler"):
            scaler.load_state_dict(state["grad_scaler"])
        if callbacks is not None:
            callbacks.load_state_dict(state.get("callbacks") or {})
        return int(state["iteration"])

    # --- storage ------------------------------------------------------------------------------------------------
    def save(self, state: Mapping[str, Any], iteration: int) -> str:
        """Write `state` (from `collect_state`) as `{save_dir}/{iteration:07d}/` atomically; call on every rank."""
        import torch.distributed.checkpoint as dcp

        final = checkpoint_folder(self.save_dir, iteration)
        tmp = final + ".tmp"
        if dist_utils.is_rank0():
            os.makedirs(self.save_dir, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)  # the leftover of a save that crashed
            os.makedirs(tmp)
        dist_utils.barrier()
        dcp.save({key: state[key] for key in TENSOR_KEYS}, checkpoint_id=tmp, no_dist=not dist_utils.is_initialized())
        error = None
        if dist_utils.is_rank0():
            try:
                atomic_torch_save({k: v for k, v in state.items() if k not in TENSOR_KEYS},
                                  os.path.join(tmp, EXTRAS_FILE))
                if not is_complete(tmp):
                    raise CheckpointError(f"DCP finished without writing {os.path.join(tmp, METADATA_FILE)}")
                if os.path.isdir(final):  # re-saving an iteration: the new folder replaces the old one
                    shutil.rmtree(final)
                os.replace(tmp, final)
                _fsync_dir(self.save_dir)
                if self.keep_last:
                    for _, old in prunable(self.list_checkpoints(), self.keep_last):
                        shutil.rmtree(old)
            except Exception as exc:  # report on every rank instead of leaving the others waiting
                error = f"{type(exc).__name__}: {exc}"
        error = dist_utils.broadcast_object(error)
        if error is not None:
            raise CheckpointError(f"saving checkpoint {final} failed: {error}")
        return final

    def list_checkpoints(self) -> list[tuple[int, str]]:
        """(iteration, folder) of the complete checkpoints, oldest first (`.tmp` and incomplete folders ignored)."""
        if not os.path.isdir(self.save_dir):
            return []
        found = []
        for name in os.listdir(self.save_dir):
            match = FOLDER_PATTERN.match(name)
            folder = os.path.join(self.save_dir, name)
            if match and os.path.isdir(folder):
                if is_complete(folder):
                    found.append((int(match.group(1)), folder))
                else:
                    logger.warning(f"ignoring incomplete checkpoint folder {folder} (no {METADATA_FILE} / {EXTRAS_FILE})")
        return sorted(found)

    def load(self, path: str, model: Any = None) -> dict[str, Any]:
        """The state in checkpoint folder `path`.

        With `model` (a FastGenModel, sharded or not; call on every rank): model / optimizer entries are read in
        place into that model's own state-dict layout, resharded to this world size; apply with `restore_state`.
        Without: full tensors (`consolidate`), loadable into plain modules; a single-file `.pth` checkpoint is read
        by the plain Checkpointer (so `pretrained_ckpt_path` may name either kind).
        """
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.api import CheckpointException

        if model is None and os.path.isfile(path):  # a single-file checkpoint (e.g. a pretrained stage)
            from fastgen.utils.checkpointer import Checkpointer

            return Checkpointer(os.path.dirname(path)).load(path)
        if not os.path.isdir(path):
            raise FileNotFoundError(f"checkpoint folder not found: {path}")
        if not is_complete(path):
            raise CheckpointError(f"{path} is not a complete checkpoint (needs {METADATA_FILE} and {EXTRAS_FILE})")
        if model is None:
            state = consolidate(path)
            state["_full_tensors"] = True
            return state
        state = dict(safe_torch_load(os.path.join(path, EXTRAS_FILE)))
        if "iteration" not in state:
            raise CheckpointError(f"{path}/{EXTRAS_FILE} is not a fastgen checkpoint (no 'iteration')")
        # read into copies: a shard that fails half-way must not leave the live weights half-overwritten
        targets = _clone_tensors(model_tensor_state(model))
        try:
            dcp.load(_prune_to_saved(targets, path), checkpoint_id=path, no_dist=not dist_utils.is_initialized())
        except (Exception, CheckpointException) as exc:  # a BaseException collecting every rank's error
            raise CheckpointError(f"cannot read sharded checkpoint {path}: {type(exc).__name__}: {exc}") from exc
        state.update(targets)
        return state

    def load_latest(self, model: Any = None) -> tuple[dict[str, Any], str] | None:
        """(state, folder) of the newest readable checkpoint, or None; an unreadable one is reported and skipped."""
        candidates = dist_utils.broadcast_object(self.list_checkpoints())  # every rank tries the same folders
        for iteration, folder in reversed(candidates):
            try:
                return self.load(folder, model), folder
            except (CheckpointError, OSError) as error:
                logger.warning(f"checkpoint {folder} (iteration {iteration}) is unusable and is skipped; "
                               f"falling back to the previous checkpoint. Reason: {error}")
        return None
