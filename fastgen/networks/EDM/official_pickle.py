"""Read the official EDM / EDM2 network pickles without running their code.

The released `.pkl` files (e.g. `edm-cifar10-32x32-cond-vp.pkl`, `edm2-img64-s-fid.pkl`) are plain pickles of a
dict like `{"ema": <network>, "loss_fn": ..., "augment_pipe": ..., "dataset_kwargs": ...}`. The networks are
instances of `torch_utils.persistence` classes: each one pickles as a call
`torch_utils.persistence._reconstruct_persistent_obj(meta)`, meta = {type, version, module_src, class_name,
state}, where `module_src` is the Python source of its module (which unpickling normally `exec`s) and `state` is
the nn.Module `__dict__` (`_parameters`, `_buffers`, `_modules`, `_init_kwargs`, ...). Tensors pickle as
`torch._utils._rebuild_tensor_v2(storage, ...)`, with each storage a legacy `torch.save` blob
(`torch.storage._load_from_bytes`).

`RestrictedUnpickler` resolves only an allowlist of globals: tensor/storage rebuilders (storages through
`torch.load(weights_only=True)`), a few containers, NumPy scalars/arrays, and stand-ins (`OfficialObject`) for every
class of the training code (`training.*`, `torch_utils.*`, `dnnlib.*`, `torch.nn.modules.*`). The persistent
`module_src` is never executed. Anything else raises `pickle.UnpicklingError` naming the global.
"""

from __future__ import annotations

import _compat_pickle
import collections
import io
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

# globals of these module prefixes become inert stand-in classes
STANDIN_MODULE_PREFIXES = ("training.", "torch_utils.", "dnnlib.", "torch.nn.modules.", "torch.nn.")
PERSISTENT_RECONSTRUCT = ("torch_utils.persistence", "_reconstruct_persistent_obj")


class OfficialObject:
    """Inert stand-in for an instance of a class we do not import; keeps the pickled state as a dict.

    For nn.Module instances the state is the module's `__dict__`, from which `state_dict()` rebuilds the flat
    parameter/buffer dict exactly like `nn.Module.state_dict()` (persistent buffers only, None entries skipped).
    """

    module_name = "?"
    class_name = "?"

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.state = {}
        obj.args = args
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (__dict__, __slots__ state)
            state = {**(state[0] or {}), **(state[1] or {})}
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"unexpected state of type {type(state).__name__} for {self.class_name}")
        self.state.update(state)

    def __repr__(self) -> str:
        return f"OfficialObject({self.module_name}.{self.class_name})"

    @property
    def is_module(self) -> bool:
        return "_parameters" in self.state or "_modules" in self.state

    @property
    def init_args(self) -> tuple:
        return tuple(self.state.get("_init_args") or ())

    @property
    def init_kwargs(self) -> dict:
        return dict(self.state.get("_init_kwargs") or {})

    def children(self) -> dict[str, OfficialObject]:
        return {k: v for k, v in (self.state.get("_modules") or {}).items() if v is not None}

    def named_tensors(self, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
        for name, value in (self.state.get("_parameters") or {}).items():
            if value is not None:
                yield prefix + name, value.detach()
        non_persistent = self.state.get("_non_persistent_buffers_set") or set()
        for name, value in (self.state.get("_buffers") or {}).items():
            if value is not None and name not in non_persistent:
                yield prefix + name, value.detach()
        for name, child in self.children().items():
            if not isinstance(child, OfficialObject):
                raise pickle.UnpicklingError(f"submodule {prefix + name} is not a module ({type(child).__name__})")
            yield from child.named_tensors(prefix + name + ".")

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.named_tensors())


class OfficialDict(dict):
    """Stand-in for dict subclasses of the training code (dnnlib.EasyDict)."""

    module_name = "?"
    class_name = "?"

    def __setstate__(self, state) -> None:
        pass


def _standin_class(module: str, name: str, cache: dict) -> type:
    key = (module, name)
    if key not in cache:
        base = OfficialDict if name.endswith("EasyDict") else OfficialObject
        cache[key] = type(name, (base,), {"module_name": module, "class_name": name})
    return cache[key]


def _is_standin(cls) -> bool:
    return isinstance(cls, type) and issubclass(cls, (OfficialObject, OfficialDict))


def _load_storage_from_bytes(data: bytes):
    """A pickled storage: a legacy torch.save blob, read with weights_only=True (never runs code)."""
    return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")


