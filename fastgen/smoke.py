"""`train.py --config=PATH --smoke`: run any config for 2 iterations on a laptop CPU, in seconds.

The run keeps what the config means -- the same method, network and discriminator classes, callbacks and loader
keys -- and shrinks only what makes it big:
  * every network the model config names is rebuilt at the tiny size its class declares
    (`FastGenNetwork.smoke_overrides(kwargs)`), pretrained weights skipped;
  * discriminator heads are fitted to the tiny teacher's real features: smoke probes the teacher once and passes
    the feature shapes to `Discriminator.smoke_overrides(kwargs, feature_shapes)`;
  * `model.input_shape` shrinks to SMOKE_SPATIAL_SIZE per spatial side (networks that encode raw pixel batches on
    the fly: to the shape of their tiny encoders' latents of the synthetic batch, so noise and data agree);
  * the data loader is replaced by `SmokeLoader`, which yields the batches of the loader class's own
    `smoke_batch(kwargs, batch_size)` (the real keys and dtypes at the reduced size); `kwargs` are the loader
    config's plus `input_shape` (the tiny model.input_shape) and, when the loader config leaves it unset,
    `label_dim` (the student's); tensor files are sized by `sample_shapes` (teacher paths: as many states as the
    student's t_list, which a k-step KD student needs at least);
  * sampling steps capped at 2 (a student's explicit t_list is kept);
  * 2 iterations of batch 2 on one CPU process in float32 (DDP/FSDP, AMP, S3 and W&B off), one checkpoint and
    config.yaml under a fresh temporary output root, which is printed and kept for inspection.
Each change is printed as one line. A class that declares no tiny size is a usage error naming it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from typing import Any

import attrs
import torch
from omegaconf import DictConfig, OmegaConf

from fastgen.configs.config_utils import ConfigError
from fastgen.networks.discriminators import Discriminator
from fastgen.networks.network import SMOKE_SPATIAL_SIZE
from fastgen.utils import LazyCall as L
from fastgen.utils import instantiate, locate

SMOKE_ITERATIONS = 2
SMOKE_BATCH_SIZE = 2
SMOKE_SAMPLE_STEPS = 2  # at most this many sampling steps (a 1-step student keeps 1)
MAX_PROBED_FEATURES = 256  # probing stops at the first index a network rejects
SMOKE_LOADER = "fastgen.smoke.SmokeLoader"


class SmokeError(ConfigError):
    """A config --smoke cannot shrink (a ConfigError: the CLI reports it in one line, exit 2)."""


def _short(value: Any, limit: int = 60) -> str:
    if isinstance(value, DictConfig):
        value = OmegaConf.to_container(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(str(k) for k in value) + "}" if len(repr(value)) > limit else repr(value)
    text = repr(list(value) if isinstance(value, tuple) else value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _set(node: Any, key: str, value: Any, label: str, lines: list[str]) -> None:
    """Set node.key (attrs node or DictConfig) and record 'label key old -> new' when it changes."""
    old = node.get(key, "<default>") if isinstance(node, DictConfig) else getattr(node, key)
    if isinstance(old, DictConfig):
        old = OmegaConf.to_container(old)
    if old == value:
        return
    if isinstance(node, DictConfig):
        node[key] = value
    else:
        setattr(node, key, value)
    lines.append(f"{label} {key} {_short(old)} -> {_short(value)}")


def _kwargs(node: DictConfig) -> dict:
    return {k: v for k, v in OmegaConf.to_container(node).items() if k != "_target_"}


def _target(node: Any):
    """(name, located object) of a LazyCall node, or None when `node` is not one."""
    if not isinstance(node, DictConfig) or "_target_" not in node:
        return None
    target = node["_target_"]
    obj = locate(target) if isinstance(target, str) else target
    return getattr(obj, "__name__", str(target)), obj


def tiny_input_shape(shape) -> list[int]:
    """[C, (T,) H, W] -> channels kept, H and W at most SMOKE_SPATIAL_SIZE, frames at most 2; vectors unchanged."""
    shape = [int(d) for d in shape]
    if len(shape) < 3:
        return shape
    return [shape[0], *(min(d, 2) for d in shape[1:-2]), *(min(d, SMOKE_SPATIAL_SIZE) for d in shape[-2:])]


# --------------------------------------------------------------------------------------------- run settings
def _run_settings(config, output_root: str, lines: list[str]) -> None:
    trainer, model, ckpt = config.trainer, config.model, config.trainer.checkpointer
    for key, value in (("max_iter", SMOKE_ITERATIONS), ("save_ckpt_iter", SMOKE_ITERATIONS),
                       ("logging_iter", SMOKE_ITERATIONS),
                       ("validation_iter", SMOKE_ITERATIONS), ("ddp", False), ("fsdp", False),
                       ("fsdp_cpu_offload", False), ("batch_size_global", None), ("grad_accum_rounds", 1)):
        _set(trainer, key, value, "trainer:", lines)
    if config.dataloader_val is not None:
        _set(trainer, "global_vars", {**(trainer.global_vars or {}), "MAX_VAL_STEPS": 1}, "trainer:", lines)
    _set(ckpt, "use_s3", False, "checkpointer:", lines)
    _set(ckpt, "pretrained_ckpt_path", "", "checkpointer:", lines)
    _set(model, "device", "cpu", "model:", lines)
    _set(model, "precision", "float32", "model:", lines)
    for field in attrs.fields(type(model)):
        if field.name.startswith("precision_"):
            _set(model, field.name, None, "model:", lines)
    for key, value in (("grad_scaler_enabled", False), ("fsdp_meta_init", False), ("pretrained_model_path", ""),
                       ("pretrained_student_net_path", "")):
        _set(model, key, value, "model:", lines)
    if model.sample_t_cfg.t_list is None:  # a student's own t_list fixes its step count; keep it
        # multi-step sampling (the teacher's preview samples of SFT configs) only needs to run, not converge
        _set(model, "student_sample_steps", min(model.student_sample_steps, SMOKE_SAMPLE_STEPS), "model:", lines)
    _set(config.log_config, "wandb_mode", "disabled", "log:", lines)
    os.environ["WANDB_MODE"] = "disabled"  # $WANDB_MODE would override log_config.wandb_mode
    os.environ["FASTGEN_OUTPUT_ROOT"] = output_root  # log_config.save_path reads it
    ckpt.save_dir = os.path.join(config.log_config.save_path, "checkpoints")
    lines.append(f"output root: {output_root} (run dir {config.log_config.save_path}; kept, delete it when done)")


# ------------------------------------------------------------------------------------------------- networks
def _shrink(node: DictConfig, label: str, overrides: dict, lines: list[str]) -> None:
    name = _target(node)[0]
    before = len(lines)
    for key, value in overrides.items():
        _set(node, key, value, f"{label}: {name}", lines)
    if len(lines) == before:
        lines.append(f"{label}: {name} already tiny")


def _network_fields(model) -> list[tuple[str, DictConfig, Any]]:
    """(field, LazyCall, class) of every network / discriminator the model config names."""
    from torch import nn

    found = []
    for field in attrs.fields(type(model)):
        located = _target(getattr(model, field.name))
        if located is None:
            continue
        obj = located[1]
        if hasattr(obj, "smoke_overrides") or (isinstance(obj, type) and issubclass(obj, nn.Module)):
            found.append((field.name, getattr(model, field.name), obj))
    return found


def _call_overrides(obj, *args) -> dict:
    if not hasattr(obj, "smoke_overrides"):
        raise SmokeError(f"{obj.__module__}.{obj.__name__} declares no tiny size for --smoke: give it a classmethod "
                         "smoke_overrides (see FastGenNetwork.smoke_overrides)")
    try:
        return dict(obj.smoke_overrides(*args))
    except NotImplementedError as error:
        raise SmokeError(str(error)) from None


def _feature_source(model) -> DictConfig:
    """The network config whose features feed the discriminator (as the method picks it)."""
    teacher = model.teacher if model.teacher is not None else model.net
    if getattr(model, "gan_feature_source", "teacher") == "fake_score":
        return getattr(model, "fake_score_net", None) or teacher
    return teacher


def _slice(value: Any, n: int) -> Any:
    if isinstance(value, torch.Tensor):
        return value[:n]
    if isinstance(value, Mapping):
        return {k: _slice(v, n) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return value[:n]
    return value


@torch.no_grad()
def probe_feature_shapes(net, input_shape, condition=None) -> list[tuple]:
    """Per-sample shape of every feature `net` returns (indices 0, 1, ... until it rejects one)."""
    net = net.eval()
    x = torch.randn(1, *input_shape)
    schedule = net.noise_scheduler
    t = torch.full([1], 0.5 * (schedule.min_t + schedule.max_t), dtype=torch.float64)
    shapes: list[tuple] = []
    for index in range(MAX_PROBED_FEATURES):
        try:
            features = net(x, t, condition=condition, feature_indices=[index], return_features_early=True)
        except (ValueError, IndexError) as error:
            if index == 0:
                raise SmokeError(f"{type(net).__name__} gave no feature 0 for the discriminator: {error}") from None
            break
        shapes.append(tuple(int(d) for d in features[0].shape[1:]))
    return shapes


def _fit_latent_channels(model, tiny_net, lines: list[str]) -> None:
    """Latent families whose tiny VAE has fewer channels than the real one (Flux/Qwen: 16 -> 4)."""
    adapter = getattr(tiny_net, "adapter", None)
    if adapter is not None and hasattr(adapter, "latent_channels"):
        channels = int(adapter.latent_channels(tiny_net))
        if channels != model.input_shape[0]:
            _set(model, "input_shape", [channels, *model.input_shape[1:]], "model:", lines)


def _fit_encoded_shape(model, tiny_net, batch: Mapping | None, lines: list[str]) -> None:
    """Networks that encode raw pixel batches on the fly: model.input_shape := the shape of the tiny encoders'
    latents of the synthetic batch, so the student's noise matches the data and the conditions built from it
    (image-to-video: the first frame's latent)."""
    if not batch or not model.enable_preprocessors or not hasattr(tiny_net, "preprocess_batch"):
        return
    tiny_net.init_preprocessors()
    real = tiny_net.preprocess_batch(dict(_slice(batch, 1))).get("real")
    if isinstance(real, torch.Tensor) and list(real.shape[1:]) != list(model.input_shape):
        _set(model, "input_shape", list(real.shape[1:]), "model:", lines)


def _probe_condition(net, batch: Mapping, enable_preprocessors: bool):
    """The condition the net sees in training: the batch's, encoded first when the net encodes on the fly."""
    if enable_preprocessors and hasattr(net, "preprocess_batch"):
        if hasattr(net, "init_preprocessors"):
            net.init_preprocessors()
        batch = net.preprocess_batch(dict(batch))
    return batch.get("condition")


# --------------------------------------------------------------------------------------------------- data
class SmokeLoader:
    """Stands in for the config's loader: batches from `<loader>.smoke_batch(loader_kwargs, batch_size)` forever."""

    def __init__(self, loader: str, loader_kwargs: dict, batch_size: int, sampler_start_idx: int | None = None):
        self.factory = locate(loader)
        self.loader_kwargs = _rename_keys(dict(loader_kwargs), ESCAPED_TARGET_KEY, "_target_")
        self.batch_size = int(batch_size)
        self.position = int(sampler_start_idx or 0)

    def __iter__(self):
        while True:
            batch = self.factory.smoke_batch(dict(self.loader_kwargs), self.batch_size)
            self.position += self.batch_size
            yield batch

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.position = int(state["position"])


ESCAPED_TARGET_KEY = "_smoke_target_"


def _rename_keys(value: Any, old: str, new: str) -> Any:
    """`value` with every mapping key `old` renamed to `new`, at any depth. The SmokeLoader's kwargs hold nested
    loader configs (e.g. ZipLoader's primary/secondary) with `_target_` renamed to ESCAPED_TARGET_KEY, so that
    instantiating the SmokeLoader passes them to `smoke_batch` as configs instead of building the real loaders."""
    if isinstance(value, Mapping):
        return {(new if k == old else k): _rename_keys(v, old, new) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rename_keys(v, old, new) for v in value]
    return value


def _student_label_dim(net: DictConfig) -> int | None:
    for key in ("label_dim", "num_classes"):
        if net.get(key) is not None:
            return int(net[key])
    return None


def student_path_states(model) -> int:
    """How many teacher-path states a k-step student needs at least (its t_list's length, k + 1): the path grid
    must contain the student's grid (KD's path_inputs)."""
    t_list = model.sample_t_cfg.t_list
    return len(t_list) if t_list is not None else int(model.student_sample_steps) + 1


def _tiny_sample_shapes(kwargs: dict, input_shape: list[int], tiny_net, path_states: int) -> dict:
    """`sample_shapes` for loaders that read tensor files (latents, noise, paths, text embeddings) at the tiny size:
    data-shaped keys take the tiny input shape, teacher paths `path_states` of them, embeddings the tiny network's
    own text-encoder output shapes."""
    shapes, embeddings = {}, None
    for key in [*(kwargs.get("key_map") or {}), *(kwargs.get("files_map") or {})]:
        if key in ("real", "noise"):
            shapes[key] = list(input_shape)
        elif key == "path":
            shapes[key] = [path_states, *input_shape]
        elif key in ("condition", "neg_condition"):
            if embeddings is None:
                embeddings = _text_embedding_shapes(tiny_net)
            shapes[key] = embeddings
    return shapes


def _text_embedding_shapes(net) -> dict:
    if not hasattr(net, "encode_text"):
        raise SmokeError(f"the loader reads text embeddings but {type(net).__name__} has no encode_text to size them")
    if hasattr(net, "init_preprocessors"):
        net.init_preprocessors()
    encoded = net.encode_text(["smoke"])
    return {name: list(value.shape[1:]) for name, value in encoded.items()}


def _smoke_loader(node: DictConfig, input_shape: list[int], label_dim: int | None, tiny_net,
                  path_states: int = 2) -> tuple[DictConfig, dict]:
    """The SmokeLoader config replacing loader config `node`, and one synthetic batch (for printing/probing)."""
    name, obj = _target(node)
    if not hasattr(obj, "smoke_batch"):
        raise SmokeError(f"data loader {name} declares no synthetic batch for --smoke: give it a classmethod "
                         "smoke_batch(cls, kwargs, batch_size) -> dict (see fastgen.smoke)")
    kwargs = {**_kwargs(node), "input_shape": list(input_shape)}
    if kwargs.get("label_dim") is None and label_dim is not None:
        kwargs["label_dim"] = label_dim
    if "sample_shapes" in kwargs:
        kwargs["sample_shapes"] = _tiny_sample_shapes(kwargs, input_shape, tiny_net, path_states)
    kwargs.pop("batch_size", None)
    target = node["_target_"] if isinstance(node["_target_"], str) else f"{obj.__module__}.{obj.__qualname__}"
    batch = obj.smoke_batch(dict(kwargs), SMOKE_BATCH_SIZE)
    escaped = _rename_keys(kwargs, "_target_", ESCAPED_TARGET_KEY)
    return L(SMOKE_LOADER)(loader=target, loader_kwargs=escaped, batch_size=SMOKE_BATCH_SIZE), batch


def _describe(batch: Mapping) -> str:
    parts = []
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            parts.append(f"{key} {list(value.shape)} {str(value.dtype).replace('torch.', '')}")
        elif isinstance(value, Mapping):
            parts.append(f"{key} {{{', '.join(map(str, value))}}}")
        else:
            parts.append(f"{key} {type(value).__name__}[{len(value) if hasattr(value, '__len__') else '?'}]")
    return ", ".join(parts)


# ------------------------------------------------------------------------------------------------- entry
def apply_smoke(config, output_root: str | None = None) -> list[str]:
    """Shrink `config` in place for a --smoke run (see the module docstring); returns the printed lines."""
    lines: list[str] = []
    output_root = output_root or tempfile.mkdtemp(prefix="fastgen_smoke_")
    _run_settings(config, output_root, lines)
    model = config.model
    _set(model, "input_shape", tiny_input_shape(model.input_shape), "model:", lines)

    discriminators = []
    for field, node, obj in _network_fields(model):
        if isinstance(obj, type) and issubclass(obj, Discriminator):
            discriminators.append((field, node, obj))
        else:
            _shrink(node, field, _call_overrides(obj, _kwargs(node)), lines)

    tiny_net = instantiate(model.net).to(torch.float32)
    _fit_latent_channels(model, tiny_net, lines)
    batch = None
    for key in ("dataloader_train", "dataloader_val"):
        node = getattr(config, key)
        if node is None:
            continue
        real = f"{_target(node)[0]}"
        smoke_node, batch_k = _smoke_loader(node, model.input_shape, _student_label_dim(model.net), tiny_net,
                                            student_path_states(model))
        setattr(config, key, smoke_node)
        batch = batch_k if key == "dataloader_train" else batch
        lines.append(f"data: {key} {real} -> synthetic batches of {SMOKE_BATCH_SIZE}: {_describe(batch_k)}")

    _fit_encoded_shape(model, tiny_net, batch, lines)
    for field, node, obj in discriminators:
        source_config = _feature_source(model)
        source = tiny_net if source_config == model.net else instantiate(source_config).to(torch.float32)
        condition = _probe_condition(source, _slice(batch, 1) if batch is not None else {},
                                     model.enable_preprocessors)
        shapes = probe_feature_shapes(source, model.input_shape, condition)
        lines.append(f"{field}: probed {type(source).__name__} features {[list(s) for s in shapes]}")
        _shrink(node, field, _call_overrides(obj, _kwargs(node), shapes), lines)

    for line in lines:
        print(f"smoke: {line}", flush=True)
    return lines
