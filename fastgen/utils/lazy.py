"""Deferred construction: configs describe objects, `instantiate` builds them.

`LazyCall(target)(**kwargs)` returns an OmegaConf `DictConfig` holding the keyword arguments plus `_target_`.
Nothing is imported or built until `instantiate` is called, which keeps config files cheap to load and lets
command-line overrides edit any argument first. Importable targets are stored as dotted strings so a config
survives a YAML round trip unchanged.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig

TARGET_KEY = "_target_"


class InstantiationError(RuntimeError):
    """Raised when a `_target_` cannot be imported or refuses its arguments."""


def dotted_path(obj: Any) -> str | None:
    """The shortest importable `module.qualname` that resolves back to `obj`, or None if there is none."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        return None
    parts = module.split(".")
    for i in range(1, len(parts) + 1):  # prefer a shorter public path (e.g. fastgen.methods.X)
        candidate = ".".join(parts[:i]) + "." + qualname
        try:
            if locate(candidate) is obj:
                return candidate
        except InstantiationError:
            continue
    return None


def locate(path: str) -> Any:
    """Import `a.b.C` (or `a.b.C.method`): the longest importable module prefix, then attributes."""
    parts = path.split(".")
    last_error: BaseException | None = None
    for i in range(len(parts), 0, -1):
        module_name = ".".join(parts[:i])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            # only swallow "this prefix is not a module"; a missing dependency inside it is a real error
            if e.name is not None and not module_name.startswith(e.name) and e.name != module_name:
                raise InstantiationError(f"importing '{module_name}' for target '{path}' failed: {e}") from e
            last_error = e
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError as e:
            raise InstantiationError(f"target '{path}' does not exist ({e})") from e
        except ImportError as e:  # a lazy package attribute whose providing module is missing
            raise InstantiationError(f"{path} is not available ({e})") from e
        return obj
    raise InstantiationError(f"target '{path}' cannot be imported ({last_error})")


class LazyCall:
    """`LazyCall(fn)(a=1)` -> DictConfig({"a": 1, "_target_": "module.fn"}). Keyword arguments only."""

    def __init__(self, target: Any):
        if not (callable(target) or isinstance(target, str)):
            raise TypeError(f"LazyCall target must be callable or a dotted path string, got {target!r}")
        self._target = target

    def __call__(self, **kwargs: Any) -> DictConfig:
        target = self._target
        if not isinstance(target, str):
            # dataclass types cannot live inside OmegaConf; any importable target is kept as text for YAML
            path = dotted_path(target)
            if path is not None or dataclasses.is_dataclass(target):
                target = path or f"{target.__module__}.{target.__qualname__}"
        kwargs[TARGET_KEY] = target
        return DictConfig(content=kwargs, flags={"allow_objects": True})


def _build_value(value: Any) -> Any:
    """Instantiate nested targets anywhere inside containers; plain containers become plain dicts/lists."""
    if isinstance(value, Mapping):
        if TARGET_KEY in value:
            return instantiate(value)
        return {key: _build_value(value[key]) for key in value}
    if isinstance(value, (ListConfig, list, tuple)):
        return [_build_value(item) for item in value]
    return value


def instantiate(cfg: Any, *args: Any, **kwargs: Any) -> Any:
    """Build the object `cfg` describes, recursively. Call-site keyword arguments win over the config's.

    Anything that is not a mapping with `_target_` (or a list of them) is returned unchanged.
    """
    if isinstance(cfg, (ListConfig, list, tuple)):
        if args or kwargs:
            raise InstantiationError("instantiate(list, ...) takes no extra arguments; instantiate the items instead")
        return [instantiate(item) for item in cfg]
    if not isinstance(cfg, Mapping) or TARGET_KEY not in cfg:
        return cfg
    items = {key: cfg[key] for key in cfg}
    target = items.pop(TARGET_KEY)
    name = target if isinstance(target, str) else (dotted_path(target) or repr(target))
    if isinstance(target, str):
        fn = locate(target)
    else:
        fn = target
    if not callable(fn):
        raise InstantiationError(f"target '{name}' is not callable (got {type(fn).__name__})")
    built = {key: _build_value(value) for key, value in items.items() if key not in kwargs}
    built.update(kwargs)  # call-site arguments win; what they replace is never built
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have no signature; let the call itself complain
        signature = None
    if signature is not None:
        try:
            signature.bind(*args, **built)
        except TypeError as e:
            raise InstantiationError(f"cannot instantiate '{name}': {e}") from e
    return fn(*args, **built)