def _codecs_encode(text, encoding="utf-8"):
    """Protocol-2 pickles store bytes as _codecs.encode(str, 'latin1')."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode only allowed for latin1 text; got encoding {encoding!r}")
    return text.encode("latin1")


def _np_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError(f"NumPy scalar of dtype {dtype!r} not allowed")
    return np.frombuffer(data, dtype=dtype)[0]


def _np_reconstruct(cls, shape, dtype_code):
    if cls is not np.ndarray:
        raise pickle.UnpicklingError(f"numpy _reconstruct only allowed for ndarray; got {cls!r}")
    return np.ndarray.__new__(np.ndarray, shape, dtype_code)


def _copyreg_reconstructor(cls, base, state):
    """copyreg._reconstructor restricted to stand-in classes (protocol 0/1 object creation)."""
    if not _is_standin(cls):
        raise pickle.UnpicklingError(f"object creation only allowed for stand-in classes; got {cls!r}")
    obj = cls.__new__(cls)
    if isinstance(obj, dict) and state:
        obj.update(state)
    return obj


def _copyreg_newobj(cls, *args):
    if not _is_standin(cls):
        raise pickle.UnpicklingError(f"object creation only allowed for stand-in classes; got {cls!r}")
    return cls.__new__(cls, *args)


def _rebuild_from_type_v2(func, new_type, args, state):
    if func not in (torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter) or new_type not in (
        torch.Tensor,
        torch.nn.Parameter,
    ):
        raise pickle.UnpicklingError(f"tensor rebuild of type {new_type!r} via {func!r} not allowed")
    return torch._tensor._rebuild_from_type_v2(func, new_type, args, state)


def _allowed_globals() -> dict[tuple[str, str], Any]:
    allowed = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "object"): object,
        ("builtins", "bytearray"): bytearray,
        ("builtins", "complex"): complex,
        ("builtins", "slice"): slice,
        ("_codecs", "encode"): _codecs_encode,
        ("copyreg", "_reconstructor"): _copyreg_reconstructor,
        ("copyreg", "__newobj__"): _copyreg_newobj,
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
        ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
        ("torch", "Size"): torch.Size,
        ("torch", "Tensor"): torch.Tensor,
        ("torch._tensor", "Tensor"): torch.Tensor,
        ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
        ("torch", "device"): torch.device,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "scalar")] = _np_scalar
        allowed[(mod, "_reconstruct")] = _np_reconstruct
    for name in dir(torch):
        if isinstance(getattr(torch, name, None), torch.dtype):
            allowed[("torch", name)] = getattr(torch, name)
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that maps training-code classes to stand-ins and refuses every global not on the allowlist."""

    def __init__(self, file):
        super().__init__(file)
        self._allowed = _allowed_globals()
        self._standins: dict = {}

    def _reconstruct_persistent(self, meta):
        """Stand-in for torch_utils.persistence._reconstruct_persistent_obj: state only, the source is ignored."""
        if not isinstance(meta, dict) or meta.get("type") != "class" or "class_name" not in meta:
            raise pickle.UnpicklingError("malformed persistent-object record (expected type='class' and class_name)")
        cls = _standin_class("<persistent>", str(meta["class_name"]), self._standins)
        obj = cls.__new__(cls)
        obj.__setstate__(dict(meta.get("state") or {}))
        return obj

    def find_class(self, module: str, name: str):
        # protocol 0-2 pickles may name Python 2 modules (__builtin__, copy_reg): map them as pickle itself does
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        if (module, name) == PERSISTENT_RECONSTRUCT:
            return self._reconstruct_persistent
        if (module, name) in self._allowed:
            return self._allowed[(module, name)]
        if module.startswith(STANDIN_MODULE_PREFIXES) or module in ("dnnlib", "training", "torch_utils"):
            return _standin_class(module, name, self._standins)
        raise pickle.UnpicklingError(
            f"global {module}.{name} is not allowed in an EDM/EDM2 network pickle (refusing to run arbitrary code)"
        )

    def persistent_load(self, pid):
        raise pickle.UnpicklingError(f"unexpected persistent id {pid!r} in a plain network pickle")


def load_official_pickle(source) -> Any:
    """Unpickle an official EDM/EDM2 file (path or binary file object) into plain data + OfficialObject stand-ins."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"network pickle not found: {path}")
        with open(path, "rb") as f:
            return RestrictedUnpickler(f).load()
    return RestrictedUnpickler(source).load()


def find_network(data, key: str = "ema") -> OfficialObject:
    """The network object of an unpickled file: data[key] for the usual snapshot dict, or data itself."""
    if isinstance(data, dict):
        if key not in data:
            raise KeyError(f"network pickle has no {key!r} entry; keys: {sorted(map(str, data))}")
        data = data[key]
    if not isinstance(data, OfficialObject) or not data.is_module:
        raise ValueError(f"expected a pickled network module; got {data!r}")
    return data
