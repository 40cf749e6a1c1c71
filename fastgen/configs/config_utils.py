"""Load, override, serialise and reload configs.

* `import_config_from_python_file(path)`: any relative or absolute path to a `.py` file with `create_config()`.
* `override_config_with_opts(config, ["-", "a.b=1", ...])`: Hydra's override grammar, every value checked against
  the attrs field's type annotation; unknown keys name the closest valid ones.
* `serialize_config(config, ...)` / `load_config_from_yaml(path)`: config.yaml round trip to an equal config.

Overrides are applied by walking a deep copy of the attrs tree (no Hydra global state): attrs nodes accept only
their fields, dict/LazyCall nodes accept existing keys, `+key=v` adds a key to a dict node, `~key` deletes one.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from fastgen.utils.lazy import TARGET_KEY, dotted_path, locate

CLASSES_KEY = "_config_classes_"  # config.yaml entry recording the attrs class of every config node


class ConfigError(ValueError):
    """A user error in a config file or an override: reported as one line, exit code 2."""


# ----------------------------------------------------------------------------------------------------------------
# import


def _module_name_for(path: Path) -> str | None:
    """The importable dotted module name of `path` if it lives in a package reachable from sys.path or the CWD."""
    for root in [Path.cwd(), *[Path(p) for p in sys.path if p]]:
        try:
            rel = path.relative_to(root.resolve())
        except (ValueError, OSError):
            continue
        parts = list(rel.with_suffix("").parts)
        if not parts or not all(p.isidentifier() for p in parts):
            continue
        if all((root / Path(*parts[:i]) / "__init__.py").is_file() for i in range(1, len(parts))):
            return ".".join(parts)
    return None


def load_config_file(path: str | os.PathLike) -> Any:
    """`--config`: a `.py` file with create_config(), or a run's saved `config.yaml` (rerun or resume from it)."""
    if str(path).endswith((".yaml", ".yml")):
        if not Path(str(path)).expanduser().is_file():
            raise ConfigError(f"config file '{path}' does not exist")
        return load_config_from_yaml(Path(str(path)).expanduser())
    return import_config_from_python_file(path)


def import_config_from_python_file(path: str | os.PathLike) -> Any:
    """Load the `.py` file at `path` (relative to the CWD or absolute) and return its `create_config()`.

    A syntax error (in the file or in a module it imports) is a ConfigError naming that file, line and text."""
    try:
        return _import_config(path)
    except SyntaxError as error:
        where = f"{error.filename or path}, line {error.lineno}" if error.lineno else str(error.filename or path)
        text = f": {error.text.strip()}" if error.text and error.text.strip() else ""
        raise ConfigError(f"syntax error in config file {where}: {error.msg}{text}") from error


