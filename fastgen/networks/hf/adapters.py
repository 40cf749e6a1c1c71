"""Family adapters: everything that differs between diffusers families, for HFNetwork (network.py) to use.

An adapter is stateless; its methods take the HFNetwork (`net`). Adding a family = one adapter subclass plus a
three-line HFNetwork subclass (families.py). Packing helpers (Flux / Qwen-Image 2x2 latent packing, image ids, time
ids) are the pipelines' own static methods, called, not copied. Tokenizers load by the concrete class the model
ships (AutoTokenizer would need a config.json the tokenizer folders lack, which fails offline).
"""

from __future__ import annotations

import torch
from torch import nn

from fastgen.networks.hf import schedules
from fastgen.networks.samplers import cfg_combine


class FamilyAdapter:
    family = "base"
    pred_type = "eps"
    schedule_type = "sd"
    pipeline_cls = ""
    denoiser_name = "unet"
    components: dict[str, tuple[str, str]] = {}  # name -> (class dotted path, subfolder)
    encoder_names: tuple[str, ...] = ()
    extra_kwargs: dict = {}  # family constructor options and their defaults
    condition_keys: tuple[str, ...] = ("prompt_embeds",)  # required keys of the condition mapping
    default_scheduler_config: dict = {}
    logvar_features = 128
    latent_ndim = 4  # [B, C, H, W]; the video families: 5 ([B, C, T, H, W])

    def native_pred_type(self, scheduler_config: dict) -> str:
        """What the denoiser predicts: the family's type (overridden where the scheduler config says)."""
        return self.pred_type

    def schedule_kwargs(self, scheduler_config: dict) -> dict:
        """Kwargs of our schedule that the shipped scheduler config fixes (CogVideoX: snr_shift_scale)."""
        return {}

    # -- shapes --
    def spatial_factor(self, net) -> int:
        return 1

    def latent_channels(self, net) -> int:
        return int(net.denoiser.config.in_channels)

    def vae_scale_factor(self, net) -> int:
        """Pixels per latent pixel: from the VAE's config when known, else 8 (every shipped family)."""
        cfg = net.component_configs.get("vae")
        if "vae" in net.encoders:
            cfg = net.encoders["vae"].config
        if cfg is None:
            return 8
        blocks = cfg.get("block_out_channels") or cfg.get("dim_mult")
        return 2 ** (len(blocks) - 1)

    def check_latents(self, net, x) -> None:
        f, c = self.spatial_factor(net), self.latent_channels(net)
        if x.ndim != 4 or x.shape[1] != c or x.shape[2] % f or x.shape[3] % f:
            raise ValueError(f"{type(net).__name__} takes latents [B, {c}, H, W] with H and W divisible by {f}; got "
                             f"{tuple(x.shape)} (image sizes must be divisible by {f * self.vae_scale_factor(net)})")

    def check_condition(self, net, condition) -> None:
        if not isinstance(condition, dict) or any(k not in condition for k in self.condition_keys):
            got = sorted(condition) if isinstance(condition, dict) else type(condition).__name__
            raise ValueError(f"{type(net).__name__} needs a condition mapping with keys {list(self.condition_keys)} "
                             f"(text embeddings: net.encode_text(prompts)); got {got}")

    # -- model call --
    def model_timestep(self, net, t):
        raise NotImplementedError

    def model_inputs(self, net, x, t, condition) -> dict:
        raise NotImplementedError

    def native_output(self, net, raw, x):
        return raw

    def convert_output(self, net, x_t, out, t, condition, fwd_pred_type):
        """The native prediction as fwd_pred_type (Cosmos video2world and Wan 2.2 I2V also pin their conditioning
        frames)."""
        return net.convert_output(x_t, out, t, fwd_pred_type)

    # -- MeanFlow's r embedding (r_embedding.py): families that support it name their time embedder --
    def time_embedder(self, denoiser) -> nn.Module | None:
        """The module whose output is the time embedding (the r embedding is added to it); None: no r support."""
        return None

    def time_input(self, net, x, t):
        """Our schedule time -> the `timestep` input of the denoiser for latents x."""
        return self.model_timestep(net, t)

    def time_features(self, net, timestep):
        """The denoiser's timestep input -> what its time embedder takes (sinusoidal features)."""
        raise NotImplementedError

    def feature_blocks(self, denoiser) -> list[nn.Module]:
        raise NotImplementedError

    def feature_map_fn(self, net, x):
        raise NotImplementedError

    def fsdp_units(self, denoiser) -> list[nn.Module]:
        return self.feature_blocks(denoiser)

    def rebuild_plain_tensors(self, denoiser) -> None:
        """After a meta-device build: re-create the submodules that keep tensors as plain attributes (not
        parameters or buffers: FSDP's broadcast and to_empty never reach them), on the CPU. Default: none."""

    # -- sampling --
    def sampling_t_list(self, net, num_steps, noise):
        raise NotImplementedError

    def guided_x0(self, net, x, t, condition, neg_condition, guidance_scale, **kw):
        """CFG on x0 (linear in the native prediction at fixed x_t, t: the same as the pipelines' CFG on eps / v)."""
        x0 = net(x, t, condition=condition, fwd_pred_type="x0", **kw)
        if guidance_scale is None:
            return x0
        return cfg_combine(x0, net(x, t, condition=neg_condition, fwd_pred_type="x0", **kw), guidance_scale)

    # -- encoders --
    def make_pipeline(self, net, with_denoiser: bool):
        from fastgen.networks.hf.loading import resolve_class

        cls = resolve_class(self.pipeline_cls)
        parts = {name: net.encoders[name] for name in self.encoder_names}
        parts[self.denoiser_name] = net.denoiser if with_denoiser else None
        scheduler_cls = resolve_class(self.components["scheduler"][0])
        parts["scheduler"] = scheduler_cls.from_config(net.scheduler_config)
        return cls(**parts, **self.pipeline_extra_kwargs())

    def pipeline_extra_kwargs(self) -> dict:
        return {}

    def encode_prompt(self, net, pipe, prompts, device) -> dict:
        raise NotImplementedError

    def complete_batch(self, net, data: dict) -> dict:
        """Last step of preprocess_batch: family-specific condition parts built from the batch (Wan I2V: the first
        frame's image condition). Default: none."""
        return data

    def negative_condition(self, net, batch: int, device) -> dict:
        """CFG's negative when none is given: the empty prompt."""
        return net.encode_text([""] * batch, device=device)

    def vae_encode(self, vae, x, sample, generator):
        dist = vae.encode(x).latent_dist
        z = dist.sample(generator) if sample else dist.mode()
        return (z - (vae.config.shift_factor or 0.0)) * vae.config.scaling_factor

    def vae_decode(self, vae, z):
        return vae.decode(z / vae.config.scaling_factor + (vae.config.shift_factor or 0.0)).sample


