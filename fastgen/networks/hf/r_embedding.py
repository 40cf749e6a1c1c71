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
    """What the r embedder sees, in our schedule's time: r (default t) for "abs", t - r for "diff". Either may be
    per sample [B] or per latent frame [B, T] (the other is broadcast over the frames); a scalar r is shared."""
    r = t if r is None else torch.as_tensor(r, device=t.device).to(t.dtype)
    ndim = max(t.ndim, r.ndim)
    try:
        t, r = torch.broadcast_tensors(_trailing(t, ndim), r if r.ndim == 0 else _trailing(r, ndim))
    except RuntimeError:
        raise ValueError(f"r must be a scalar, [B] or [B, T] like t {tuple(t.shape)}; got {tuple(r.shape)}") from None
    return t - r if time_cond_type == "diff" else r


def _trailing(x: torch.Tensor, ndim: int) -> torch.Tensor:
    return x.reshape(*x.shape, *[1] * (ndim - x.ndim))


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
