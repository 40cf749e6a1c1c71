"""Process-group helpers that also work in a plain single process (torch.distributed not initialised).

Everything here answers "as if rank 0 of 1" when no process group exists, so the trainer, checkpointer and callbacks
call them unconditionally. The DDP / FSDP2 wrappers live in sibling modules (ddp.py, fsdp.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Number of processes in the default group (1 without a process group)."""
    return dist.get_world_size() if is_initialized() else 1


def get_rank() -> int:
    """This process's rank in the default group (0 without a process group)."""
    return dist.get_rank() if is_initialized() else 0


def is_rank0() -> bool:
    return get_rank() == 0


def barrier() -> None:
    """Wait for all ranks; a no-op without a process group."""
    if is_initialized():
        dist.barrier()


synchronize = barrier


def rank0_only(fn: Callable) -> Callable:
    """Decorator: run `fn` on rank 0 only (returns None elsewhere)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any):
        return fn(*args, **kwargs) if is_rank0() else None

    return wrapper


def _reduce_bool(value: bool, op) -> bool:
    if not is_initialized():
        return bool(value)
    flag = torch.tensor([int(bool(value))], dtype=torch.int32)
    if dist.get_backend() == "nccl":
        flag = flag.cuda()
    dist.all_reduce(flag, op=op)
    return bool(flag.item())


def sync_all(value: bool) -> bool:
    """True when `value` is true on every rank."""
    return _reduce_bool(value, dist.ReduceOp.MIN)


def sync_any(value: bool) -> bool:
    """True when `value` is true on at least one rank."""
    return _reduce_bool(value, dist.ReduceOp.MAX)


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """`obj` from rank `src` on every rank (returned unchanged without a process group)."""
    if not is_initialized():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def clean_up() -> None:
    """Destroy the default process group if one exists."""
    if is_initialized():
        dist.destroy_process_group()


__all__ = [
    "barrier",
    "broadcast_object",
    "clean_up",
    "get_rank",
    "is_initialized",
    "is_rank0",
    "rank0_only",
    "synchronize",
    "sync_all",
    "sync_any",
    "world_size",
]
