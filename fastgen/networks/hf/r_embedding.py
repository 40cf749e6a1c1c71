"""MeanFlow's second time `r` for the diffusers-backed networks (HFNetwork(r_timestep=True)).

The denoiser's own time embedder (an MLP on sinusoidal features of the timestep) is copied into `r_embedder`, whose
output projection is then zeroed (`r_embedder_init="zero"`): its output is exactly 0 at initialisation, so the
network equals the pretrained teacher bit for bit until training moves it. During a forward, a hook on the
denoiser's time embedder adds r_embedder(features of r) to the time embedding, so everything downstream of it
(adaLN modulation of every block, the output norm) sees t and r. `time_cond_type` chooses what is embedded: r
itself ("abs") or the interval t - r ("diff"). r = None means r = t (the instantaneous velocity; DiT and EDM do the
same).

The copy is an ordinary submodule of the network: it is checkpointed, copied into EMA networks, sharded by FSDP2
with the network's root unit and trained with the rest.
"""

from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn

R_EMBEDDER_INITS = ("zero",)
TIME_COND_TYPES = ("abs", "diff")


def make_r_embedder(time_embedder: nn.Module, init: str = "zero") -> nn.Module:
    """A trainable copy of `time_embedder` whose last linear layer (its output projection) is zero."""
    if init not in R_EMBEDDER_INITS:
        raise ValueError(f"r_embedder_init={init!r} is not supported; expected one of {R_EMBEDDER_INITS}")
    r_embedder = copy.deepcopy(time_embedder).requires_grad_(True)
    linears = [m for m in r_embedder.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"cannot zero the output of {type(time_embedder).__name__}: it has no linear layer")
    nn.init.zeros_(linears[-1].weight)
    if linears[-1].bias is not None:
        nn.init.zeros_(linears[-1].bias)
    return r_embedder


def r_time(t: torch.Tensor, r: torch.Tensor | None, time_cond_type: str) -> torch.Tensor:
    """What the r embedder sees, in our schedule's time: r (default t) for "abs", t - r for "diff"."""
    r = t if r is None else torch.as_tensor(r, device=t.device).to(t.dtype)
    if r.ndim < t.ndim and r.shape == t.shape[:r.ndim]:  # a scalar, or r [B] with per-frame t [B, T]
        r = r.reshape(*r.shape, *[1] * (t.ndim - r.ndim)).expand(t.shape)
    if r.shape != t.shape:
        raise ValueError(f"r must have the shape of t {tuple(t.shape)} (or be a scalar); got {tuple(r.shape)}")
    return t - r if time_cond_type == "diff" else r


@contextlib.contextmanager
def add_r_embedding(time_embedder: nn.Module, r_embedder: nn.Module, r_features: torch.Tensor):
    """While active, `time_embedder`'s output gets r_embedder(r_features) added (features in the dtype the time
    embedder itself was fed)."""

    def hook(module, args, output):
        return output + r_embedder(r_features.to(args[0].dtype)).to(output.dtype)

    handle = time_embedder.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
