"""The trained student of a run, rebuilt from its config and a checkpoint (export and inference share this).

`checkpoint_network_state` picks one network's weights out of a fastgen checkpoint (or takes a plain state dict);
`build_student` builds `model.net` and loads them, LoRA-aware: with `model.lora` set, the base network gets its
weights as in training (`pretrained_student_net_path` or `pretrained_model_path`, or the hub weights the network
loads itself) and the checkpoint fills the adapter "net". Every mismatch raises `StudentLoadError` with one line that
names the file and what does not fit.
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn


class StudentLoadError(ValueError):
    """A checkpoint or weights file that does not give the config's student (missing, other network, other keys)."""


def checkpoint_network_state(ckpt_path: str, net_key: str = "auto") -> tuple[dict, str]:
    """(state dict, description) of network `net_key` of a fastgen checkpoint ('auto': first EMA, else 'net'), or of
    a plain state-dict file (.safetensors / .pth). Loads with weights_only / safetensors: never runs code."""
    from fastgen.methods.model import load_weights_file
    from fastgen.utils.checkpointer import CheckpointError, safe_torch_load

    if not ckpt_path:
        raise StudentLoadError("no weights: pass a checkpoint path (or set model.pretrained_model_path in the config)")
    if not os.path.isfile(ckpt_path):
        raise StudentLoadError(f"checkpoint {ckpt_path} does not exist")
    try:
        if not ckpt_path.endswith(".safetensors"):
            raw = safe_torch_load(ckpt_path)
            if isinstance(raw, dict) and isinstance(raw.get("model"), dict) and "iteration" in raw:
                networks = raw["model"]
                key = net_key
                if key == "auto":
                    key = next((k for k in networks if k.startswith("ema")), "net")
                if key not in networks:
                    raise StudentLoadError(f"--net_key {key!r} is not in {ckpt_path}; it holds {sorted(networks)}")
                return dict(networks[key]), f"'{key}' of checkpoint iteration {raw['iteration']}"
        return load_weights_file(ckpt_path), "state dict"
    except (CheckpointError, OSError) as error:
        raise StudentLoadError(str(error).splitlines()[0]) from None


def describe_mismatch(result: Any) -> str:
    return f"missing keys {list(result.missing_keys)[:4]}, unexpected keys {list(result.unexpected_keys)[:4]}"


def build_student(config: Any, state: dict | None, ckpt_path: str = "") -> nn.Module:
    """`config.model.net` with the student weights `state` (a LoRAView over its base when model.lora is set),
    in eval mode, frozen. Encoders of diffusers-backed networks are built too (they are needed to sample).
    `state` None keeps the weights the network loads itself (a diffusers model_id with load_pretrained)."""
    from fastgen.methods.lora import add_adapter
    from fastgen.methods.model import load_weights_into
    from fastgen.utils import instantiate

    model_cfg = config.model
    net = instantiate(model_cfg.net)
    if hasattr(net, "init_preprocessors"):
        net.init_preprocessors()
    lora = getattr(model_cfg, "lora", None)
    if state is None:
        if lora is not None:
            raise StudentLoadError("model.lora is set: pass the checkpoint that holds the student's adapters")
        return net.eval().requires_grad_(False)
    if lora is not None:
        base_path = model_cfg.pretrained_student_net_path or model_cfg.pretrained_model_path
        if base_path:
            load_weights_into(net, base_path, "lora_base")
        if not state or not all(".lora_" in key for key in state):
            raise StudentLoadError(f"{ckpt_path or 'the weights'} hold no LoRA adapter of this config (model.lora is "
                                   f"set; keys like {sorted(state)[:2]}); was it written by a run without LoRA?")
        student = add_adapter(net, lora, "net")
    else:
        student = net
        if state and any(".lora_" in key for key in state):
            raise StudentLoadError(f"{ckpt_path or 'the weights'} hold LoRA adapters but the config has no "
                                   "model.lora; pass the training run's config (with its model.lora)")
    try:
        result = student.load_state_dict(state, strict=False)
    except RuntimeError as error:  # same names, other shapes: e.g. an SDXL UNet's weights for an SD1.5 config
        sizes = [line.strip() for line in str(error).splitlines() if "size mismatch" in line]
        raise StudentLoadError(f"{ckpt_path or 'the weights'} do not match model.net of the config "
                               f"({type(net).__name__}): {(sizes or [str(error).splitlines()[0]])[0]}") from None
    if result.missing_keys or result.unexpected_keys:
        raise StudentLoadError(f"{ckpt_path or 'the weights'} do not match model.net of the config "
                               f"({type(net).__name__}): {describe_mismatch(result)}")
    return student.eval().requires_grad_(False)
