"""Start (once) the default process group from torchrun's environment, and choose this rank's device.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; `init_distributed()` reads them. The backend
follows the hardware: NCCL when CUDA is available (each process pinned to GPU LOCAL_RANK *before* the group starts,
so NCCL never puts two ranks on GPU 0), gloo on CPU. The collective timeout comes from NCCL_TIMEOUT (seconds,
default 600): a rank stuck in a collective fails with a clear error instead of hanging the job forever.
"""

from __future__ import annotations

import contextlib
import os
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from loguru import logger

BACKEND_TYPES = ("auto", "nccl", "gloo")
DEFAULT_TIMEOUT_S = 600


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer; got {value!r}") from None


def local_rank() -> int:
    """torchrun's LOCAL_RANK (0 when not launched by torchrun)."""
    return _env_int("LOCAL_RANK", 0)


def launched_distributed() -> bool:
    """True when the environment describes a multi-process launch (torchrun / a scheduler set WORLD_SIZE and RANK)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def resolve_backend(backend_type: str = "auto") -> str:
    """'auto' -> nccl with CUDA, else gloo."""
    if backend_type not in BACKEND_TYPES:
        raise ValueError(f"backend_type must be one of {BACKEND_TYPES}; got {backend_type!r}")
    if backend_type == "auto":
        return "nccl" if torch.cuda.is_available() else "gloo"
    if backend_type == "nccl" and not torch.cuda.is_available():
        raise ValueError("backend_type='nccl' needs CUDA GPUs; none are available here (use 'gloo' or 'auto')")
    return backend_type


def collective_timeout() -> timedelta:
    """Timeout of every collective, from NCCL_TIMEOUT in seconds (default 600)."""
    seconds = _env_int("NCCL_TIMEOUT", DEFAULT_TIMEOUT_S)
    if seconds <= 0:
        raise ValueError(f"NCCL_TIMEOUT must be a positive number of seconds; got {seconds}")
    return timedelta(seconds=seconds)


def device_for_rank() -> torch.device:
    """cuda:LOCAL_RANK when CUDA is available, else cpu."""
    if torch.cuda.is_available():
        index = local_rank()
        if index >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK={index} but only {torch.cuda.device_count()} CUDA devices are visible; "
                             "launch at most one process per GPU (torchrun --nproc_per_node)")
        return torch.device("cuda", index)
    return torch.device("cpu")


def init_distributed(backend_type: str = "auto") -> bool:
    """Initialise the default process group from the environment; idempotent.

    Returns True when a process group is (now) active. Without torchrun's variables (a plain `python train.py`)
    nothing is started and False is returned, so single-process code paths stay untouched.
    """
    if dist.is_initialized():
        return True
    if not launched_distributed():
        return False
    backend = resolve_backend(backend_type)
    device = device_for_rank()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    init_kwargs = {"backend": backend, "timeout": collective_timeout()}
    if device.type == "cuda":
        init_kwargs["device_id"] = device  # binds NCCL to this GPU up front (no lazy guess of the device)
    dist.init_process_group(**init_kwargs)
    logger.debug(f"process group up: rank {dist.get_rank()}/{dist.get_world_size()}, backend {backend}, "
                 f"device {device}, timeout {init_kwargs['timeout']}")
    return True


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it; another process could still take it before use)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def init_single_process_group(backend_type: str = "auto") -> None:
    """A one-rank process group on a free local port, so `trainer.fsdp=True` also runs under plain `python`
    (e.g. to continue a sharded checkpoint on one machine)."""
    if dist.is_initialized():
        return
    backend = resolve_backend(backend_type)
    if torch.cuda.is_available():
        torch.cuda.set_device(device_for_rank())
    dist.init_process_group(backend=backend, init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1,
                            timeout=collective_timeout())


# --- the trainer's hooks -------------------------------------------------------------------------------------------
def parallel_type(trainer_config: Any) -> str:
    """'none' | 'ddp' | 'fsdp' from trainer.ddp / trainer.fsdp (both true is an error)."""
    ddp, fsdp = bool(getattr(trainer_config, "ddp", False)), bool(getattr(trainer_config, "fsdp", False))
    if ddp and fsdp:
        raise ValueError("trainer.ddp=True and trainer.fsdp=True; choose one (FSDP2 already synchronises gradients)")
    return "fsdp" if fsdp else "ddp" if ddp else "none"


def wrap_for_training(model: Any, config: Any) -> Any:
    """What the trainer calls as `model_ddp(data, iteration)`: the model itself, its DDP wrapper, or (FSDP2) the
    model with its networks sharded in place. The model must already be on its device for DDP; for FSDP2 call
    this *before* `model.on_train_begin(is_fsdp=True)` (it places the sharded networks and materialises meta ones).
    """
    kind = parallel_type(config.trainer)
    if kind == "none":
        return model
    if not dist.is_initialized():
        init_distributed()
    if not dist.is_initialized():
        logger.warning(f"trainer.{kind}=True without torchrun: running as a single-rank process group "
                       "(launch with torchrun --nproc_per_node=N to use several processes)")
        init_single_process_group()
    model_cfg, trainer_cfg = config.model, config.trainer
    if kind == "ddp":
        from fastgen.utils.distributed.ddp import wrap_model_ddp

        return wrap_model_ddp(model, find_unused_parameters=getattr(model_cfg, "ddp_find_unused_parameters", True))
    from fastgen.utils.distributed.fsdp import model_to_fsdp

    return model_to_fsdp(
        model,
        precision_fsdp=getattr(model_cfg, "precision_fsdp", None),
        cpu_offload=bool(getattr(trainer_cfg, "fsdp_cpu_offload", False)),
        min_num_params=int(getattr(trainer_cfg, "fsdp_min_num_params", 10_000_000)),
        sharding_group_size=getattr(trainer_cfg, "fsdp_sharding_group_size", None),
        meta_init=bool(getattr(model_cfg, "fsdp_meta_init", False)),
    )


def gradient_sync(model_wrapped: Any, last_round: bool):
    """Context for one accumulation round: DDP `no_sync` / FSDP2 `set_requires_gradient_sync(False)` unless last."""
    from torch.nn.parallel import DistributedDataParallel

    if isinstance(model_wrapped, DistributedDataParallel):
        from fastgen.utils.distributed.ddp import ddp_sync_grad

        return ddp_sync_grad(model_wrapped, last_round)
    if model_wrapped is None or not dist.is_initialized():
        return contextlib.nullcontext()
    from fastgen.utils.distributed.fsdp import fsdp_sync_grad

    return fsdp_sync_grad(model_wrapped, last_round)


def make_checkpointer(config: Any, save_dir: str | None = None) -> Any:
    """Sharded DCP checkpoints for FSDP2 runs, single-file checkpoints otherwise."""
    if parallel_type(config.trainer) == "fsdp":
        from fastgen.utils.dcp_checkpointer import DCPCheckpointer

        return DCPCheckpointer.from_config(config.trainer.checkpointer, save_dir=save_dir)
    from fastgen.utils.checkpointer import Checkpointer

    return Checkpointer.from_config(config.trainer.checkpointer, save_dir=save_dir)


# --- local multi-process runs (tests, benchmarks) -------------------------------------------------------------------
def _spawn_entry(index: int, fn: Any, world_size: int, port: int, args: tuple, backend_type: str) -> None:
    os.environ.update({"RANK": str(index), "LOCAL_RANK": str(index), "WORLD_SIZE": str(world_size),
                       "LOCAL_WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    init_distributed(backend_type)
    try:
        fn(index, *args)
        dist.barrier()  # no rank tears its connections down while another is still talking to it
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def spawn_local(fn: Any, world_size: int, args: tuple = (), backend_type: str = "gloo") -> None:
    """Run `fn(rank, *args)` on `world_size` fresh local processes joined in a process group (what torchrun does
    for one node), on a free port; raises if any process fails. `fn` must be importable (module level)."""
    import torch.multiprocessing as mp

    mp.start_processes(_spawn_entry, args=(fn, world_size, free_port(), tuple(args), backend_type),
                       nprocs=world_size, join=True, start_method="spawn")
