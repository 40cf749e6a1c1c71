"""Jacobian-vector products of a network, and RNG replay so that several passes share one dropout mask.

Continuous-time consistency models (sCM) and MeanFlow need the total time derivative of the network output along
the probability-flow trajectory, d/dt F(x_t, t) = dF/dx . dx/dt + dF/dt: a forward-mode JVP. Two ways:
  * "autograd": `torch.func.jvp` (exact, one forward pass carrying tangents; needs forward-AD support in every op);
  * "finite_diff": central differences (F(p + h v) - F(p - h v)) / 2h, O(h^2) accurate, works for any network
    (e.g. fused attention kernels without forward AD), at the cost of two more forward passes.
The JVP output is only ever used inside a stop-gradient target, so it is computed without building a graph.

Dropout: the target pass (F^-, JVP) and the trained pass (F_theta) must see the same dropout mask, otherwise the
difference F_theta - F^- is dominated by dropout noise. `capture_rng` / `replay_rng` re-run a pass with the RNG
stream it would have seen, and leave the global RNG where it was.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

JVP_TYPES = ("autograd", "finite_diff")


def capture_rng(device: torch.device | str | None = None) -> dict:
    """The current CPU (and CUDA, when `device` is a CUDA device) RNG states."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
        state["cuda_device"] = device
    return state


@contextlib.contextmanager
def replay_rng(state: dict):
    """Run the block with the RNG in `state`; afterwards the global RNG is exactly as before the block."""
    devices = [state["cuda_device"]] if "cuda" in state else []
    with torch.random.fork_rng(devices=devices):
        torch.set_rng_state(state["cpu"])
        if "cuda" in state:
            torch.cuda.set_rng_state(state["cuda"], state["cuda_device"])
        yield


def _scale_like(h: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor | float:
    """A step size (scalar or per-sample [B]) broadcast over x's trailing dims, in x's dtype."""
    if not isinstance(h, torch.Tensor) or h.ndim == 0:
        return h
    return h.to(device=x.device, dtype=x.dtype).reshape(h.shape[0], *([1] * (x.ndim - 1)))


def jvp(
    fn: Callable[..., torch.Tensor],
    primals: Sequence[torch.Tensor],
    tangents: Sequence[torch.Tensor],
    jvp_type: str = "autograd",
    finite_diff_eps: torch.Tensor | float = 1e-3,
    rng_state: dict | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(fn(*primals), J_fn(primals) . tangents), both detached.

    finite_diff_eps: the central-difference step h (a float, or a per-sample [B] tensor for functions that act on
    each sample independently). rng_state: replayed for every evaluation, so stochastic layers (dropout) use the
    same mask in the primal and in both perturbed passes (the finite difference of a random function is noise).
    """
    if jvp_type not in JVP_TYPES:
        raise ValueError(f"jvp_type={jvp_type!r} is not supported; expected one of {JVP_TYPES}")
    primals, tangents = tuple(primals), tuple(tangents)
    if len(primals) != len(tangents):
        raise ValueError(f"jvp needs one tangent per primal; got {len(primals)} primals and {len(tangents)} tangents")
    tangents = tuple(v.to(dtype=p.dtype, device=p.device) for p, v in zip(primals, tangents))
    replay = (lambda: replay_rng(rng_state)) if rng_state is not None else contextlib.nullcontext

    with torch.no_grad():
        if jvp_type == "autograd":
            # compiled networks run eagerly here: TorchDynamo does not trace forward-mode AD transforms; attention
            # through scaled_dot_product_attention takes the math kernel, the one with a forward-AD formula (the
            # fused flash / memory-efficient kernels have none: diffusers' transformers would fail here)
            with replay(), torch.compiler.set_stance("force_eager"), sdpa_kernel(SDPBackend.MATH):
                out, tangent_out = torch.func.jvp(fn, primals, tangents)
            return out.detach(), tangent_out.detach()
        # central difference: d/dh fn(p + h v) at h = 0 ~ (fn(p + h v) - fn(p - h v)) / (2 h)
        h = finite_diff_eps
        plus = tuple(p + _scale_like(h, p) * v for p, v in zip(primals, tangents))
        minus = tuple(p - _scale_like(h, p) * v for p, v in zip(primals, tangents))
        with replay():
            out = fn(*primals)
        with replay():
            out_plus = fn(*plus)
        with replay():
            out_minus = fn(*minus)
        diff = out_plus.to(torch.float64) - out_minus.to(torch.float64)
        tangent_out = diff / (2 * _scale_like(torch.as_tensor(h, dtype=torch.float64), diff))
        return out.detach(), tangent_out.to(out.dtype)