def _import_config(path: str | os.PathLike) -> Any:
    path_str = str(path)
    if not path_str.endswith(".py"):
        raise ConfigError(f"config must be a .py file with a create_config() function (or a run's config.yaml), "
                          f"got '{path_str}'")
    file = Path(path_str).expanduser()
    if not file.is_file():
        raise ConfigError(f"config file '{path_str}' does not exist")
    file = file.resolve()
    module = None
    module_name = _module_name_for(file)
    if module_name is not None and "." in module_name:  # inside a package: import it so sibling imports share it
        if str(Path.cwd()) not in sys.path and module_name.split(".")[0] not in sys.modules:
            sys.path.insert(0, str(Path.cwd()))
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name is None or not module_name.startswith(e.name):
                raise
        if module is not None and Path(getattr(module, "__file__", "") or "").resolve() != file:
            module = None  # the name resolved to a different file: load ours by path instead
    if module is None:  # a file outside any package: load it under a private name derived from its path
        name = "fastgen_user_config_" + hashlib.sha1(str(file).encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(name, file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    create = getattr(module, "create_config", None)
    if not callable(create):
        raise ConfigError(f"config file '{path_str}' has no create_config() function")
    config = create()
    if not attrs.has(type(config)):
        raise ConfigError(f"create_config() in '{path_str}' returned {type(config).__name__}; expected a BaseConfig")
    return config


# ----------------------------------------------------------------------------------------------------------------
# generic helpers (names of the reference's config_utils)


def is_attrs_or_dataclass(obj: Any) -> bool:
    import dataclasses

    return attrs.has(type(obj)) or (dataclasses.is_dataclass(obj) and not isinstance(obj, type))


def get_fields(obj: Any) -> list[str]:
    import dataclasses

    if attrs.has(type(obj)):
        return [f.name for f in attrs.fields(type(obj))]
    return [f.name for f in dataclasses.fields(obj)]


def _field_types(cls: type) -> dict[str, Any]:
    """Field name -> resolved annotation (string annotations resolved; unresolvable ones become Any)."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - a forward reference we cannot resolve just disables checking
        hints = {}
    return {f.name: hints.get(f.name, f.type if not isinstance(f.type, str) else Any) for f in attrs.fields(cls)}


def flatten_dict(data: Mapping, prefix: str = "", skip_none: bool = False) -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1} (lists are leaves)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            flat.update(flatten_dict(value, full, skip_none))
        elif not (skip_none and value is None):
            flat[full] = value
    return flat


def _all_keys(node: Any, prefix: str = "") -> list[str]:
    """Every dotted key reachable in a config tree (used for 'did you mean' suggestions)."""
    keys = []
    if attrs.has(type(node)):
        children = [(f.name, getattr(node, f.name)) for f in attrs.fields(type(node))]
    elif isinstance(node, Mapping):
        children = [(str(k), node[k]) for k in node]
    else:
        return keys
    for name, child in children:
        full = f"{prefix}.{name}" if prefix else name
        keys.append(full)
        keys.extend(_all_keys(child, full))
    return keys


# ----------------------------------------------------------------------------------------------------------------
# type checking


def type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return "any value"
    if tp is type(None):
        return "null"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if origin in (list, tuple) or tp in (list, tuple):
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is dict or tp is dict:
        return f"mapping of {type_name(args[1])}" if args else "mapping"
    if tp is DictConfig:
        return "mapping (LazyCall)"
    if attrs.has(tp):
        return f"mapping ({tp.__name__})"
    return getattr(tp, "__name__", str(tp))


class _Mismatch(Exception):
    pass


def _mentions(tp: Any, cls: type) -> bool:
    return tp is cls or any(_mentions(a, cls) for a in typing.get_args(tp))


def coerce_value(value: Any, tp: Any, raw: str | None = None, current: Any = None) -> Any:
    """`value` converted to annotation `tp`, or _Mismatch. `raw` is the override's text (kept for str fields)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or tp is object or tp is None:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise _Mismatch
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce_value(value, arg, raw, current)
            except _Mismatch:
                continue
        raise _Mismatch
    if value is None:
        raise _Mismatch
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _Mismatch
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float, bool)) and raw is not None:
            return raw  # e.g. log_config.name=0042 keeps its text
        raise _Mismatch
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple, ListConfig)):
            raise _Mismatch
        item_tp = args[0] if args else Any
        return [coerce_value(v, item_tp) for v in value]
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise _Mismatch
        if tp is dict:  # an optional LazyCall field: `Optional[dict]`, since OmegaConf rejects Optional[DictConfig]
            return DictConfig(dict(value), flags={"allow_objects": True})
        value_tp = args[1] if len(args) == 2 else Any
        return {k: coerce_value(v, value_tp) for k, v in value.items()}
    if tp is DictConfig:
        if isinstance(value, Mapping):
            return DictConfig(dict(value), flags={"allow_objects": True})
        raise _Mismatch
    if attrs.has(tp):
        if attrs.has(type(value)) and isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise _Mismatch
        node = copy.deepcopy(current) if isinstance(current, tp) else tp()
        for key, item in value.items():
            _set_on_node(node, str(key), item, None, str(key), add=False)
        return node
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise _Mismatch
    return value


