"""FSDP2 (`torch.distributed.fsdp.fully_shard`) for FastGenModel: per-block sharding of every trained network.

What `model_to_fsdp` does, for each network of `model.fsdp_dict` (student, fake score, discriminator, and the
frozen teacher unless `add_teacher_to_fsdp_dict=False`), EMA copies excepted:
1. shard per block through the network's own `fully_shard(mesh, mp_policy, offload_policy)` (a FastGenNetwork
   knows its blocks: `fsdp_units()`), or, for a module without that method, wrap each submodule holding at least
   `min_num_params` parameters of its own, then the module itself;
2. parameters in `precision`, gradients reduced in `precision_fsdp` (else `precision`): MixedPrecisionPolicy;
   `cpu_offload` keeps the sharded parameters, gradients and optimizer states in CPU memory (CPUOffloadPolicy);
3. a 1-D mesh over all ranks, or with `sharding_group_size=G` a 2-D ("replicate", "shard") mesh: shards within
   groups of G ranks and replicates across the W/G groups (HSDP; W must be divisible by G);
4. every rank ends with rank 0's weights (`set_model_state_dict(full_state_dict=True, broadcast_from_rank0=True)`
   for sharded networks, a broadcast for the rest), whether or not the other ranks built them on the meta device.

EMA copies are NOT sharded: each rank keeps a full copy, updated from full tensors (`DTensor.full_tensor()`, see
the EMA callback), so sampling from EMA needs no collective. FSDP2 hooks live on the sharded modules themselves, so
the trainer calls the plain model: no wrapper object is needed (`wrap` returns the model).

Meta-device init (`model.fsdp_meta_init`): build the model inside `meta_init_context(True)`; ranks other than 0
then allocate no memory and run no initialisers for their networks. `model_to_fsdp(..., meta_init=True)` shards the
meta modules, allocates only the local shards (`to_empty`), and fills them from rank 0.

Gradient accumulation: `fsdp_sync_grad(model, sync)` switches `set_requires_gradient_sync` (no reduce-scatter in
rounds that are not the last; the unsharded gradients accumulate locally instead).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.distributed as dist
from loguru import logger
from torch import nn

from fastgen.utils import distributed as dist_utils

MESH_DIM_NAMES = ("replicate", "shard")


def is_sharded(tensor: torch.Tensor) -> bool:
    """True for a DTensor (a parameter FSDP2 has sharded)."""
    return hasattr(tensor, "device_mesh") and hasattr(tensor, "full_tensor")


def build_device_mesh(sharding_group_size: int | None = None, device_type: str | None = None):
    """1-D mesh over all ranks, or 2-D (replicate, shard) with shard groups of `sharding_group_size` ranks."""
    from torch.distributed.device_mesh import init_device_mesh

    if not dist_utils.is_initialized():
        raise ValueError("trainer.fsdp=True needs a process group; launch with torchrun "
                         "(torchrun --nproc_per_node=N train.py ...)")
    device_type = device_type or ("cuda" if torch.cuda.is_available() else "cpu")
    world = dist_utils.world_size()
    if sharding_group_size is None or int(sharding_group_size) == world:
        return init_device_mesh(device_type, (world,))
    group = int(sharding_group_size)
    if group < 1 or world % group != 0:
        raise ValueError(f"trainer.fsdp_sharding_group_size={sharding_group_size} must divide the world size {world} "
                         f"(choose one of {[g for g in range(1, world + 1) if world % g == 0]})")
    return init_device_mesh(device_type, (world // group, group), mesh_dim_names=MESH_DIM_NAMES)


REDUCE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def reduce_dtype(precision_fsdp: torch.dtype | str | None) -> torch.dtype | None:
    """model.precision_fsdp ('float32' | 'bfloat16' | 'float16' | None) as a dtype."""
    if precision_fsdp is None or isinstance(precision_fsdp, torch.dtype):
        return precision_fsdp
    if precision_fsdp not in REDUCE_DTYPES:
        raise ValueError(f"model.precision_fsdp={precision_fsdp!r} is not supported; expected None or one of "
                         f"{', '.join(REDUCE_DTYPES)}")
    return REDUCE_DTYPES[precision_fsdp]


def fsdp_policies(precision: torch.dtype, precision_fsdp: torch.dtype | None = None, cpu_offload: bool = False):
    """(MixedPrecisionPolicy, offload policy or None): params in `precision`, reduce in `precision_fsdp`."""
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy

    mp_policy = MixedPrecisionPolicy(param_dtype=precision, reduce_dtype=precision_fsdp or precision,
                                     output_dtype=None, cast_forward_inputs=False)
    return mp_policy, (CPUOffloadPolicy() if cpu_offload else None)


def shard_by_size(module: nn.Module, min_num_params: int, **fsdp_kwargs: Any) -> nn.Module:
    """Fallback for modules without `fully_shard`: one FSDP unit per submodule holding >= min_num_params
    parameters of its own (children first), then the module itself (gathers whatever is left)."""
    from torch.distributed.fsdp import fully_shard

    for sub in reversed(list(module.modules())[1:]):
        own = sum(p.numel() for p in sub.parameters(recurse=False))
        if own >= min_num_params:
            fully_shard(sub, reshard_after_forward=True, **fsdp_kwargs)
    fully_shard(module, reshard_after_forward=True, **fsdp_kwargs)
    return module


def shard_network(module: nn.Module, mesh: Any, mp_policy: Any, offload_policy: Any, min_num_params: int) -> nn.Module:
    """Per-block sharding through the network's own `fully_shard` when it has one, else by size."""
    if callable(getattr(module, "fully_shard", None)):
        module.fully_shard(mesh=mesh, mp_policy=mp_policy, offload_policy=offload_policy)
        return module
    kwargs = {"mesh": mesh, "mp_policy": mp_policy}
    if offload_policy is not None:
        kwargs["offload_policy"] = offload_policy
    return shard_by_size(module, min_num_params, **kwargs)


