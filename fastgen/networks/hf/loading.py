"""Loading diffusers / transformers components by hub id or local folder, honouring HF_HOME and LOCAL_FILES_ONLY.

Both variables are read when a component loads (fastgen.utils.env), not when huggingface_hub is imported, so a
launcher or a test can set them late. The hub cache is $HF_HOME/hub, laid out as the hub client writes it
(models--org--name/snapshots/<revision>/<subfolder>/...).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import torch

from fastgen.utils.env import hf_home, local_files_only


class ModelNotFoundError(FileNotFoundError):
    """A model id that is neither a local folder nor in the hub cache (with LOCAL_FILES_ONLY) nor downloadable."""


def resolve_class(dotted: str):
    """'diffusers.UNet2DConditionModel' -> the class (imported when needed, so configs stay light)."""
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def hub_cache_dir() -> str:
    """The hub cache under $HF_HOME (what huggingface_hub would use with that HF_HOME)."""
    return os.path.join(hf_home(), "hub")


def missing_model_message(model_id: str, subfolder: str | None) -> str:
    where = f"{model_id}" + (f" (subfolder {subfolder!r})" if subfolder else "")
    if local_files_only():
        return (f"model {where} is not in the local hub cache {hub_cache_dir()} and LOCAL_FILES_ONLY=1 forbids "
                f"downloading it: run `HF_HOME={hf_home()} huggingface-cli download {model_id}` or unset "
                "LOCAL_FILES_ONLY")
    return (f"model {where} could not be loaded: it is neither a local folder nor a hub id that can be downloaded "
            f"(check the id; a gated model needs `huggingface-cli login`)")


def load_component(cls_path: str, model_id: str, subfolder: str | None = None, dtype=None, **kwargs: Any):
    """`cls.from_pretrained(model_id, subfolder=...)` with our cache dir and LOCAL_FILES_ONLY; one-line errors.
    `dtype` reads a model's weights in that dtype (diffusers calls it `torch_dtype`, transformers 5 `dtype`);
    processors and tokenizers have no weights and ignore it."""
    cls = resolve_class(cls_path)
    if dtype is not None and isinstance(cls, type) and issubclass(cls, torch.nn.Module):
        kwargs["torch_dtype" if cls.__module__.startswith("diffusers") else "dtype"] = dtype
    if os.path.isdir(model_id):
        path, subfolder_kw = (os.path.join(model_id, subfolder) if subfolder else model_id), {}
        if not os.path.isdir(path):
            raise ModelNotFoundError(f"local model folder {model_id} has no subfolder {subfolder!r}")
    else:
        path, subfolder_kw = model_id, ({"subfolder": subfolder} if subfolder else {})
        kwargs.update(cache_dir=hub_cache_dir(), local_files_only=local_files_only())
    try:
        return cls.from_pretrained(path, **subfolder_kw, **kwargs)
    except (OSError, ValueError) as err:  # hub / file errors surface as OSError (EnvironmentError) subclasses
        if os.path.isdir(model_id):
            raise
        raise ModelNotFoundError(missing_model_message(model_id, subfolder)) from err


def _load_config(cls, model_id: str, subfolder: str | None):
    """A component's config only (no weights), under the same cache / LOCAL_FILES_ONLY rules as the weights."""
    is_diffusers = hasattr(cls, "load_config")
    loader = cls.load_config if is_diffusers else cls.config_class.from_pretrained
    if os.path.isdir(model_id):
        return loader(os.path.join(model_id, subfolder) if subfolder else model_id)
    try:
        return loader(model_id, subfolder=subfolder or "", cache_dir=hub_cache_dir(),
                      local_files_only=local_files_only())
    except (OSError, ValueError) as err:
        raise ModelNotFoundError(missing_model_message(model_id, subfolder)) from err


def load_config(cls_path: str, model_id: str, subfolder: str | None = None) -> dict:
    """The config dict of one component (diffusers or transformers) by hub id or local folder."""
    config = _load_config(resolve_class(cls_path), model_id, subfolder)
    return dict(config) if isinstance(config, dict) else config.to_dict()


def load_architecture(cls_path: str, model_id: str, subfolder: str | None = None):
    """The component built from its config with fresh (random, or meta-device) weights: no weight file is read.
    Under `torch.device("meta")` this allocates nothing (ranks > 0 of fsdp_meta_init)."""
    cls = resolve_class(cls_path)
    config = _load_config(cls, model_id, subfolder)
    return cls.from_config(config) if hasattr(cls, "from_config") else cls(config)


def build_component(cls_path: str, config: dict):
    """A component with random weights from a config dict (no hub access): diffusers models and schedulers take
    `from_config`, transformers models a `*Config` object, tokenizers are built by the caller."""
    cls = resolve_class(cls_path)
    if hasattr(cls, "config_class") and getattr(cls, "config_class", None) is not None and not hasattr(
        cls, "from_config"
    ):
        return cls(cls.config_class(**config))
    if hasattr(cls, "from_config"):
        return cls.from_config(config)
    if hasattr(cls, "from_dict"):  # image processors (Wan I2V's CLIPImageProcessor)
        return cls.from_dict(config)
    raise TypeError(f"{cls_path} cannot be built from a config dict")