def latent_mean_std(vae, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-channel latent normalisation of the Wan-style video VAEs (Qwen-Image, Wan), shaped [1, C, 1, 1, 1]."""
    shape = (1, -1, 1, 1, 1)
    return (torch.tensor(vae.config.latents_mean, dtype=like.dtype, device=like.device).view(shape),
            torch.tensor(vae.config.latents_std, dtype=like.dtype, device=like.device).view(shape))


def _unet_blocks(unet) -> list[nn.Module]:
    return [*unet.down_blocks, unet.mid_block]


def _first(output):
    return output[0] if isinstance(output, tuple) else output


class SD15Adapter(FamilyAdapter):
    """UNet2DConditionModel, eps prediction, timestep = t * 1000 on the sd alpha-bar table; DDIM sampling."""

    family = "sd15"
    pipeline_cls = "diffusers.StableDiffusionPipeline"
    components = {
        "unet": ("diffusers.UNet2DConditionModel", "unet"),
        "vae": ("diffusers.AutoencoderKL", "vae"),
        "text_encoder": ("transformers.CLIPTextModel", "text_encoder"),
        "tokenizer": ("transformers.CLIPTokenizer", "tokenizer"),
        "scheduler": ("diffusers.DDIMScheduler", "scheduler"),
    }
    encoder_names = ("vae", "text_encoder", "tokenizer")
    default_scheduler_config = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                    beta_schedule="scaled_linear", steps_offset=1, set_alpha_to_one=False,
                                    timestep_spacing="leading")

    def native_pred_type(self, scheduler_config: dict) -> str:
        """From the scheduler's prediction_type: eps for SD1.x / SDXL, v for SD2.x 768-v checkpoints."""
        kind = scheduler_config.get("prediction_type", "epsilon")
        types = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
        if kind not in types:
            raise ValueError(f"unsupported scheduler prediction_type {kind!r}; expected one of {sorted(types)}")
        return types[kind]

    def spatial_factor(self, net) -> int:
        return 2 ** (len(net.denoiser.config.block_out_channels) - 1)

    def model_timestep(self, net, t):
        return (t * net.scheduler_config.get("num_train_timesteps", 1000)).to(torch.float32)

    def model_inputs(self, net, x, t, condition) -> dict:
        return dict(sample=x, timestep=self.model_timestep(net, t),
                    encoder_hidden_states=condition["prompt_embeds"].to(x.dtype))

    def feature_blocks(self, denoiser):
        return _unet_blocks(denoiser)

    def feature_map_fn(self, net, x):
        return _first

    def fsdp_units(self, denoiser):
        return [*denoiser.down_blocks, denoiser.mid_block, *denoiser.up_blocks]

    def sampling_t_list(self, net, num_steps, noise):
        return schedules.ddim_t_list(num_steps, net.scheduler_config)

    def pipeline_extra_kwargs(self) -> dict:
        return dict(safety_checker=None, feature_extractor=None, requires_safety_checker=False)

    def encode_prompt(self, net, pipe, prompts, device) -> dict:
        embeds, _ = pipe.encode_prompt(prompts, device, 1, False)
        return {"prompt_embeds": embeds}


class SDXLAdapter(SD15Adapter):
    """SDXL: two CLIP text encoders (the second with projection: pooled embeds), `time_ids` micro-conditioning
    (original size, crop, target size; default: the latent size in pixels, no crop); Euler sampling."""

    family = "sdxl"
    schedule_type = "sdxl"
    pipeline_cls = "diffusers.StableDiffusionXLPipeline"
    components = {
        **SD15Adapter.components,
        "text_encoder_2": ("transformers.CLIPTextModelWithProjection", "text_encoder_2"),
        "tokenizer_2": ("transformers.CLIPTokenizer", "tokenizer_2"),
        "scheduler": ("diffusers.EulerDiscreteScheduler", "scheduler"),
    }
    encoder_names = ("vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2")
    condition_keys = ("prompt_embeds", "pooled_prompt_embeds")
    default_scheduler_config = dict(SD15Adapter.default_scheduler_config, interpolation_type="linear")

    def time_ids(self, net, x):
        h, w = (s * self.vae_scale_factor(net) for s in x.shape[2:])
        return torch.tensor([h, w, 0, 0, h, w], dtype=x.dtype, device=x.device).expand(x.shape[0], 6)

    def model_inputs(self, net, x, t, condition) -> dict:
        inputs = super().model_inputs(net, x, t, condition)
        time_ids = condition.get("time_ids")
        time_ids = self.time_ids(net, x) if time_ids is None else time_ids.to(x)
        inputs["added_cond_kwargs"] = {"text_embeds": condition["pooled_prompt_embeds"].to(x.dtype),
                                       "time_ids": time_ids}
        return inputs

    def sampling_t_list(self, net, num_steps, noise):
        return schedules.euler_discrete_t_list(num_steps, net.scheduler_config)

    def pipeline_extra_kwargs(self) -> dict:
        return {}

    def encode_prompt(self, net, pipe, prompts, device) -> dict:
        embeds, _, pooled, _ = pipe.encode_prompt(prompts, device=device, num_images_per_prompt=1,
                                                  do_classifier_free_guidance=False)
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}

    def negative_condition(self, net, batch, device):
        """The SDXL pipeline's default negative (force_zeros_for_empty_prompt): zero embeddings."""
        cond = net.encode_text([""] * batch, device=device)
        return {k: torch.zeros_like(v) for k, v in cond.items()}