def networks_to_shard(model: nn.Module) -> dict[str, nn.Module]:
    """`model.fsdp_dict` (else `model_dict`) without the EMA copies, which stay full on every rank."""
    source = getattr(model, "fsdp_dict", None)
    if source is None:
        source = getattr(model, "model_dict", None)
    if source is None:
        raise ValueError(f"{type(model).__name__} has neither fsdp_dict nor model_dict: nothing to shard")
    return {name: module for name, module in source.items() if not name.startswith("ema")}


def sharded_roots(model: nn.Module) -> list[nn.Module]:
    """The outermost FSDP2 modules inside `model` (the search stops at each one)."""
    from torch.distributed.fsdp import FSDPModule

    roots: list[nn.Module] = []

    def visit(module: nn.Module) -> None:
        if isinstance(module, FSDPModule):
            roots.append(module)
            return
        for child in module.children():
            visit(child)

    visit(model)
    return roots


def reshard_all(model: nn.Module) -> None:
    """Return every FSDP2 module to its sharded state. A root FSDP module keeps its parameters gathered after a
    forward without backward (e.g. a teacher or a student run under no_grad); state-dict and optimizer code that
    maps optimizer parameters to names needs the sharded parameters registered again."""
    from torch.distributed.fsdp import FSDPModule

    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


def _is_meta(tensor: torch.Tensor) -> bool:
    local = tensor.to_local() if is_sharded(tensor) else tensor
    return local.is_meta


def _materialize_plain_meta(model: nn.Module, device: torch.device) -> None:
    """Allocate (uninitialised) every non-sharded meta tensor on `device`, and re-create the plain attributes that
    were built under the meta device (noise schedules); values come from rank 0 afterwards."""
    for sub in model.modules():
        own = [*sub.parameters(recurse=False), *sub.buffers(recurse=False)]
        if any(t.is_meta and not is_sharded(t) for t in own):
            sub.to_empty(device=device, recurse=False)
    for sub in model.modules():
        if callable(getattr(sub, "set_noise_schedule", None)):
            sub.set_noise_schedule()