def _check(value: Any, tp: Any, key: str, raw: str | None = None, current: Any = None) -> Any:
    try:
        return coerce_value(value, tp, raw, current)
    except _Mismatch:
        shown = raw if raw is not None else repr(value)
        raise ConfigError(f"invalid value for {key}: expected {type_name(tp)}, got {shown}") from None


# ----------------------------------------------------------------------------------------------------------------
# applying overrides


def _unknown_key(root: Any, key: str, detail: str = "") -> ConfigError:
    close = difflib.get_close_matches(key, _all_keys(root), n=3, cutoff=0.6)
    hint = f"; did you mean: {', '.join(close)}?" if close else ""
    return ConfigError(f"unknown config key '{key}'{detail}{hint}")


def _set_on_node(node: Any, name: str, value: Any, raw: str | None, key: str, add: bool,
                 value_type: Any = Any, root: Any = None) -> None:
    """Set `node.name` (attrs) or `node[name]` (mapping) with type checking."""
    if attrs.has(type(node)):
        types_ = _field_types(type(node))
        if name not in types_:
            raise _unknown_key(root if root is not None else node, key,
                               " ('+' adds keys only inside dict nodes such as callbacks or LazyCall arguments)"
                               if add else "")
        setattr(node, name, _check(value, types_[name], key, raw, getattr(node, name)))
    elif isinstance(node, (DictConfig, dict)):
        if name not in node and not add:
            raise _unknown_key(root if root is not None else node, key, " (use +key=value to add a new key)")
        node[name] = _check(value, value_type, key, raw) if value_type is not Any else value
    elif isinstance(node, (ListConfig, list)):
        index = _list_index(node, name, key)
        node[index] = value
    else:
        raise ConfigError(f"cannot set '{key}': its parent is a {type(node).__name__}, not a config node")


def _list_index(node: Any, name: str, key: str) -> int:
    try:
        index = int(name)
    except ValueError:
        raise ConfigError(f"cannot use '{name}' as an index into the list at '{key}'") from None
    if not -len(node) <= index < len(node):
        raise ConfigError(f"index {index} out of range for '{key}' (length {len(node)})")
    return index


def _walk(root: Any, parts: list[str], key: str) -> tuple[Any, Any]:
    """Node at `parts` and the annotation of the mapping values it holds (Dict[K, V] -> V)."""
    node, value_type = root, Any
    walked = []
    for part in parts:
        walked.append(part)
        here = ".".join(walked)
        if attrs.has(type(node)):
            types_ = _field_types(type(node))
            if part not in types_:
                raise _unknown_key(root, key)
            tp = types_[part]
            node = getattr(node, part)
            value_type = _dict_value_type(tp)
        elif isinstance(node, Mapping):
            if part not in node:
                raise _unknown_key(root, key)
            node, value_type = node[part], Any
        elif isinstance(node, (ListConfig, list)):
            node, value_type = node[_list_index(node, part, here)], Any
        else:
            raise _unknown_key(root, key)
        if node is None:
            raise ConfigError(f"cannot set '{key}': '{here}' is null (set the whole '{here}' node instead)")
    return node, value_type


