"""torch.compile of a network, whole or block by block (`model.compile`, see fastgen/methods/README.md).

Whole network: `nn.Module.compile` (the module's `__call__` is compiled; no wrapper, so state_dict keys stay
unchanged). Per block: each block's `forward` -- the code between the block's own forward hooks -- is replaced by
its compiled version (an instance attribute, like activation checkpointing's; parameters, buffers and state_dict
keys untouched). Why per block under FSDP2: FSDP2's pre/post-forward hooks on every sharded block are marked
`torch._dynamo.disable` by torch, so a whole-network graph breaks at each block, and a graph break inside the
network's loop over blocks makes TorchDynamo skip the network's own frame (it runs eagerly; only the blocks, reached
from that eager frame, get compiled, with their hooks breaking them again). Compiling each block's `forward` keeps
every hook outside the compiled code: one graph per block, no breaks, and blocks of the same type and shapes share
one compiled graph (parameters are graph inputs), so a 40-block transformer traces one block, not 40.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Iterable

import torch
from torch import nn

COMPILED_MARK = "_fastgen_compiled_forward"


def block_forward(block: nn.Module):
    """What `block(...)` runs between its hooks: an instance `forward` (e.g. activation checkpointing's) or the
    class's."""
    return vars(block).get("forward") or type(block).forward.__get__(block)


def _call(forward, *args, **kwargs):
    return forward(*args, **kwargs)


def _entry_function(index: int):
    """A fresh copy of `_call` with its own code object. TorchDynamo keeps its compiled graphs (and its
    `recompile_limit`, 8 by default) per code object: blocks that all ran the class's `forward` would share one cache,
    and a UNet's dozen differently shaped blocks would exhaust it and run eagerly from the ninth shape on. One entry
    code object per group of alike blocks gives each group its own cache."""
    name = f"compiled_block_group_{index}"
    code = _call.__code__.replace(co_name=name, co_qualname=name)
    return types.FunctionType(code, _call.__globals__, name)


def _group_key(block: nn.Module) -> tuple:
    """Blocks of one class with the same parameter and buffer shapes and dtypes (e.g. the blocks of a transformer)
    share a compiled graph; the key only groups caches, correctness rests on TorchDynamo's guards."""
    tensors = [*block.named_parameters(), *block.named_buffers()]
    return (type(block), tuple((name, tuple(t.shape), t.dtype) for name, t in tensors))


def compile_blocks(blocks: Iterable[nn.Module], **compile_kwargs) -> int:
    """Replace each block's forward by a compiled call of it (`torch.compile(..., **compile_kwargs)`); returns how
    many blocks were compiled. Alike blocks (`_group_key`) share one compiled function and its graphs.

    Apply activation checkpointing first: the compiled code then holds the checkpointed region (TorchDynamo traces
    non-reentrant `torch.utils.checkpoint`, and AOT autograd recomputes it inside the compiled backward), and
    `enable_activation_checkpointing` skips blocks whose forward is already replaced. Blocks compiled already are
    left as they are."""
    groups: dict[tuple, object] = {}
    count = 0
    for block in blocks:
        if getattr(vars(block).get("forward"), COMPILED_MARK, False):
            continue
        key = _group_key(block)
        if key not in groups:
            groups[key] = torch.compile(_entry_function(len(groups)), **compile_kwargs)
        compiled = functools.partial(groups[key], block_forward(block))
        setattr(compiled, COMPILED_MARK, True)
        block.forward = compiled
        count += 1
    return count


def compiled_blocks(module: nn.Module) -> int:
    """How many submodules of `module` run a forward compiled by `compile_blocks`."""
    return sum(bool(getattr(vars(sub).get("forward"), COMPILED_MARK, False)) for sub in module.modules())


def is_compiled(module: nn.Module) -> bool:
    """Whether the module was compiled, whole (`nn.Module.compile`) or block by block."""
    return module._compiled_call_impl is not None or compiled_blocks(module) > 0
