"""HFNetwork: one FastGenNetwork around a diffusers denoiser (composition), specialised per family by an adapter.

The diffusers model is a submodule (`self.denoiser`) whose forward we call unchanged; we reach inside only with
forward hooks (feature taps) and small added modules (the optional logvar head). What differs between families
lives in a `FamilyAdapter` (adapters.py): component classes and subfolders, how the condition mapping and latents
are packed into the model's call, its time convention, its feature blocks, its sampling grid and prompt encoding.

Encoders (VAE, text encoders, tokenizers) are NOT registered submodules: they sit in a frozen holder, so they are
never in `state_dict()` (never checkpointed), never sharded, not copied into EMA networks (deepcopy shares them),
not cast by `net.to(dtype)`, and can stay on CPU (`encoders_device="cpu"`) while the denoiser trains elsewhere.
Their dtype is `encoders_dtype`: they are frozen and only produce conditions, so bf16 text encoders are what the
model makers run too, and they halve the largest part of a video model's memory (UMT5-XXL is ~22 GB per rank in fp32).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from fastgen.networks.hf.loading import build_component, load_architecture, load_component, load_config
from fastgen.networks.hf.r_embedding import TIME_COND_TYPES, add_r_embedding, make_r_embedder, r_time
from fastgen.networks.network import FastGenNetwork


class FrozenEncoders(dict):
    """name -> frozen component (eval, requires_grad False). Shared, never copied: deepcopy returns itself."""

    def __deepcopy__(self, memo):
        return self

    device = torch.device("cpu")  # where the modules are (they are built on the CPU)
    pipeline = None  # the encoder-only diffusers pipeline, built on first use

    def to(self, device) -> FrozenEncoders:
        for comp in self.values():
            if isinstance(comp, nn.Module):
                comp.to(device)
        self.device = torch.device(device)
        return self


class _StopForward(Exception):
    """Raised by the last feature tap when return_features_early: the rest of the forward is skipped."""


class FeatureTaps:
    """Forward hooks on the adapter's feature blocks, collecting spatial maps for the requested indices."""

    def __init__(self, blocks: list[nn.Module], indices, to_map, early: bool):
        self.indices = sorted(indices or ())
        for i in self.indices:
            if not 0 <= i < len(blocks):
                raise ValueError(f"feature index {i} out of range: this network has {len(blocks)} feature blocks")
        self.blocks, self.to_map, self.early = blocks, to_map, early
        self.features: dict[int, torch.Tensor] = {}
        self.handles = []

    def __enter__(self) -> FeatureTaps:
        for i in self.indices:
            self.handles.append(self.blocks[i].register_forward_hook(self._hook(i)))
        return self

    def _hook(self, i):
        def hook(module, args, output):
            self.features[i] = self.to_map(output)
            if self.early and len(self.features) == len(self.indices):
                raise _StopForward

        return hook

    def __exit__(self, *exc) -> bool:
        for h in self.handles:
            h.remove()
        return exc[0] is _StopForward

    def result(self) -> list[torch.Tensor]:
        return [self.features[i] for i in self.indices]


