"""Deferred construction: configs describe objects, `instantiate` builds them.

`LazyCall(target)(**kwargs)` returns an OmegaConf `DictConfig` holding the keyword arguments plus `_target_`.
Nothing is imported or built until `instantiate` is called, which keeps config files cheap to load and lets
command-line overrides edit any argument first. Importable targets are stored as dotted strings so a config
survives a YAML round trip unchanged.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

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


def _to_plain(value: Any) -> Any:
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def instantiate(cfg: Any, *args: Any, **kwargs: Any) -> Any:
    """Build the object `cfg` describes, recursively. Call-site keyword arguments win over the config's.

    Anything that is not a mapping with `_target_` (or a list of them) is returned unchanged.
    """
    if isinstance(cfg, (ListConfig, list, tuple)) and not args and not kwargs:
        return [instantiate(item) for item in cfg]
    if not isinstance(cfg, Mapping) or TARGET_KEY not in cfg:
        return cfg
    items = {key: cfg[key] for key in cfg}
    target = items.pop(TARGET_KEY)
    name = target if isinstance(target, str) else getattr(target, "__qualname__", repr(target))
    fn = locate(target) if isinstance(target, str) else target
    if not callable(fn):
        raise InstantiationError(f"target '{name}' is not callable")
    built = {}
    for key, value in items.items():
        if key in kwargs:
            continue  # overridden at the call site; do not build what is thrown away
        if isinstance(value, (DictConfig, ListConfig, Mapping, list)):
            value = instantiate(value) if _has_target(value) else _to_plain(value)
        built[key] = value
    built.update(kwargs)
    try:
        return fn(*args, **built)
    except TypeError as e:
        raise InstantiationError(f"instantiating '{name}' failed: {e}") from e


def _has_target(value: Any) -> bool:
    if isinstance(value, Mapping):
        return TARGET_KEY in value
    if isinstance(value, (list, ListConfig)):
        return any(_has_target(v) for v in value)
    return False
