"""Shared utilities. `from fastgen.utils import LazyCall as L, instantiate`."""

from fastgen.utils.lazy import InstantiationError, LazyCall, instantiate, locate

__all__ = ["InstantiationError", "LazyCall", "instantiate", "locate"]