class HFNetwork(FastGenNetwork):
    """A diffusers denoiser as a FastGenNetwork. Subclasses set `adapter` (a FamilyAdapter instance).

    Args:
        model_id: hub id ("org/name") or a local folder in the diffusers layout (unet/, transformer/, vae/, ...).
        load_pretrained: load weights with from_pretrained; False builds from configs with random weights.
        component_configs: component name -> config dict; given, everything builds from it (no hub access).
        enable_preprocessors: build the VAE / text encoders now (else on `init_preprocessors()`).
        encoders_device: where encoders run ("cpu" keeps them off the accelerator); None follows the inputs.
        encoders_dtype: the encoders' dtype (`encoder_dtype`): "bfloat16" for every encoder but the VAE, or a
            mapping {"text_encoder": "bfloat16", "vae": "float32", ...}; None keeps the checkpoint's / class's.
        enable_logvar_linear: add the small logvar head (sCM's adaptive weighting) on a Fourier embedding of t.
        r_timestep: add MeanFlow's second time r (r_embedding.py: a zero-output copy of the denoiser's time
            embedder, `r_embedder_init="zero"`, adding its embedding of r ("abs") or t - r ("diff",
            `time_cond_type`) to the time embedding); families whose adapter names no time embedder refuse it.
    """

    adapter = None  # set by each family

    def __init__(self, model_id: str, load_pretrained: bool = True, component_configs: dict | None = None,
                 enable_preprocessors: bool = False, encoders_device: str | None = None,
                 encoders_dtype: str | dict | None = None, enable_logvar_linear: bool = False, net_pred_type: str | None = None,
                 schedule_type: str | None = None, r_timestep: bool = False, r_embedder_init: str = "zero",
                 time_cond_type: str = "abs", **kwargs: Any):
        adapter = self.adapter
        if adapter is None:
            raise TypeError("HFNetwork needs a family: use SD15, SDXL, Flux, QwenImage, Wan or CogVideoX (fastgen.networks.hf)")
        family_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in adapter.extra_kwargs}
        component_configs = dict(component_configs or {})
        scheduler_config = _scheduler_config(adapter, str(model_id), component_configs)
        if schedule_type in (None, adapter.schedule_type):  # explicit kwargs win over the scheduler config's
            kwargs = {**adapter.schedule_kwargs(scheduler_config), **kwargs}
        super().__init__(net_pred_type=net_pred_type or adapter.native_pred_type(scheduler_config),
                         schedule_type=schedule_type or adapter.schedule_type, **kwargs)
        self.model_id, self.load_pretrained = str(model_id), bool(load_pretrained)
        self.component_configs, self.scheduler_config = component_configs, scheduler_config
        self.encoders_device = encoders_device
        self.encoders_dtype = encoders_dtype
        for name in adapter.encoder_names:  # a bad dtype name fails at construction, not at the first batch
            encoder_dtype(encoders_dtype, name)
        self.options = {**adapter.extra_kwargs, **family_kwargs}
        self.denoiser = self._build(adapter.denoiser_name)
        if self._is_in_meta_context():
            adapter.rebuild_plain_tensors(self.denoiser)
            _check_no_plain_meta_tensors(self.denoiser)
        self.logvar_linear = nn.Linear(adapter.logvar_features, 1) if enable_logvar_linear else None
        if self.logvar_linear is not None:
            nn.init.zeros_(self.logvar_linear.weight)
            nn.init.zeros_(self.logvar_linear.bias)
        self.r_timestep, self.time_cond_type = bool(r_timestep), time_cond_type
        self.r_embedder = self._make_r_embedder(r_embedder_init) if self.r_timestep else None
        self.encoders = FrozenEncoders()
        if enable_preprocessors:
            self.init_preprocessors()

    # -- building / loading --
    def _make_r_embedder(self, init: str) -> nn.Module:
        if self.time_cond_type not in TIME_COND_TYPES:
            raise ValueError(f"time_cond_type={self.time_cond_type!r}; expected one of {TIME_COND_TYPES}")
        time_embedder = self.adapter.time_embedder(self.denoiser)
        if time_embedder is None:
            raise ValueError(f"{type(self).__name__} has no r embedding (r_timestep=True is supported by the Wan "
                             "family)")
        return make_r_embedder(time_embedder, init)

    def _class_of(self, name: str) -> tuple[str, str]:
        return self.adapter.components[name]

    def _build(self, name: str, dtype: torch.dtype | None = None):
        """One component: from component_configs, from its config under the meta device, or from_pretrained
        (read in `dtype` when given, so a large encoder never exists in fp32)."""
        cls_path, subfolder = self._class_of(name)
        if name.startswith("tokenizer"):  # a tokenizer "config" is the spec of tiny.build_tokenizer
            if name in self.component_configs:
                from fastgen.networks.hf.tiny import build_tokenizer

                return build_tokenizer(**self.component_configs[name])
            return load_component(cls_path, self.model_id, subfolder)
        if name in self.component_configs:
            return build_component(cls_path, self.component_configs[name])
        if not self.load_pretrained or self._is_in_meta_context():
            # the architecture only: random weights, or none at all under the meta device (ranks > 0 of
            # fsdp_meta_init; rank 0 loads and FSDP2 broadcasts its weights)
            return load_architecture(cls_path, self.model_id, subfolder)
        return load_component(cls_path, self.model_id, subfolder, dtype=dtype)

    def init_preprocessors(self) -> None:
        """Build the frozen encoders (VAE, text encoders, tokenizers) once; idempotent.

        Always with real weights on the CPU, even inside `torch.device("meta")` (ranks > 0 of fsdp_meta_init): the
        encoders are not in state_dict, so FSDP's broadcast from rank 0 never reaches them; every rank loads its own.
        """
        for name in self.adapter.encoder_names:
            if name in self.encoders:
                continue
            dtype = encoder_dtype(self.encoders_dtype, name)
            with torch.device("cpu"):
                comp = self._build(name, dtype)
            if isinstance(comp, nn.Module):
                comp.eval().requires_grad_(False).to(self.encoders.device)
                if dtype is not None and getattr(comp, "dtype", None) != dtype:  # (from_pretrained read it so)
                    comp.to(dtype)  # apart: diffusers' to() warns whenever it is given a dtype
            self.encoders[name] = comp
        if self.encoders_device is not None:
            self.encoders.to(self.encoders_device)

    @property
    def has_preprocessors(self) -> bool:
        return all(name in self.encoders for name in self.adapter.encoder_names)

    def _require_encoders(self, what: str) -> None:
        if not self.has_preprocessors:
            raise RuntimeError(f"{type(self).__name__}.{what} needs the encoders: set model.enable_preprocessors=True "
                               "or call net.init_preprocessors()")

    # -- encoders (no_grad, on encoders_device; outputs on `device`) --
    def _enc_device(self, device) -> torch.device:
        """Where the encoders run: `encoders_device`, else beside the inputs. They are not submodules (net.to()
        does not move them), so they are moved here, once per change of device."""
        target = torch.device(self.encoders_device if self.encoders_device is not None else device)
        if self.encoders.device != target:
            self.encoders.to(target)
        return target

    def pipeline(self, with_denoiser: bool = False):
        """The family's diffusers pipeline over our components (the denoiser only when asked): the library's own
        prompt encoding and export use it."""
        self._require_encoders("pipeline")
        if with_denoiser:
            return self.adapter.make_pipeline(self, True)
        if self.encoders.pipeline is None:  # built once: prompt encoding runs every training step
            self.encoders.pipeline = self.adapter.make_pipeline(self, False)
        return self.encoders.pipeline

    @torch.no_grad()
    def encode_text(self, prompts: list[str] | str, device=None) -> dict[str, torch.Tensor]:
        """Prompts -> the condition mapping this family's denoiser takes (the pipeline's encode_prompt)."""
        self._require_encoders("encode_text")
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        device = device or self.denoiser.device
        cond = self.adapter.encode_prompt(self, self.pipeline(), prompts, self._enc_device(device))
        return {k: v.to(device) for k, v in cond.items()}

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor, sample: bool = True, generator=None) -> torch.Tensor:
        """Images in [-1, 1] [B, 3, H, W] -> normalised latents (the VAE's scaling / shift applied)."""
        self._require_encoders("encode_images")
        vae = self.encoders["vae"]
        x = images.to(self._enc_device(images.device), dtype=vae.dtype)
        z = self.adapter.vae_encode(vae, x, sample, generator)
        return z.to(images.device)

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents -> images in [-1, 1]."""
        self._require_encoders("decode_latents")
        vae = self.encoders["vae"]
        z = latents.to(self._enc_device(latents.device), dtype=vae.dtype)
        return self.adapter.vae_decode(vae, z).to(latents.device)

    def preprocess_batch(self, data: dict) -> dict:
        """Encode on the fly what the batch gives raw: pixel `real` -> latents (raw kept as `real_raw`), list[str]
        `condition` / `neg_condition` -> embeddings (raw kept as `*_raw`); a missing neg_condition becomes the
        empty prompt's embeddings (CFG's negative). Latents and embeddings already in the batch pass unchanged."""
        raw_text = [k for k in ("condition", "neg_condition") if _is_text(data.get(k))]
        if not self.has_preprocessors:
            if raw_text:
                raise ValueError(f"the batch's {raw_text[0]} holds prompts but {type(self).__name__} has no text "
                                 "encoders: set model.enable_preprocessors=True or load precomputed embeddings")
            return data
        data = dict(data)
        real = data.get("real")
        latent_channels = self.adapter.latent_channels(self)
        if isinstance(real, torch.Tensor) and real.ndim == self.adapter.latent_ndim and real.shape[1] != latent_channels:
            data["real_raw"] = real
            data["real"] = self.encode_images(real).to(real.dtype)
        device = real.device if isinstance(real, torch.Tensor) else None
        for key in raw_text:
            data[f"{key}_raw"] = data[key]
            data[key] = self.encode_text(data[key], device=device)
        if "neg_condition" not in data and isinstance(data.get("condition"), dict):
            batch = len(data["condition_raw"]) if "condition_raw" in data else _batch_of(data["condition"])
            data["neg_condition"] = self.adapter.negative_condition(self, batch, device)
        return self.adapter.complete_batch(self, data)

    # -- forward --
    def feature_blocks(self) -> list[nn.Module]:
        """The blocks whose outputs are the discriminator features (see CONTRACTS.md for the indexing)."""
        return self.adapter.feature_blocks(self.denoiser)

    def model_timestep(self, t: torch.Tensor) -> torch.Tensor:
        """Our schedule time -> the denoiser's timestep input."""
        return self.adapter.model_timestep(self, t)

    def forward(self, x_t, t, condition=None, r=None, feature_indices=None, return_features_early=False,
                return_logvar=False, fwd_pred_type=None, **kwargs):
        if r is not None and self.r_embedder is None:
            raise ValueError(f"{type(self).__name__} has no second-time (r) embedding; MeanFlow-style methods need a "
                             "network with r_timestep=True")
        if return_features_early and not feature_indices:
            return []  # no feature requested: nothing to compute
        self.adapter.check_latents(self, x_t)
        self.adapter.check_condition(self, condition)
        t = self.expand_t(t, x_t)
        inputs = self.adapter.model_inputs(self, x_t.to(self.denoiser.dtype), t, condition)
        taps = FeatureTaps(self.feature_blocks(), feature_indices, self.adapter.feature_map_fn(self, x_t),
                           return_features_early)
        with taps, self._r_embedding(x_t, t, r):
            raw = self.denoiser(**inputs, return_dict=False)[0]
        if return_features_early:
            return taps.result()
        out = self.adapter.native_output(self, raw, x_t).to(x_t.dtype)
        out = self.adapter.convert_output(self, x_t, out, t, condition, fwd_pred_type)
        logvar = None
        if return_logvar:
            if self.logvar_linear is None:
                raise ValueError(f"return_logvar needs {type(self).__name__}(enable_logvar_linear=True)")
            logvar = self.logvar_linear(_fourier(t, self.logvar_linear.in_features).to(self.logvar_linear.weight))
        return self.pack_outputs(out, taps.result() if feature_indices else None, logvar, feature_indices,
                                 return_logvar)

    def _r_embedding(self, x_t, t, r):
        """The r embedding added to the denoiser's time embedding during the call (nothing without r_timestep)."""
        if self.r_embedder is None:
            return contextlib.nullcontext()
        timestep = self.adapter.time_input(self, x_t, r_time(t, r, self.time_cond_type))
        return add_r_embedding(self.adapter.time_embedder(self.denoiser), self.r_embedder,
                               self.adapter.time_features(self, timestep))

    # -- teacher sampling with the scheduler the model ships with --
    @torch.no_grad()
    def sample(self, noise, condition=None, neg_condition=None, guidance_scale=None, num_steps=50, t_list=None,
               sampler_type=None, **net_kwargs):
        """Deterministic sampling on the shipped scheduler's grid (DDIM / Euler in our schedule; both are the same
        update x' = alpha(t') x0 + sigma(t') eps), classifier-free guidance when guidance_scale is given.

        Starts from `noise` unscaled, as the diffusers pipelines do. condition / neg_condition may be prompts
        (encoded here) or embedding mappings; a missing neg_condition is the empty prompt. An explicit t_list (ending
        in 0, the clean sample) replaces the scheduler's grid. `sampler_type` (the EDM-family choice euler / heun)
        does not apply: the shipped scheduler's first-order update is used. The stochastic "ancestral" choice is
        refused rather than silently sampled deterministically.
        """
        if sampler_type == "ancestral":
            raise ValueError("sampler_type='ancestral' (the reverse-SDE sampler) is implemented for FastGenNetwork "
                             "schedules only; diffusers-backed networks sample with their scheduler's deterministic "
                             "update: leave sampler_type unset")
        condition, neg_condition = self._sampling_conditions(noise, condition, neg_condition, guidance_scale)
        if t_list is None and getattr(self.adapter, "steps_with_scheduler", False):  # video: the shipped scheduler
            return self.adapter.sample(self, noise, condition, neg_condition, guidance_scale, num_steps, **net_kwargs)
        if t_list is None:
            t_list, final_to_x0 = self.adapter.sampling_t_list(self, num_steps, noise)
        else:
            final_to_x0 = True
        t_list = torch.as_tensor(t_list, dtype=torch.float64, device=noise.device)
        sched = self.noise_scheduler
        x = noise.to(torch.float64)
        for i in range(len(t_list) - 1):
            t, t_next = t_list[i].expand(noise.shape[0]), t_list[i + 1]
            x0 = self.adapter.guided_x0(self, x.to(noise.dtype), t, condition, neg_condition, guidance_scale,
                                        **net_kwargs).to(torch.float64)
            if i == len(t_list) - 2 and final_to_x0:
                x = x0
            else:
                eps = sched.x0_to_eps(x, x0, t)
                x = sched.alpha(t_next) * x0 + sched.sigma(t_next) * eps
        return x.to(noise.dtype)

    def _sampling_conditions(self, noise, condition, neg_condition, guidance_scale):
        if isinstance(condition, (str, list, tuple)):
            condition = self.encode_text(condition, device=noise.device)
        if isinstance(neg_condition, (str, list, tuple)):
            neg_condition = self.encode_text(neg_condition, device=noise.device)
        if guidance_scale is not None and neg_condition is None:
            if not self.has_preprocessors:
                raise ValueError("guidance_scale needs neg_condition (or the encoders, for the empty prompt)")
            neg_condition = self.adapter.negative_condition(self, noise.shape[0], noise.device)
        return condition, neg_condition

    # -- distributed --
    def fsdp_units(self) -> list[nn.Module]:
        """The transformer / UNet blocks: each becomes one FSDP2 unit."""
        return self.adapter.fsdp_units(self.denoiser)

    @classmethod
    def smoke_overrides(cls, kwargs: dict) -> dict:
        """Tiny random components of the same family (tiny.py), no pretrained weights."""
        from fastgen.networks.hf.tiny import tiny_components

        return {"load_pretrained": False, "component_configs": tiny_components(cls.adapter.family)}


