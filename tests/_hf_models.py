"""Shared helpers for the diffusers-backed network tests: tiny seeded networks and bare-model hook capture."""

import torch

from fastgen.networks.hf import network_class


def tiny_net(family: str, seed: int = 0, **kwargs):
    """A tiny random network of `family` with its encoders (built from fastgen/networks/hf/tiny.py)."""
    cls = network_class(family)
    torch.manual_seed(seed)
    kwargs = {"enable_preprocessors": True, **cls.smoke_overrides({}), **kwargs}
    return cls(model_id=f"tiny/{family}", **kwargs).eval()


def capture(modules, fn, pick):
    """Run fn() with forward hooks on `modules`; returns (fn's result, [pick(output) per module])."""
    outs = [None] * len(modules)
    handles = [m.register_forward_hook(lambda mod, a, o, i=i: outs.__setitem__(i, pick(o)))
               for i, m in enumerate(modules)]
    try:
        result = fn()
    finally:
        for h in handles:
            h.remove()
    return result, outs
