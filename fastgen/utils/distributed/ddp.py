"""DistributedDataParallel for FastGenModel: one DDP wrapper around the whole method, called like the model.

Why wrap the whole FastGenModel (and not each trainable network)?
- DDP installs its gradient hooks when *its own* `__call__` runs. A method's `single_train_step` calls several
  networks (student, fake score, discriminator, a frozen teacher) in one pass; wrapping the whole model and routing
  `single_train_step` through `DDP.__call__` (`FastGenModel.forward` calls `single_train_step`) makes every trainable
  parameter used in that pass take part in one gradient all-reduce, whichever network it belongs to.
- The networks keep their names: `model.net`, `model.model_dict`, checkpoints and callbacks see the plain modules
  (no `module.` prefixes), and validation / sampling call them directly without triggering DDP.
- Frozen parameters (teacher, EMA copies) have `requires_grad=False`, so DDP ignores them for gradients; DDP still
  broadcasts every parameter and buffer from rank 0 when it wraps, so all ranks start from rank 0's weights.
- Methods that update different networks at different iterations (DMD2's student / fake-score alternation) leave
  some parameters without gradients in a pass: that needs `find_unused_parameters=True` (the default of
  `model.ddp_find_unused_parameters`).

Gradient accumulation: `ddp_sync_grad(model_ddp, sync)` wraps forward *and* backward of one accumulation round;
with `sync=False` it is DDP's `no_sync()`, so gradients are all-reduced only once, in the last round.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from fastgen.utils import distributed as dist_utils


def trainable_parameters(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


def wrap_model_ddp(model: nn.Module, find_unused_parameters: bool = True, sync_buffers_every_forward: bool = False,
                   device: torch.device | None = None) -> DistributedDataParallel:
    """The FastGenModel in one DistributedDataParallel; `wrapped(data, iteration)` runs `single_train_step`.

    `model` must already be on its device (the trainer calls `model.on_train_begin()` first). Parameters and
    buffers are broadcast from rank 0 once, at wrap time; `sync_buffers_every_forward` is off by default: fastgen
    networks have no running statistics, and the buffers they do have (time-embedding frequencies, noise tables)
    stay identical on every rank after the initial broadcast.
    """
    if not dist_utils.is_initialized():
        raise ValueError("trainer.ddp=True needs a process group; launch with torchrun "
                         "(torchrun --nproc_per_node=N train.py ...), which sets RANK / WORLD_SIZE / MASTER_ADDR")
    if not trainable_parameters(model):
        raise ValueError(f"{type(model).__name__} has no trainable parameters: nothing for DDP to synchronise")
    device = device or getattr(model, "device", None) or next(model.parameters()).device
    device_ids = [device] if torch.device(device).type == "cuda" else None
    return DistributedDataParallel(
        model,
        device_ids=device_ids,
        find_unused_parameters=bool(find_unused_parameters),
        **buffer_sync_kwargs(model, bool(sync_buffers_every_forward)),
    )


def buffer_sync_kwargs(model: nn.Module, every_forward: bool, ddp_init: Any = DistributedDataParallel.__init__,
                       ) -> dict[str, bool]:
    """DDP's buffer-sync flag under the name this torch knows, keeping "broadcast once at wrap time, then per
    forward only if asked" on every release: newer torch has `forward_sync_buffers` (and deprecates
    `broadcast_buffers`); older ones (e.g. 2.11) only know `broadcast_buffers`, whose False also skips the
    wrap-time broadcast, so that one is done here."""
    if "forward_sync_buffers" in inspect.signature(ddp_init).parameters:
        return {"forward_sync_buffers": every_forward}
    if not every_forward:
        for buffer in model.buffers():
            torch.distributed.broadcast(buffer, src=0)
    return {"broadcast_buffers": every_forward}


def model_to_ddp(model: nn.Module, find_unused_parameters: bool = True) -> DistributedDataParallel:
    """Alias of `wrap_model_ddp` (the name the reference trainer uses)."""
    return wrap_model_ddp(model, find_unused_parameters=find_unused_parameters)


def ddp_sync_grad(model_ddp: Any, sync: bool):
    """Context for one accumulation round: `no_sync()` unless `sync` (a no-op for an unwrapped model)."""
    if sync or not isinstance(model_ddp, DistributedDataParallel):
        return contextlib.nullcontext()
    return model_ddp.no_sync()


def unwrap_ddp(model: Any) -> Any:
    """The module inside a DistributedDataParallel wrapper (else `model` itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model