def encoder_dtype(spec: str | dict | None, name: str) -> torch.dtype | None:
    """The dtype of encoder `name` under `encoders_dtype`: None keeps what the checkpoint / class gives; a dtype
    name ("bfloat16") applies to every encoder but the VAE (its latents are the training data: keep them exact
    unless asked); a mapping {component name: dtype name} sets each one, the VAE included."""
    if spec is None or name.startswith("tokenizer"):
        return None
    if isinstance(spec, str):
        value = None if name == "vae" else spec
    else:
        value = dict(spec).get(name)
    if value is None:
        return None
    dtype = getattr(torch, str(value).removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"encoders_dtype: {value!r} for {name!r} is not a torch floating dtype name "
                         "(e.g. 'bfloat16', 'float16', 'float32')")
    return dtype


def _fourier(t: torch.Tensor, n: int) -> torch.Tensor:
    """[B] -> [B, n] sinusoidal features of t (t in [0, 1]), for the logvar head."""
    freqs = torch.exp(torch.linspace(0, 6, n // 2, dtype=torch.float64, device=t.device))
    ang = t.to(torch.float64)[:, None] * freqs[None]
    return torch.cat([ang.cos(), ang.sin()], dim=1)


def _scheduler_config(adapter, model_id: str, component_configs: dict) -> dict:
    """The scheduler the model ships with: component_configs["scheduler"]; the family default for other offline
    builds (component_configs without one); else scheduler/scheduler_config.json of the model."""
    if "scheduler" in component_configs:
        return dict(component_configs["scheduler"])
    if component_configs:
        return dict(adapter.default_scheduler_config)
    cls_path, subfolder = adapter.components["scheduler"]
    return load_config(cls_path, model_id, subfolder)


def _check_no_plain_meta_tensors(module: nn.Module) -> None:
    """Tensors kept as plain attributes stay on the meta device for good (to_empty and FSDP's broadcast only see
    parameters and buffers): refuse them, so a diffusers change that adds one fails here, not in a forward."""
    bad = [f"{name}.{key}" for name, sub in module.named_modules() for key, value in vars(sub).items()
           if isinstance(value, torch.Tensor) and value.is_meta]
    if bad:
        raise RuntimeError(f"meta-device build left plain tensor attributes on the meta device: {bad[:4]}; "
                           "teach the family adapter's rebuild_plain_tensors() to re-create them")


def _is_text(value) -> bool:
    return isinstance(value, str) or (isinstance(value, (list, tuple)) and bool(value) and isinstance(value[0], str))


def _batch_of(condition: dict) -> int:
    return next(v.shape[0] for v in condition.values() if isinstance(v, torch.Tensor))