def _dict_value_type(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = inner[0] if len(inner) == 1 else Any
    if typing.get_origin(tp) is dict and len(typing.get_args(tp)) == 2:
        return typing.get_args(tp)[1]
    return Any


def apply_overrides(config: Any, overrides: list[str]) -> Any:
    """A deep copy of `config` with Hydra-grammar `overrides` (no leading '-') applied and type-checked."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType
    from hydra.errors import HydraException

    config = copy.deepcopy(config)
    if not overrides:
        return config
    parser = OverridesParser.create()
    for text in overrides:
        try:
            (override,) = parser.parse_overrides([text])
        except HydraException as e:
            message = str(e).strip().splitlines()[0] if str(e).strip() else "syntax error"
            raise ConfigError(f"cannot parse override '{text}': {message} (expected key=value)") from None
        if override.is_sweep_override():
            raise ConfigError(f"override '{text}' is a sweep; train.py takes a single value per key")
        if override.package is not None:
            raise ConfigError(f"override '{text}': package syntax (key@pkg) is not supported")
        key = override.key_or_group
        parts = key.split(".")
        parent, value_type = _walk(config, parts[:-1], key)
        name = parts[-1]
        if override.type == OverrideType.DEL:
            _delete(config, parent, name, key)
            continue
        value = override.value()
        raw = override.get_value_element_as_str() if not isinstance(value, (list, dict)) else None
        exists = (name in parent) if isinstance(parent, Mapping) else hasattr(parent, name)
        if override.type == OverrideType.ADD and exists:
            raise ConfigError(f"cannot add '{key}': it already exists (drop the '+' to change it)")
        add = override.type in (OverrideType.ADD, OverrideType.FORCE_ADD)
        _set_on_node(parent, name, value, raw, key, add=add, value_type=value_type, root=config)
    return config


def _delete(root: Any, parent: Any, name: str, key: str) -> None:
    if isinstance(parent, (DictConfig, dict)):
        if name not in parent:
            raise _unknown_key(root, key, " (nothing to delete)")
        del parent[name]
    elif attrs.has(type(parent)):
        raise ConfigError(f"cannot delete '{key}': it is a config field; set it to null or a value instead")
    else:
        raise ConfigError(f"cannot delete '{key}': only dict entries (e.g. a callback) can be deleted")


def override_config_with_opts(config: Any, opts: list[str] | None) -> Any:
    """Apply command-line overrides; `opts` is empty or starts with the '-' separator (as train.py receives it)."""
    opts = list(opts or [])
    if not opts:
        return copy.deepcopy(config)
    if opts[0] != "-":
        raise ConfigError(f"overrides must follow a '-' separator (e.g. '- {opts[0]}'), got '{opts[0]}' first")
    return apply_overrides(config, opts[1:])


def override_config_with_yaml(config: Any, yaml_path: str | os.PathLike) -> Any:
    """Loosely apply the values of a YAML file: keys the config does not have (and nulls, _target_s) are skipped."""
    with open(yaml_path) as f:
        data = yaml.safe_load(f) or {}
    data.pop(CLASSES_KEY, None)
    known = set(_all_keys(config))
    config = copy.deepcopy(config)
    for key, value in flatten_dict(data, skip_none=True).items():
        if key.endswith(TARGET_KEY) or key not in known:
            continue
        parts = key.split(".")
        parent, value_type = _walk(config, parts[:-1], key)
        _set_on_node(parent, parts[-1], value, None, key, add=False, value_type=value_type, root=config)
    return config


# ----------------------------------------------------------------------------------------------------------------
# serialisation


def _class_path(obj: Any) -> str:
    cls = type(obj)
    return dotted_path(cls) or f"{cls.__module__}.{cls.__qualname__}"


def _plain(value: Any, classes: dict[str, str] | None = None, prefix: str = "") -> Any:
    """YAML-safe nested dicts/lists/primitives; anything else becomes its dotted path or str()."""
    if attrs.has(type(value)):
        if classes is not None:
            classes[prefix] = _class_path(value)
        return {f.name: _plain(getattr(value, f.name), classes, f"{prefix}.{f.name}" if prefix else f.name)
                for f in attrs.fields(type(value))}
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=False)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return dotted_path(value) or str(value)


def _add_default_kwargs(data: Any) -> Any:
    if isinstance(data, dict):
        data = {k: _add_default_kwargs(v) for k, v in data.items()}
        if isinstance(data.get(TARGET_KEY), str):
            try:
                params = inspect.signature(locate(data[TARGET_KEY])).parameters.values()
            except Exception:  # noqa: BLE001 - a target that cannot be imported yet keeps its explicit kwargs
                return data
            for p in params:
                if p.default is not inspect.Parameter.empty and p.name not in data:
                    data[p.name] = _plain(p.default)
        return data
    if isinstance(data, list):
        return [_add_default_kwargs(v) for v in data]
    return data


def serialize_config(config: Any, return_type: str = "dict", path: str | os.PathLike | None = None,
                     filename: str = "config.yaml", include_defaults: bool = False, include_classes: bool = True,
                     redact_secrets: bool = True) -> Any:
    """The config as a plain dict, a YAML string, or a YAML file `{path}/{filename}` (returns the file path).

    YAML output records the attrs class of each node under `_config_classes_` so `load_config_from_yaml` rebuilds an
    equal config; secrets in the environment are redacted.
    """
    if return_type not in ("dict", "yaml", "file"):
        raise ValueError(f"return_type={return_type!r}; expected one of dict, yaml, file")
    classes: dict[str, str] = {}
    data = _plain(config, classes)
    if include_defaults:
        data = _add_default_kwargs(data)
    if redact_secrets:
        from fastgen.utils.env import redact

        data = redact(data)
    if return_type == "dict":
        return data
    if include_classes and classes and isinstance(data, dict):
        data = {**data, CLASSES_KEY: classes}
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=120)
    if return_type == "yaml":
        return text
    if path is None:
        raise ValueError("serialize_config(return_type='file') needs a path")
    os.makedirs(path, exist_ok=True)
    file = os.path.join(path, filename)
    tmp = f"{file}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, file)
    return file


def public_config_dict(config: Any) -> dict:
    """The config as a plain dict safe to log, print, save or send to W&B (secrets redacted)."""
    return serialize_config(config, return_type="dict", redact_secrets=True)


def config_from_dict(data: Mapping, cls: Any, classes: Mapping[str, str] | None = None, prefix: str = "") -> Any:
    """Rebuild an attrs config of class `cls` (or the class recorded in `classes`) from plain data."""
    classes = classes or {}
    if isinstance(cls, str):
        cls = locate(cls)
    return _fill(cls(), data, classes, prefix)


def _resolve_class(path: str, fallback: type) -> type:
    """The recorded class, or `fallback` when it cannot be imported (e.g. defined in a file loaded by path)."""
    try:
        cls = locate(path)
    except Exception:  # noqa: BLE001
        return fallback
    return cls if isinstance(cls, type) and attrs.has(cls) else fallback


def _fill(node: Any, data: Mapping, classes: Mapping[str, str], prefix: str) -> Any:
    cls = type(node)
    types_ = _field_types(cls)
    extra = set(data) - set(types_)
    if extra:
        raise ConfigError(f"{cls.__name__} has no field(s) {sorted(extra)} (at '{prefix or '<root>'}')")
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        tp = types_[name]
        default = getattr(node, name)
        if isinstance(value, Mapping) and (key in classes or attrs.has(type(default))):
            fallback = type(default) if attrs.has(type(default)) else None
            sub_cls = _resolve_class(classes[key], fallback) if key in classes else fallback
            if sub_cls is None:
                raise ConfigError(f"cannot import config class {classes[key]} for '{key}'")
            setattr(node, name, _fill(sub_cls(), value, classes, key))
        elif value is not None and _mentions(tp, DictConfig) and isinstance(value, Mapping):
            setattr(node, name, DictConfig(dict(value), flags={"allow_objects": True}))
        elif isinstance(value, Mapping) and TARGET_KEY in value:
            setattr(node, name, DictConfig(dict(value), flags={"allow_objects": True}))
        else:
            setattr(node, name, value)
    return node


def load_config_from_yaml(path: str | os.PathLike, config_class: Any = None) -> Any:
    """Load a config.yaml written by `serialize_config` back into an attrs config equal to the one saved."""
    with open(path) as f:
        data = yaml.safe_load(f)
    if not isinstance(data, Mapping):
        raise ConfigError(f"'{path}' does not hold a config mapping")
    data = dict(data)
    classes = data.pop(CLASSES_KEY, None) or {}
    from fastgen.configs.config import BaseConfig

    root = config_class or (_resolve_class(classes[""], BaseConfig) if "" in classes else BaseConfig)
    return config_from_dict(data, root, classes)


load_config = load_config_from_yaml
