"""LoRA students (Hu et al. 2021, "LoRA: Low-Rank Adaptation"): W x + (alpha / r) B A x on a frozen base W.

One base network holds every adapter (peft's `inject_adapter_in_model`, layers replaced in place): the student's
("net"), one per EMA copy, and (DMD2 / f-distill) the fake score's. Each adapter is seen by the method as a network
of its own through `LoRAView`: its forward runs the shared base with only that adapter active, its parameters /
state_dict / requires_grad_ / train() cover only that adapter's tensors. The teacher is a view with every adapter
disabled, so it is exactly the frozen base: no second copy of the weights exists. Consequences:
  - optimizers see only adapter parameters (the base is frozen once, never unfrozen by requires_grad_ on a view);
  - checkpoints (`model_dict` = views) hold only adapter tensors, and EMA works adapter-to-adapter by name;
  - adapters start with B = 0 (peft's default init), so the student, its EMA and the fake score start equal to
    the teacher, as a full copy of it would.
Which adapter is active is switched per call (`activated`). peft's public switches (`set_adapter`,
`enable_adapters`) also rewrite requires_grad of every adapter, which would fight the methods' own requires_grad
switching, so the two layer attributes those switches set are assigned directly; peft is pinned and the tests fail
loudly if its layer attributes change.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

# attention projections of diffusers' UNet2DConditionModel / transformers (the modules diffusers' own LoRA
# loaders expect by default)
DEFAULT_TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")
TEACHER = None  # adapter "name" of the teacher view: all adapters off


def _peft():
    from peft import LoraConfig, inject_adapter_in_model
    from peft.tuners.tuners_utils import BaseTunerLayer

    return LoraConfig, inject_adapter_in_model, BaseTunerLayer


def lora_layers(base: nn.Module) -> list[tuple[str, nn.Module]]:
    """(module path, peft tuner layer) of every layer of `base` that carries adapters, in module order."""
    _, _, tuner_layer = _peft()
    return [(name, module) for name, module in base.named_modules() if isinstance(module, tuner_layer)]


def has_lora(module: nn.Module) -> bool:
    return isinstance(module, LoRAView) or bool(lora_layers(module))


def target_modules_for(base: nn.Module, lora_config: Any) -> list[str]:
    """The configured target modules, else the diffusers attention projections when `base` has them."""
    if lora_config.target_modules:
        return list(lora_config.target_modules)
    names = [name for name, _ in base.named_modules()]
    found = [t for t in DEFAULT_TARGET_MODULES if any(n == t or n.endswith("." + t) for n in names)]
    if not found:
        raise ValueError(f"model.lora.target_modules is not set and {type(base).__name__} has none of the default "
                         f"targets {list(DEFAULT_TARGET_MODULES)}; set model.lora.target_modules to module names, "
                         f"e.g. {suggest_targets(base)}")
    return found


def suggest_targets(base: nn.Module, limit: int = 6) -> list[str]:
    """Distinct last names of Linear / Conv layers (what a user can put in target_modules)."""
    seen: list[str] = []
    for name, module in base.named_modules():
        short = name.rsplit(".", 1)[-1]
        if isinstance(module, (nn.Linear, nn.Conv2d)) and short not in seen:
            seen.append(short)
    return seen[:limit]


def add_adapter(base: nn.Module, lora_config: Any, name: str) -> LoRAView:
    """Inject adapter `name` (rank, alpha, targets, dropout from `lora_config`) into `base`; returns its view.

    The base's own weights are frozen; the new adapter starts at B = 0 (the view computes exactly the base)."""
    rank = int(lora_config.rank)
    if rank < 1:
        raise ValueError(f"model.lora.rank must be >= 1; got {rank}")
    if not 0.0 <= float(lora_config.dropout) < 1.0:
        raise ValueError(f"model.lora.dropout must be in [0, 1); got {lora_config.dropout}")
    lora_cls, inject, _ = _peft()
    targets = target_modules_for(base, lora_config)
    alpha = float(lora_config.alpha) if lora_config.alpha is not None else float(rank)
    peft_config = lora_cls(r=rank, lora_alpha=alpha, target_modules=targets, lora_dropout=float(lora_config.dropout),
                           init_lora_weights=True)
    if not lora_layers(base):
        base.requires_grad_(False)  # the first adapter: the base is frozen for good
    flags = {id(p): p.requires_grad for p in base.parameters()}
    try:
        with warnings.catch_warnings():  # several adapters in one model is the point here, not a mistake
            warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
            inject(peft_config, base, adapter_name=name)
    except ValueError as error:
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "is not supported" in text:  # e.g. a network's own Conv2d class (EDM) instead of torch.nn's
            raise ValueError(f"model.lora cannot adapt {type(base).__name__} with target_modules={targets}: "
                             f"{text.split('. Currently')[0]} (peft adapts torch.nn Linear / Conv / Embedding "
                             "layers only)") from None
        if "not found" in text or "Target modules" in text:
            raise ValueError(f"model.lora.target_modules={targets} matches no layer of {type(base).__name__}; "
                             f"layer names there include {suggest_targets(base)}") from None
        raise
    for p in base.parameters():  # peft's injection flips flags of earlier adapters: restore them; new ones off
        p.requires_grad_(flags.get(id(p), False))
    return LoRAView(base, name)


