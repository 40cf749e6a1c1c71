"""The training loop: one readable loop for single-process, DDP and FSDP2 runs.

    trainer = Trainer(config)       # callbacks, checkpointer, accumulation rounds
    trainer.run(model)              # model: a FastGenModel built from config.model

`run` prepares (pretrained weights, device placement, `wrap_model`, optimizers, resume, data loaders, RNG), then
iterates `iteration = start+1 .. max_iter`. One iteration = `grad_accum_rounds` micro-batches (forward under autocast,
backward of total_loss / rounds, gradients synchronised only in the last round via `sync_gradients`), then one
optimizer/scheduler step of the optimizers the model names for that iteration. Validation every `validation_iter`
(no optimizer step, RNG untouched), a console line every `logging_iter`, a checkpoint every `save_ckpt_iter` and at
`max_iter`. A checkpoint holds the RNG states and the data position, so a resumed run continues exactly where the
stopped one was (bit-identical on CPU).

Distributed training slots in at two hooks: `wrap_model` (returns the DDP/FSDP-wrapped model whose `__call__` runs
`single_train_step`) and `sync_gradients(last_round)` (a context that suppresses gradient all-reduce on all but the
last accumulation round).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from loguru import logger

from fastgen.callbacks.callback import CallbackDict
from fastgen.utils import distributed as dist_utils
from fastgen.utils import instantiate
from fastgen.utils.checkpointer import (
    Checkpointer,
    CheckpointError,
    checkpointer_from_config,
    collect_state,
    config_drift,
    load_pretrained_checkpoint,
    restore_state,
)
from fastgen.utils.rng import get_rng_state, preserved_rng_state, seed_everything, set_rng_state

DEFAULT_MAX_VAL_STEPS = 4


def resolve_grad_accum_rounds(batch_size_global: int | None, batch_size: int, world_size: int,
                              grad_accum_rounds: int = 1) -> int:
    """grad_accum_rounds = batch_size_global / (batch_size * world_size) when a global batch is given."""
    if batch_size_global is None:
        if int(grad_accum_rounds) < 1:
            raise ValueError(f"trainer.grad_accum_rounds must be >= 1; got {grad_accum_rounds}")
        return int(grad_accum_rounds)
    per_round = int(batch_size) * int(world_size)
    if batch_size_global < per_round or batch_size_global % per_round != 0:
        raise ValueError(
            f"trainer.batch_size_global={batch_size_global} must be a positive multiple of dataloader_train.batch_size"
            f" x world_size = {batch_size} x {world_size} = {per_round}"
        )
    return batch_size_global // per_round


def move_batch(data: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """Floating tensors -> (device, dtype); other tensors -> device; containers recursively; the rest unchanged."""
    if isinstance(data, torch.Tensor):
        if data.is_floating_point():
            return data.to(device=device, dtype=dtype, non_blocking=True)
        return data.to(device=device, non_blocking=True)
    if isinstance(data, Mapping):
        return {k: move_batch(v, device, dtype) for k, v in data.items()}
    if isinstance(data, (list, tuple)) and data and isinstance(data[0], torch.Tensor):
        return type(data)(move_batch(v, device, dtype) for v in data)
    return data


COMPILE_CACHE_ENV, OWN_COMPILE_CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR", "FASTGEN_COMPILE_CACHE_DIR"


def use_compile_cache_dir(run_dir: str, environ: Any) -> str:
    """Point inductor's on-disk caches (FX graphs, AOT autograd graphs, compiled C++/Triton) at `<run>/compile_cache`
    so that a resumed run (same folder, a new process) loads the compiled code instead of compiling again; returns
    the folder used. A TORCHINDUCTOR_CACHE_DIR chosen by the user (e.g. one shared by all of a user's runs) wins;
    one set by an earlier run in this process (marked by FASTGEN_COMPILE_CACHE_DIR) or by inductor itself (it writes
    its per-user default back into the environment on first use) is replaced. Inductor reads the variable at each
    cache access, so setting it before the first compiled call is enough."""
    current = environ.get(COMPILE_CACHE_ENV)
    ours = {environ.get(OWN_COMPILE_CACHE_ENV)}
    inductor_dirs = sys.modules.get("torch._inductor.runtime.cache_dir_utils")  # imported only once inductor ran
    if inductor_dirs is not None:
        ours.add(os.path.abspath(inductor_dirs.default_cache_dir()))
    if current and current not in ours:
        return current
    environ[COMPILE_CACHE_ENV] = environ[OWN_COMPILE_CACHE_ENV] = os.path.abspath(os.path.join(run_dir, "compile_cache"))
    return environ[COMPILE_CACHE_ENV]


def resolve_save_dir(save_dir: str, save_path: str) -> str:
    """checkpointer.save_dir relative to the run directory unless it is absolute or already inside it."""
    if os.path.isabs(save_dir) or os.path.normpath(save_dir).startswith(os.path.normpath(save_path) + os.sep):
        return save_dir
    return os.path.join(save_path, save_dir)


def _format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


BUDGET_CLOCKS = ("wall", "cpu")


def budget_clock(kind: str) -> float:
    """Seconds on the clock `trainer.max_minutes` is counted in. "wall": elapsed time. "cpu": this process's CPU time
    over the torch thread count, i.e. the wall time the same work takes on an idle machine; runs that share a busy
    machine (the Fashion-MNIST table beside other jobs) then still train for equal compute, not for equal luck. It
    counts the main process only (DataLoader worker processes are not charged) and busy-waiting torch threads are."""
    if kind == "wall":
        return time.perf_counter()
    if kind == "cpu":
        return time.process_time() / max(1, torch.get_num_threads())
    raise ValueError(f"trainer.max_minutes_clock={kind!r}: choose one of {list(BUDGET_CLOCKS)}")


class Trainer:
    """Runs a FastGenModel according to `config.trainer` (see module docstring)."""

    def __init__(self, config: Any):
        self.config = config
        trainer_cfg = config.trainer
        self.rank, self.world_size = dist_utils.get_rank(), dist_utils.world_size()
        self.save_path = config.log_config.save_path
        self.checkpointer = self.build_checkpointer()
        self.batch_size = int(config.dataloader_train.batch_size)
        self.grad_accum_rounds = resolve_grad_accum_rounds(
            trainer_cfg.batch_size_global, self.batch_size, self.world_size, trainer_cfg.grad_accum_rounds
        )
        self.max_iter = int(trainer_cfg.max_iter)
        self.callbacks = CallbackDict(trainer_cfg.callbacks, config=config, trainer=self)
        self.model: Any = None
        self.model_ddp: Any = None
        self.train_loader: Any = None
        self.val_loader: Any = None
        self.augment_pipe: Any = None
        self.iteration = 0
        self.callbacks.on_app_begin()

    # --- distributed hooks --------------------------------------------------------------------------------------
    def wrap_model(self, model: Any) -> Any:
        """The module whose `__call__(data, iteration)` runs the train step: DDP wraps the whole FastGenModel;
        FSDP2 shards its networks in place (fastgen.utils.distributed)."""
        trainer_cfg = self.config.trainer
        if trainer_cfg.ddp and trainer_cfg.fsdp:
            raise ValueError("trainer.ddp and trainer.fsdp are both true; choose one")
        if trainer_cfg.ddp:
            from fastgen.utils.distributed.ddp import wrap_model_ddp

            return wrap_model_ddp(model, find_unused_parameters=model.config.ddp_find_unused_parameters)
        if trainer_cfg.fsdp:
            from fastgen.utils.distributed.fsdp import model_to_fsdp

            return model_to_fsdp(
                model, precision_fsdp=model.config.precision_fsdp, cpu_offload=trainer_cfg.fsdp_cpu_offload,
                min_num_params=trainer_cfg.fsdp_min_num_params, sharding_group_size=trainer_cfg.fsdp_sharding_group_size,
                meta_init=model.config.fsdp_meta_init,
            )
        return model

    def sync_gradients(self, last_round: bool):
        """Context for one accumulation round's forward + backward: DDP / FSDP2 skip the gradient all-reduce
        (reduce-scatter) unless `last_round`."""
        if self.config.trainer.ddp:
            from fastgen.utils.distributed.ddp import ddp_sync_grad

            return ddp_sync_grad(self.model_ddp, last_round)
        if self.config.trainer.fsdp:
            from fastgen.utils.distributed.fsdp import fsdp_sync_grad

            return fsdp_sync_grad(self.model, last_round)
        return contextlib.nullcontext()

    # --- setup --------------------------------------------------------------------------------------------------
    def build_checkpointer(self) -> Checkpointer:
        """The checkpoint backend (fastgen.utils.checkpointer.checkpointer_from_config): single files, or under FSDP
        sharded DCP folders written and read by every rank; on S3 with `use_s3`."""
        checkpointer_cfg = self.config.trainer.checkpointer
        save_dir = resolve_save_dir(checkpointer_cfg.save_dir, self.save_path)
        return checkpointer_from_config(checkpointer_cfg, save_dir, sharded=self.config.trainer.fsdp)

    def config_yaml(self) -> str:
        """The resolved config as YAML with secrets redacted ('' if it cannot be serialised)."""
        try:
            import yaml

            from fastgen.configs.config_utils import public_config_dict

            return yaml.safe_dump(public_config_dict(self.config), sort_keys=True)
        except Exception as error:  # a config the serializer cannot handle must not stop training
            logger.warning(f"could not serialise the config for the checkpoint ({type(error).__name__}: {error})")
            return ""

    def load_checkpoint(self, model: Any) -> tuple[int, dict | None]:
        """Resume from the newest readable checkpoint when trainer.resume; returns (iteration, state or None)."""
        if not self.config.trainer.resume:
            return 0, None
        sharded = getattr(self.checkpointer, "all_ranks_save", False)  # DCP: collective, reads into the model
        found = self.checkpointer.load_latest(model) if sharded else self.checkpointer.load_latest()
        if found is None:
            present = self.checkpointer.list_checkpoints()
            if present:  # every one was unusable (each reported by load_latest): never restart silently over them
                raise CheckpointError(
                    f"none of the {len(present)} checkpoint(s) in {self.checkpointer.save_dir} can be loaded (the "
                    f"reason for each is logged above); move them away to start from iteration 0, or start a new "
                    f"run with log_config.name=NEW_NAME")
            logger.info(f"no checkpoint in {self.checkpointer.save_dir}: starting from iteration 0")
            return 0, None
        state, path = found
        iteration = (self.checkpointer.restore_state if sharded else restore_state)(model, state, self.callbacks)
        logger.info(f"resumed from {path} (iteration {iteration})")
        drift = config_drift(state.get("config", ""), self.config_yaml())
        if drift:
            logger.warning("the config differs from the one the checkpoint was written with:\n  " + "\n  ".join(drift))
        return iteration, state

    def build_loader(self, loader_cfg: Any, sampler_start_idx: int | dict | None) -> Any:
        """Instantiate a data-loader config starting at a global sample position (None: the config's own)."""
        if sampler_start_idx is None:
            overrides = {}
        else:
            overrides = {"sampler_start_idx": sampler_start_idx if isinstance(sampler_start_idx, dict)
                         else int(sampler_start_idx)}
        return instantiate(loader_cfg, **overrides)

    def train_data_position(self, state: dict | None, iter_start: int) -> int | dict | None:
        if state is None:
            return None
        saved = (state.get("data") or {}).get("train")
        if saved is not None:  # an int position, or a loader's own state dict (WebDataset readers)
            return saved if isinstance(saved, dict) else int(saved)
        fallback = iter_start * self.batch_size * self.grad_accum_rounds * self.world_size
        logger.warning(f"checkpoint has no data position; assuming {fallback} samples were consumed")
        return fallback

    def restore_rng(self, state: dict | None, iter_start: int) -> None:
        """RNG states from the checkpoint (this rank's); fresh runs and other world sizes seed from (seed, rank, it)."""
        saved = (state or {}).get("rng") or []
        if state is not None and len(saved) == self.world_size:
            set_rng_state(saved[self.rank])
            return
        if state is not None:
            logger.warning(f"checkpoint holds RNG states for {len(saved)} ranks, this run has {self.world_size}; "
                           "reseeding from (seed, rank, iteration): the run continues but not bit-identically")
        seed_everything(self.config.trainer.seed, self.rank, iter_start)

    def gather_rng_states(self) -> list:
        state = get_rng_state()
        if not dist_utils.is_initialized():
            return [state]
        gathered: list = [None] * self.world_size
        torch.distributed.all_gather_object(gathered, state)
        return gathered

    # --- loop ---------------------------------------------------------------------------------------------------
    def run(self, model: Any) -> Any:
        """Train `model` up to `max_iter`; returns it."""
        config, trainer_cfg, callbacks = self.config, self.config.trainer, self.callbacks
        self.model = model
        callbacks.on_model_init_start(model)
        ckpt_cfg = trainer_cfg.checkpointer
        if ckpt_cfg.pretrained_ckpt_path:
            model.resume_iter = load_pretrained_checkpoint(
                model, ckpt_cfg.pretrained_ckpt_path, ckpt_cfg.pretrained_ckpt_key_map, self.checkpointer
            )
        if getattr(config.model, "compile", None) is not None and config.model.compile.networks:
            cache_dir = use_compile_cache_dir(self.save_path, os.environ)
            logger.info(f"torch.compile cache: {cache_dir}")
        if trainer_cfg.fsdp:  # FSDP2 places (and, with meta init, materialises) the networks itself, first
            self.model_ddp = self.wrap_model(model)
            model.on_train_begin(is_fsdp=True)
        else:  # DDP wraps a model that is already on its device
            model.on_train_begin(is_fsdp=False)
            self.model_ddp = self.wrap_model(model)
        callbacks.on_model_init_end(model)

        callbacks.on_optimizer_init_start(model)
        model.init_optimizers()
        callbacks.on_optimizer_init_end(model)

        callbacks.on_load_checkpoint_start(model)
        iter_start, state = self.load_checkpoint(model)
        self.iteration = iter_start
        callbacks.on_load_checkpoint_end(model, iteration=iter_start)

        callbacks.on_dataloader_init_start()
        self.train_loader = self.build_loader(config.dataloader_train, self.train_data_position(state, iter_start))
        if config.dataloader_val is not None:
            self.val_loader = self.build_loader(config.dataloader_val, None)
        if trainer_cfg.augment_pipe is not None:
            self.augment_pipe = instantiate(trainer_cfg.augment_pipe)
        callbacks.on_dataloader_init_end()
        logger.info(f"training iterations {iter_start + 1}..{self.max_iter}: batch {self.batch_size} x "
                    f"{self.grad_accum_rounds} accumulation rounds x {self.world_size} ranks = global batch "
                    f"{self.batch_size * self.grad_accum_rounds * self.world_size}")

        callbacks.on_train_begin(model, iteration=iter_start)
        if iter_start == 0 and self.val_loader is not None:
            self.validate(model, 0)
        self.restore_rng(state, iter_start)  # last thing before the loop: nothing above may shift the streams
        del state

        data_iter = iter(self.train_loader)
        meter = _LossMeter()
        last_log = (time.perf_counter(), iter_start)
        loop_start = budget_clock(trainer_cfg.max_minutes_clock)
        for iteration in range(iter_start + 1, self.max_iter + 1):
            self.iteration = iteration
            loss_map, outputs, data = self.train_step(model, data_iter, iteration)
            callbacks.on_training_step_end(model, data=data, outputs=outputs, loss_map=loss_map, iteration=iteration)
            meter.add(loss_map)
            last = iteration == self.max_iter or self.out_of_time(loop_start)
            if iteration % trainer_cfg.logging_iter == 0 or last:
                last_log = self.log_progress(meter, iteration, last_log)
            if self.val_loader is not None and iteration % trainer_cfg.validation_iter == 0:
                self.validate(model, iteration)
            if iteration % trainer_cfg.save_ckpt_iter == 0 or last:
                self.save_checkpoint(model, iteration)
            if last and iteration < self.max_iter:
                logger.info(f"trainer.max_minutes={self.config.trainer.max_minutes} reached after iteration "
                            f"{iteration}: stopping")
                break
        if iter_start >= self.max_iter:
            logger.info(f"checkpoint iteration {iter_start} >= trainer.max_iter={self.max_iter}: nothing to train")
        callbacks.on_train_end(model, iteration=self.iteration)
        callbacks.on_app_end()
        return model

    def out_of_time(self, loop_start: float) -> bool:
        """Whether `trainer.max_minutes` of training-loop time have passed (rank 0's clock decides for every rank, so
        all ranks stop after the same iteration)."""
        budget = self.config.trainer.max_minutes
        if budget is None:
            return False
        done = [budget_clock(self.config.trainer.max_minutes_clock) - loop_start >= 60.0 * float(budget)]
        if dist_utils.is_initialized() and self.world_size > 1:
            torch.distributed.broadcast_object_list(done, src=0)
        return bool(done[0])

    def preprocess(self, data: Mapping[str, Any], model: Any) -> dict:
        data = move_batch(data, model.device, model.precision)
        if self.augment_pipe is not None:
            data = self.augment_pipe(data)
        if callable(getattr(model, "encode_batch", None)):  # raw images / prompts -> latents / embeddings
            data = model.encode_batch(data)
        return data

    def train_step(self, model: Any, data_iter: Iterator, iteration: int) -> tuple[dict, dict, dict]:
        """One optimizer step over `grad_accum_rounds` micro-batches; returns (mean loss_map, outputs, last data)."""
        callbacks, rounds = self.callbacks, self.grad_accum_rounds
        callbacks.on_training_step_begin(model, iteration=iteration)
        summed: dict[str, torch.Tensor] = {}
        for accum_round in range(rounds):
            data = self.preprocess(next(data_iter), model)
            callbacks.on_training_accum_step_begin(model, data=data, iteration=iteration, accum_round=accum_round)
            with self.sync_gradients(last_round=accum_round == rounds - 1):
                with model.autocast():
                    loss_map, outputs = self.model_ddp(data, iteration)
                callbacks.on_backward_begin(model, loss_map=loss_map, iteration=iteration)
                total = loss_map["total_loss"]
                model.grad_scaler.scale(total / rounds if rounds > 1 else total).backward()
            for key, value in loss_map.items():
                if isinstance(value, torch.Tensor) and value.numel() == 1:
                    value = value.detach()
                    summed[key] = summed[key] + value if key in summed else value
        callbacks.on_optimizer_step_begin(model, iteration=iteration)
        model.optimizers_schedulers_step(iteration)
        model.optimizers_zero_grad(iteration)
        mean_loss_map = {k: v / rounds for k, v in summed.items()} if rounds > 1 else summed
        return mean_loss_map, outputs, data

    def log_progress(self, meter: _LossMeter, iteration: int, last_log: tuple[float, int]) -> tuple[float, int]:
        now = time.perf_counter()
        rate = (iteration - last_log[1]) / max(now - last_log[0], 1e-9)
        losses = meter.pop()
        text = " ".join(f"{k}={v:.5g}" for k, v in losses.items())
        eta = _format_duration((self.max_iter - iteration) / rate if rate > 0 else float("inf"))
        logger.info(f"iter {iteration}/{self.max_iter} | {text} | {rate:.2f} it/s | ETA {eta}")
        return now, iteration

    # --- validation ---------------------------------------------------------------------------------------------
    def validate(self, model: Any, iteration: int) -> list[dict[str, float]]:
        """One validation pass per entry of `trainer.global_vars_val` (default [None]: one plain pass); each entry
        temporarily updates `trainer.global_vars` (e.g. {MAX_VAL_STEPS: 8}). Returns each pass's mean losses."""
        trainer_cfg = self.config.trainer
        base = dict(trainer_cfg.global_vars or {})
        return [self.validation_pass(model, iteration, {**base, **dict(entry or {})}, index)
                for index, entry in enumerate(trainer_cfg.global_vars_val or [None])]

    def validation_pass(self, model: Any, iteration: int, global_vars: Mapping[str, Any], index: int = 0
                        ) -> dict[str, float]:
        """Mean validation losses over `MAX_VAL_STEPS` batches, under no_grad, without an optimizer step, from the
        start of the validation stream with a fixed seed, leaving all RNG streams as they were (so the training
        trajectory does not depend on validation_iter)."""
        trainer_cfg, callbacks = self.config.trainer, self.callbacks
        max_steps = int(global_vars.get("MAX_VAL_STEPS", DEFAULT_MAX_VAL_STEPS))
        val_seed = trainer_cfg.val_seed if trainer_cfg.val_seed is not None else trainer_cfg.seed
        meter = _LossMeter()
        with preserved_rng_state(), torch.no_grad():
            seed_everything(val_seed, self.rank, 0)
            if hasattr(self.val_loader, "load_state_dict") and hasattr(self.val_loader, "state_dict"):
                self.val_loader.load_state_dict({**self.val_loader.state_dict(), "position": 0})
            callbacks.on_validation_begin(model, iteration=iteration)
            val_iter = iter(self.val_loader)
            for _ in range(max_steps):
                data = self.preprocess(next(val_iter), model)
                callbacks.on_validation_step_begin(model, data=data, iteration=iteration)
                with model.autocast():
                    loss_map, outputs = model.single_train_step(data, iteration)
                meter.add(loss_map)
                callbacks.on_validation_step_end(model, data=data, outputs=outputs, loss_map=loss_map,
                                                 iteration=iteration)
            callbacks.on_validation_end(model, iteration=iteration)
        losses = meter.pop()
        label = "validation" if index == 0 else f"validation {index} ({dict(global_vars)})"
        logger.info(f"{label} at iter {iteration}: " + " ".join(f"{k}={v:.5g}" for k, v in losses.items()))
        return losses

    # --- checkpoints --------------------------------------------------------------------------------------------
    def save_checkpoint(self, model: Any, iteration: int) -> None:
        self.callbacks.on_save_checkpoint_start(model, iteration=iteration)
        sharded = getattr(self.checkpointer, "all_ranks_save", False)  # DCP: every rank writes its shards
        state = (self.checkpointer.collect_state if sharded else collect_state)(
            model, self.callbacks, iteration, rng=self.gather_rng_states(),
            data={"train": self.train_loader.position} if hasattr(self.train_loader, "position") else {},
            config_yaml=self.config_yaml(), world_size=self.world_size,
        )
        if sharded or dist_utils.is_rank0():
            path = self.checkpointer.save(state, iteration)
            logger.info(f"saved checkpoint {path}")
        dist_utils.barrier()
        self.callbacks.on_save_checkpoint_success(model, iteration=iteration)
        self.callbacks.on_save_checkpoint_end(model, iteration=iteration)


class _LossMeter:
    """Running sums of scalar losses between two log lines (kept as tensors: no device sync per step).

    Each key is averaged over the iterations that reported it: methods that alternate updates (DMD2's generator
    and critic steps) report different keys on different iterations. Keys come out sorted, total_loss first.
    """

    def __init__(self) -> None:
        self.sums: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def add(self, loss_map: Mapping[str, Any]) -> None:
        for key, value in loss_map.items():
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                value = value.detach().float()
            elif not isinstance(value, (int, float)):
                continue
            self.sums[key] = self.sums[key] + value if key in self.sums else value
            self.counts[key] = self.counts.get(key, 0) + 1

    def pop(self) -> dict[str, float]:
        order = sorted(self.sums, key=lambda k: (k != "total_loss", k))
        means = {k: float(self.sums[k]) / self.counts[k] for k in order}
        self.sums, self.counts = {}, {}
        return means