def broadcast_plain_tensors(model: nn.Module, src: int = 0) -> None:
    """Rank `src`'s values for every non-sharded parameter and buffer (EMA copies, unsharded nets, buffers)."""
    nccl = dist.get_backend() == "nccl"
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if is_sharded(tensor):
                continue
            if nccl and tensor.device.type != "cuda":
                staged = tensor.detach().cuda()
                dist.broadcast(staged, src=src)
                tensor.copy_(staged)
            else:
                dist.broadcast(tensor.data, src=src)


def model_to_fsdp(model: nn.Module, precision_fsdp: torch.dtype | str | None = None, cpu_offload: bool = False,
                  min_num_params: int = 10_000_000, sharding_group_size: int | None = None,
                  meta_init: bool = False) -> nn.Module:
    """Shard the networks of a FastGenModel in place with FSDP2 (see module docstring); returns `model`."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    precision = getattr(model, "precision", None) or next(model.parameters()).dtype
    precision_fsdp = reduce_dtype(precision_fsdp)
    device = torch.device(getattr(model, "device", None) or ("cuda" if torch.cuda.is_available() else "cpu"))
    mesh = build_device_mesh(sharding_group_size, device.type)
    if cpu_offload and device.type == "cpu":
        logger.info("trainer.fsdp_cpu_offload=True on a CPU run: parameters already live in CPU memory; ignored")
        cpu_offload = False
    mp_policy, offload_policy = fsdp_policies(precision, precision_fsdp, cpu_offload)
    shard_device = torch.device("cpu") if cpu_offload else device
    rank0 = dist_utils.is_rank0()
    if getattr(model, "precision_amp", None) is not None:
        logger.warning(f"FSDP2 with autocast ({model.precision_amp}): parameters are gathered in {precision} and cast "
                       "again by autocast; setting model.precision to the compute dtype is usually cheaper")
    networks = networks_to_shard(model)
    built_on_meta = any(_is_meta(t) for t in [*model.parameters(), *model.buffers()])
    if meta_init and rank0 and any(_is_meta(t) for m in networks.values() for t in m.parameters()):
        raise ValueError("fsdp_meta_init: rank 0 must build real weights (only the other ranks use the meta device); "
                         "build the model inside meta_init_context(True)")

    for name, module in networks.items():
        # rank 0's full weights, copied before sharding replaces the parameters (the source of every rank's shard)
        full_state = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()} if rank0 else {}
        on_meta = any(_is_meta(t) for t in module.parameters())
        if not on_meta:
            module.to(device=shard_device)
        shard_network(module, mesh, mp_policy, offload_policy, int(min_num_params))
        if on_meta:
            module.to_empty(device=shard_device)
        set_model_state_dict(module, full_state,
                             options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, strict=True))
        del full_state
        count = sum(t.numel() for t in module.parameters())
        logger.info(f"FSDP2: sharded '{name}' ({count / 1e6:.2f}M parameters) over mesh {tuple(mesh.shape)}"
                    f"{' from the meta device' if on_meta else ''}")

    if built_on_meta:
        _materialize_plain_meta(model, device)  # EMA copies / unsharded nets built on meta, noise schedules
    broadcast_plain_tensors(model)  # ... and everything unsharded gets rank 0's values (buffers included)
    return model


def fsdp_sync_grad(model: nn.Module, sync: bool):
    """Context for one accumulation round: reduce-scatter gradients only when `sync` (the last round)."""
    roots = sharded_roots(model)
    if not roots:
        return contextlib.nullcontext()
    return _gradient_sync(roots, bool(sync))


@contextlib.contextmanager
def _gradient_sync(roots: list[nn.Module], sync: bool):
    for root in roots:
        root.set_requires_gradient_sync(sync)
        root.set_is_last_backward(sync)
    try:
        yield
    finally:
        for root in roots:
            root.set_requires_gradient_sync(True)
            root.set_is_last_backward(True)


@contextlib.contextmanager
def meta_init_context(enabled: bool):
    """Build the model inside: with `enabled`, ranks other than 0 construct on the meta device (no memory, no
    initialisers); rank 0 builds real weights, which `model_to_fsdp(..., meta_init=True)` later broadcasts."""
    if enabled and dist_utils.is_initialized() and not dist_utils.is_rank0():
        with torch.device("meta"):
            yield
    else:
        yield