@contextlib.contextmanager
def activated(base: nn.Module, layers: list[nn.Module], adapter: str | None, training: bool) -> Iterator[None]:
    """Inside the block `base` (whose tuner layers are `layers`) computes with only `adapter` (None: no adapter, the
    bare base) in train/eval mode `training`; the previous selection and mode are restored afterwards."""
    saved = [(layer._active_adapter, layer._disable_adapters) for layer in layers]
    was_training = base.training
    for layer in layers:
        layer._disable_adapters = adapter is None
        if adapter is not None:
            layer._active_adapter = [adapter]
    if base.training != training:
        base.train(training)
    try:
        yield
    finally:
        for layer, (active, disabled) in zip(layers, saved):
            layer._active_adapter, layer._disable_adapters = active, disabled
        if base.training != was_training:
            base.train(was_training)


class LoRAView(nn.Module):
    """One adapter of a shared LoRA base, usable wherever a network is (adapter None: the frozen base itself).

    Registered submodules are only this adapter's A/B (and dropout) modules, so parameters(), state_dict(),
    requires_grad_() and .to() touch nothing else; the base is held unregistered (its owner, the FastGenModel, moves
    and broadcasts it). forward / sample run the base with this adapter active; any other attribute (noise_scheduler,
    net_pred_type, encoders, ...) is the base's.
    """

    def __init__(self, base: nn.Module, adapter: str | None):
        super().__init__()
        object.__setattr__(self, "base", base)  # not a submodule: see the class docstring
        object.__setattr__(self, "tuner_layers", [layer for _, layer in lora_layers(base)])
        self.adapter = adapter
        self.lora = nn.ModuleDict()
        if adapter is None:
            return
        for path, layer in lora_layers(base):
            parts = {n: getattr(layer, n)[adapter] for n in (*layer.adapter_layer_names, "lora_dropout")
                     if isinstance(getattr(layer, n, None), (nn.ModuleDict, nn.ParameterDict))
                     and adapter in getattr(layer, n)}
            if parts:
                self.lora[path.replace(".", "__")] = nn.ModuleDict(parts)
        if not len(self.lora):
            raise ValueError(f"adapter '{adapter}' was not found in {type(base).__name__}")

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.__dict__["base"], name)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with activated(self.base, self.tuner_layers, self.adapter, self.training):
            return self.base(*args, **kwargs)

    def sample(self, *args: Any, **kwargs: Any) -> Any:
        with activated(self.base, self.tuner_layers, self.adapter, self.training):
            return self.base.sample(*args, **kwargs)

    def base_state_dict(self) -> dict[str, torch.Tensor]:
        """The base's weights under the names an un-adapted network of the same class uses (no adapter tensors)."""
        return base_state_dict(self.base)

    def extra_repr(self) -> str:
        return f"adapter={self.adapter!r}, base={type(self.base).__name__}, layers={len(self.lora)}"


def base_state_dict(base: nn.Module) -> dict[str, torch.Tensor]:
    """State dict of a LoRA-injected `base` without adapter tensors, `.base_layer` removed from the names."""
    adapter_prefixes = tuple(f"{path}.{n}." for path, layer in lora_layers(base)
                             for n in (*layer.adapter_layer_names, "lora_dropout"))
    return {key.replace(".base_layer.", "."): value for key, value in base.state_dict().items()
            if not key.startswith(adapter_prefixes)}


def copy_adapter(dst: LoRAView, src: LoRAView) -> None:
    """dst's adapter tensors <- src's (same targets, rank): an EMA starts as the student."""
    dst.load_state_dict(src.state_dict())


def adapter_weights(view: LoRAView, prefix_strip: str = "") -> dict[str, torch.Tensor]:
    """This adapter's tensors under peft's (and diffusers' LoRA files') names, `<module path>.lora_A.weight`, with
    `prefix_strip` removed from the front of each module path (e.g. the path of the diffusers denoiser in a wrapper).
    """
    weights = {}
    for path, layer in lora_layers(view.base):
        if prefix_strip:
            if not path.startswith(prefix_strip):
                continue
            path = path[len(prefix_strip):]
        for n in layer.adapter_layer_names:
            container = getattr(layer, n)
            if view.adapter in container:
                for key, value in container[view.adapter].state_dict().items():
                    weights[f"{path}.{n}.{key}"] = value
    return weights


def lora_scale_settings(view: LoRAView) -> tuple[int, float]:
    """(rank, alpha) of the view's adapter (the same on every layer: one LoRAConfig builds it)."""
    _, layer = lora_layers(view.base)[0]
    return int(layer.r[view.adapter]), float(layer.lora_alpha[view.adapter])