class _PackedFlowAdapter(FamilyAdapter):
    """Transformers over 2x2-packed latent tokens on the rf schedule (t = sigma; the velocity is our flow)."""

    pred_type = "flow"
    schedule_type = "rf"
    denoiser_name = "transformer"

    def spatial_factor(self, net) -> int:
        return 2

    def latent_channels(self, net) -> int:
        return int(net.denoiser.config.in_channels) // 4

    def model_timestep(self, net, t):
        return t.to(torch.float32)

    def pack(self, x):
        b, c, h, w = x.shape
        return self._pipeline_class()._pack_latents(x, b, c, h, w)

    def feature_blocks(self, denoiser):
        return list(self._feature_block_lists(denoiser))

    def feature_map_fn(self, net, x):
        b, h, w = x.shape[0], x.shape[2] // 2, x.shape[3] // 2

        def to_map(output):  # image tokens [B, h*w, D] (row-major, as packed) -> [B, D, h, w]
            tokens = output[1]
            return tokens.transpose(1, 2).reshape(b, tokens.shape[2], h, w)

        return to_map

    def sampling_t_list(self, net, num_steps, noise):
        seq_len = (noise.shape[2] // 2) * (noise.shape[3] // 2)
        return schedules.flow_t_list(num_steps, net.scheduler_config, seq_len)

    def _pipeline_class(self):
        from fastgen.networks.hf.loading import resolve_class

        return resolve_class(self.pipeline_cls)


class FluxAdapter(_PackedFlowAdapter):
    """FLUX.1: CLIP pooled + T5 sequence embeddings, distilled guidance as a transformer input, packed latents with
    image ids (text ids zero), resolution-shifted flow-matching Euler sampling."""

    family = "flux"
    pipeline_cls = "diffusers.FluxPipeline"
    components = {
        "transformer": ("diffusers.FluxTransformer2DModel", "transformer"),
        "vae": ("diffusers.AutoencoderKL", "vae"),
        "text_encoder": ("transformers.CLIPTextModel", "text_encoder"),
        "text_encoder_2": ("transformers.T5EncoderModel", "text_encoder_2"),
        "tokenizer": ("transformers.CLIPTokenizer", "tokenizer"),
        "tokenizer_2": ("transformers.T5TokenizerFast", "tokenizer_2"),
        "scheduler": ("diffusers.FlowMatchEulerDiscreteScheduler", "scheduler"),
    }
    encoder_names = ("vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2")
    condition_keys = ("prompt_embeds", "pooled_prompt_embeds")
    extra_kwargs = {"guidance_scale": 3.5, "max_sequence_length": 512}
    default_scheduler_config = dict(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                                    max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)

    def model_inputs(self, net, x, t, condition) -> dict:
        pipe_cls = self._pipeline_class()
        b, _, h, w = x.shape
        prompt_embeds = condition["prompt_embeds"].to(x.dtype)
        guidance = None
        if net.denoiser.config.guidance_embeds:
            g = condition.get("guidance", net.options["guidance_scale"])
            guidance = torch.as_tensor(g, dtype=torch.float32, device=x.device).expand(b)
        return dict(
            hidden_states=self.pack(x), timestep=self.model_timestep(net, t), guidance=guidance,
            pooled_projections=condition["pooled_prompt_embeds"].to(x.dtype), encoder_hidden_states=prompt_embeds,
            txt_ids=torch.zeros(prompt_embeds.shape[1], 3, device=x.device, dtype=x.dtype),
            img_ids=pipe_cls._prepare_latent_image_ids(b, h // 2, w // 2, x.device, x.dtype),
        )

    def native_output(self, net, raw, x):
        return self._pipeline_class()._unpack_latents(raw, x.shape[2], x.shape[3], 1)

    def _feature_block_lists(self, denoiser):
        return [*denoiser.transformer_blocks, *denoiser.single_transformer_blocks]

    def encode_prompt(self, net, pipe, prompts, device) -> dict:
        embeds, pooled, _ = pipe.encode_prompt(prompts, None, device=device, num_images_per_prompt=1,
                                               max_sequence_length=net.options["max_sequence_length"])
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}


class QwenImageAdapter(_PackedFlowAdapter):
    """Qwen-Image: Qwen2.5-VL prompt embeddings with a token mask, packed latents with image shapes, a video-style
    VAE normalised by per-channel mean/std, true CFG with the pipeline's norm rescaling."""

    family = "qwen_image"
    pipeline_cls = "diffusers.QwenImagePipeline"
    components = {
        "transformer": ("diffusers.QwenImageTransformer2DModel", "transformer"),
        "vae": ("diffusers.AutoencoderKLQwenImage", "vae"),
        "text_encoder": ("transformers.Qwen2_5_VLForConditionalGeneration", "text_encoder"),
        "tokenizer": ("transformers.Qwen2Tokenizer", "tokenizer"),
        "scheduler": ("diffusers.FlowMatchEulerDiscreteScheduler", "scheduler"),
    }
    encoder_names = ("vae", "text_encoder", "tokenizer")
    extra_kwargs = {"max_sequence_length": 512}
    default_scheduler_config = dict(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, base_shift=0.5,
                                    max_shift=0.9, base_image_seq_len=256, max_image_seq_len=8192,
                                    shift_terminal=0.02, time_shift_type="exponential")

    def model_inputs(self, net, x, t, condition) -> dict:
        b, _, h, w = x.shape
        mask = condition.get("prompt_embeds_mask")
        return dict(
            hidden_states=self.pack(x), timestep=self.model_timestep(net, t),
            encoder_hidden_states=condition["prompt_embeds"].to(x.dtype),
            encoder_hidden_states_mask=None if mask is None else mask.to(x.device),
            img_shapes=[[(1, h // 2, w // 2)]] * b,
        )

    def native_output(self, net, raw, x):
        return self._pipeline_class()._unpack_latents(raw, x.shape[2], x.shape[3], 1).squeeze(2)

    def _feature_block_lists(self, denoiser):
        return list(denoiser.transformer_blocks)

    def rebuild_plain_tensors(self, denoiser) -> None:
        """The rotary tables of QwenEmbedRope are plain tensors computed in its constructor."""
        rope = denoiser.pos_embed
        with torch.device("cpu"):
            denoiser.pos_embed = type(rope)(theta=rope.theta, axes_dim=rope.axes_dim, scale_rope=rope.scale_rope)

    def guided_x0(self, net, x, t, condition, neg_condition, guidance_scale, **kw):
        """The pipeline's true CFG on the velocity, rescaled per token to the conditional prediction's norm."""
        if guidance_scale is None:
            return net(x, t, condition=condition, fwd_pred_type="x0", **kw)
        v = net(x, t, condition=condition, fwd_pred_type="flow", **kw)
        v_neg = net(x, t, condition=neg_condition, fwd_pred_type="flow", **kw)
        comb = self.pack(cfg_combine(v, v_neg, guidance_scale))
        comb = comb * (self.pack(v).norm(dim=-1, keepdim=True) / comb.norm(dim=-1, keepdim=True))
        v_guided = self._pipeline_class()._unpack_latents(comb, x.shape[2], x.shape[3], 1).squeeze(2)
        return net.noise_scheduler.convert_model_output(x, v_guided, t, "flow", "x0")

    def encode_prompt(self, net, pipe, prompts, device) -> dict:
        embeds, mask = pipe.encode_prompt(prompts, device=device, num_images_per_prompt=1,
                                          max_sequence_length=net.options["max_sequence_length"])
        if mask is None:
            mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
        return {"prompt_embeds": embeds, "prompt_embeds_mask": mask}

    def vae_scale_factor(self, net) -> int:
        cfg = net.encoders["vae"].config if "vae" in net.encoders else net.component_configs.get("vae")
        return 8 if cfg is None else 2 ** len(cfg.get("temperal_downsample", [False, True, True]))

    def _norm(self, vae, z):
        return latent_mean_std(vae, z)

    def vae_encode(self, vae, x, sample, generator):
        dist = vae.encode(x.unsqueeze(2)).latent_dist
        z = dist.sample(generator) if sample else dist.mode()
        mean, std = self._norm(vae, z)
        return ((z - mean) / std).squeeze(2)

    def vae_decode(self, vae, z):
        z = z.unsqueeze(2)
        mean, std = self._norm(vae, z)
        return vae.decode(z * std + mean).sample.squeeze(2)
