"""Video family adapters (Wan 2.1 T2V / I2V, Wan 2.2 TI2V-5B text-to-video, CogVideoX 2B / 5B) for HFNetwork:
latents are [B, C, T, H, W].

What differs from the image families:
  * shapes: 5-D latents, checked against the transformer's (t, h, w) patch size;
  * features: index i = the video tokens after transformer block i, unpacked to [B, inner_dim, T', h, w] (what the
    video discriminators in fastgen/networks/discriminators_video.py take);
  * teacher sampling steps the diffusers scheduler the model ships with (`steps_with_scheduler`): Wan's
    UniPCMultistepScheduler and CogVideoX's DPM / DDIM schedulers are multistep or stochastic, so reproducing their
    grid with a first-order update (as the image families do) would not give the pipelines' samples. The network
    gives the (CFG-mixed) native prediction at the scheduler's integer timestep; the scheduler does the update.
"""

from __future__ import annotations

import torch
from torch import nn

from fastgen.networks.hf.adapters import FamilyAdapter, latent_mean_std
from fastgen.networks.samplers import cfg_combine


class VideoAdapter(FamilyAdapter):
    """Shared by the video transformers: 5-D latents, per-block video-token features, scheduler-driven sampling."""

    denoiser_name = "transformer"
    steps_with_scheduler = True
    latent_ndim = 5
    condition_keys = ("prompt_embeds",)
    extra_kwargs = {"max_sequence_length": 512}

    # -- shapes --
    def patch_size(self, net) -> tuple[int, int, int]:
        raise NotImplementedError

    def check_latents(self, net, x) -> None:
        c, patch = self.latent_channels(net), self.patch_size(net)
        if x.ndim != 5 or x.shape[1] != c or any(s % p for s, p in zip(x.shape[2:], patch)):
            raise ValueError(f"{type(net).__name__} takes video latents [B, {c}, T, H, W] with (T, H, W) divisible "
                             f"by the patch size {patch}; got {tuple(x.shape)}")

    # -- features --
    def tokens_of(self, output) -> torch.Tensor:
        """The video tokens [B, N, D] of one block's output."""
        return output

    def feature_map_fn(self, net, x):
        b = x.shape[0]
        grid = [s // p for s, p in zip(x.shape[2:], self.patch_size(net))]

        def to_map(output):  # tokens in (T', h, w) row-major order, as the patch embedding flattens them
            tokens = self.tokens_of(output)
            return tokens.transpose(1, 2).reshape(b, tokens.shape[2], *grid)

        return to_map

    # -- sampling with the shipped scheduler --
    def make_scheduler(self, net):
        """The scheduler class the model's scheduler_config names (`_class_name`: CogVideoX ships DDIM or DPM
        variants), else the family default, built from that config."""
        from fastgen.networks.hf.loading import resolve_class

        name = net.scheduler_config.get("_class_name")
        cls_path = f"diffusers.{name}" if name else self.components["scheduler"][0]
        return resolve_class(cls_path).from_config(net.scheduler_config)

    def timestep_to_t(self, net, timestep: torch.Tensor) -> torch.Tensor:
        """A scheduler timestep (the model's time input) -> our schedule time."""
        return timestep.to(torch.float64) / net.scheduler_config.get("num_train_timesteps", 1000)

    def guided_native(self, net, x, t, condition, neg_condition, guidance_scale, **kw):
        """The native prediction, CFG-mixed as the pipelines do: neg + g (cond - neg)."""
        pred = net(x, t, condition=condition, **kw)
        if guidance_scale is None:
            return pred
        return cfg_combine(pred, net(x, t, condition=neg_condition, **kw), guidance_scale)

    def scheduler_step(self, sched, pred, timestep, x, i, timesteps, generator, state: dict):
        extra = {} if generator is None else {"generator": generator}  # only the stochastic schedulers take one
        return sched.step(pred, timestep, x, return_dict=False, **extra)[0]

    def to_model_layout(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, T, H, W] -> the transformer's layout (identity; CogVideoX: frames first)."""
        return x

    def from_model_layout(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def sample(self, net, noise, condition, neg_condition, guidance_scale, num_steps, generator=None, **kw):
        """The pipeline's loop: the scheduler steps the latents in the model's layout (a stochastic scheduler's
        noise draws then land on the same elements as in the pipeline)."""
        sched = self.make_scheduler(net)
        sched.set_timesteps(int(num_steps), device=noise.device)
        x = self.to_model_layout(noise) * sched.init_noise_sigma
        state: dict = {}
        timesteps = sched.timesteps
        for i, ts in enumerate(timesteps):
            t = self.timestep_to_t(net, ts).expand(noise.shape[0])
            model_x = self.from_model_layout(sched.scale_model_input(x, ts).to(noise.dtype))
            pred = self.guided_native(net, model_x, t, condition, neg_condition, guidance_scale, **kw)
            x = self.scheduler_step(sched, self.to_model_layout(pred), ts, x, i, timesteps, generator, state)
        return self.from_model_layout(x).to(noise.dtype)


class WanAdapter(VideoAdapter):
    """Wan 2.1 T2V: WanTransformer3DModel (flow prediction, timestep = 1000 sigma), UMT5 text embeddings (zero-padded
    to max_sequence_length, no mask: the transformer attends to the padding as the pipeline feeds it), the causal
    video VAE normalised per channel by latents_mean / latents_std, UniPC multistep sampling with a fixed flow shift.

    Wan 2.2 TI2V-5B (`expand_timesteps=True`, as its pipeline is configured): the transformer takes one timestep per
    video token; t may then also be per latent frame, [B, T] (each frame's tokens get its time)."""

    family = "wan"
    pred_type = "flow"
    schedule_type = "rf"
    pipeline_cls = "diffusers.WanPipeline"
    components = {
        "transformer": ("diffusers.WanTransformer3DModel", "transformer"),
        "vae": ("diffusers.AutoencoderKLWan", "vae"),
        "text_encoder": ("transformers.UMT5EncoderModel", "text_encoder"),
        "tokenizer": ("transformers.T5TokenizerFast", "tokenizer"),
        "scheduler": ("diffusers.UniPCMultistepScheduler", "scheduler"),
    }
    encoder_names = ("vae", "text_encoder", "tokenizer")
    extra_kwargs = {"max_sequence_length": 512, "expand_timesteps": False}
    # Wan2.1-T2V-1.3B-Diffusers' scheduler/scheduler_config.json (flow_shift 3.0: its 480p setting)
    default_scheduler_config = dict(
        num_train_timesteps=1000, prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0,
        solver_order=2, solver_type="bh2", predict_x0=True, lower_order_final=True, final_sigmas_type="zero",
        timestep_spacing="linspace", beta_schedule="linear", beta_start=0.0001, beta_end=0.02,
    )

    def patch_size(self, net):
        return tuple(int(p) for p in net.denoiser.config.patch_size)

    def vae_scale_factor(self, net) -> int:
        cfg = net.encoders["vae"].config if "vae" in net.encoders else net.component_configs.get("vae")
        return 8 if cfg is None else int(cfg.get("scale_factor_spatial", 8))

    def model_timestep(self, net, t):
        return (t * net.scheduler_config.get("num_train_timesteps", 1000)).to(torch.float32)

    def token_timesteps(self, net, timestep, x):
        """[B] or per-frame [B, T] timesteps -> one per video token [B, T' h w] (tokens are frame-major)."""
        b = x.shape[0]
        grid = [s // p for s, p in zip(x.shape[2:], self.patch_size(net))]
        per_frame = timestep[:, None] if timestep.ndim == 1 else timestep
        if per_frame.shape[1] not in (1, grid[0]):
            raise ValueError(f"per-frame t must be [B, {grid[0]}] (one per latent frame); got {tuple(timestep.shape)}")
        return per_frame[:, :, None].expand(b, grid[0], grid[1] * grid[2]).reshape(b, -1)

    def time_input(self, net, x, t):
        timestep = self.model_timestep(net, t)
        if net.options["expand_timesteps"]:
            return self.token_timesteps(net, timestep, x)
        if timestep.ndim != 1:
            raise ValueError(f"{type(net).__name__} takes one time per sample, t [B]; per-frame t {tuple(t.shape)} "
                             "needs a per-token-time model (Wan 2.2 TI2V: expand_timesteps=True)")
        return timestep

    def model_inputs(self, net, x, t, condition) -> dict:
        return dict(hidden_states=x, timestep=self.time_input(net, x, t),
                    encoder_hidden_states=condition["prompt_embeds"].to(x.dtype))

    # MeanFlow's r embedding goes where the transformer embeds its timestep (condition_embedder.time_embedder)
    def time_embedder(self, denoiser) -> nn.Module:
        return denoiser.condition_embedder.time_embedder

    def time_features(self, net, timestep):
        """[B] or per-token [B, N] timesteps -> the sinusoidal features the time embedder takes ([B, F] / [B, N, F]),
        through the transformer's own projection."""
        features = net.denoiser.condition_embedder.timesteps_proj(timestep.flatten())
        return features.unflatten(0, tuple(timestep.shape)) if timestep.ndim == 2 else features

    def feature_blocks(self, denoiser) -> list[nn.Module]:
        return list(denoiser.blocks)

    def encode_prompt(self, net, pipe, prompts, device) -> dict:
        embeds, _ = pipe.encode_prompt(prompts, do_classifier_free_guidance=False, device=device,
                                       max_sequence_length=net.options["max_sequence_length"])
        return {"prompt_embeds": embeds}

    def vae_encode(self, vae, x, sample, generator):
        dist = vae.encode(x).latent_dist
        z = dist.sample(generator) if sample else dist.mode()
        mean, std = latent_mean_std(vae, z)
        return (z - mean) / std

    def vae_decode(self, vae, z):
        mean, std = latent_mean_std(vae, z)
        return vae.decode(z * std + mean).sample


class CogVideoXAdapter(VideoAdapter):
    """CogVideoX 2B / 5B: CogVideoXTransformer3DModel (v prediction on the cogvideox schedule, whose SNR shift comes
    from the scheduler config: 3.0 for 2B, 1.0 for 5B), T5 embeddings, AutoencoderKLCogVideoX (scaling factor only).
    The transformer takes frames first, [B, T, C, H, W]: the adapter permutes to and from our [B, C, T, H, W]. 5B's
    3-D rotary embeddings are the pipeline's own `_prepare_rotary_positional_embeddings`, called on the latent grid."""

    family = "cogvideox"
    pred_type = "v"
    schedule_type = "cogvideox"
    pipeline_cls = "diffusers.CogVideoXPipeline"
    components = {
        "transformer": ("diffusers.CogVideoXTransformer3DModel", "transformer"),
        "vae": ("diffusers.AutoencoderKLCogVideoX", "vae"),
        "text_encoder": ("transformers.T5EncoderModel", "text_encoder"),
        "tokenizer": ("transformers.T5Tokenizer", "tokenizer"),
        "scheduler": ("diffusers.CogVideoXDDIMScheduler", "scheduler"),
    }
    encoder_names = ("vae", "text_encoder", "tokenizer")
    extra_kwargs = {"max_sequence_length": 226}
    # THUDM/CogVideoX-2b's scheduler/scheduler_config.json
    default_scheduler_config = dict(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        prediction_type="v_prediction", rescale_betas_zero_snr=True, set_alpha_to_one=True, snr_shift_scale=3.0,
        steps_offset=0, timestep_spacing="trailing", clip_sample=False,
    )

    def schedule_kwargs(self, scheduler_config: dict) -> dict:
        return {"snr_shift_scale": float(scheduler_config.get("snr_shift_scale", 3.0))}

    def patch_size(self, net):
        cfg = net.denoiser.config
        return int(cfg.patch_size_t or 1), int(cfg.patch_size), int(cfg.patch_size)

    def model_timestep(self, net, t):
        return (t * net.scheduler_config.get("num_train_timesteps", 1000)).to(torch.float32)

    def rotary_embeddings(self, net, x):
        """5B's (cos, sin) tables for this latent grid; None for 2B (learned / sin-cos positions inside)."""
        if not net.denoiser.config.use_rotary_positional_embeddings:
            return None
        from types import SimpleNamespace

        from diffusers import CogVideoXPipeline

        # the pipeline's method reads only these two attributes; heights in latent pixels with a scale factor of 1
        holder = SimpleNamespace(vae_scale_factor_spatial=1, transformer=net.denoiser)
        return CogVideoXPipeline._prepare_rotary_positional_embeddings(holder, x.shape[3], x.shape[4], x.shape[2],
                                                                       x.device)

    def to_model_layout(self, x):
        return x.permute(0, 2, 1, 3, 4)  # [B, C, T, H, W] <-> [B, T, C, H, W] (its own inverse)

    from_model_layout = to_model_layout

    def model_inputs(self, net, x, t, condition) -> dict:
        return dict(hidden_states=self.to_model_layout(x), timestep=self.model_timestep(net, t),
                    encoder_hidden_states=condition["prompt_embeds"].to(x.dtype),
                    image_rotary_emb=self.rotary_embeddings(net, x))

    def native_output(self, net, raw, x):
        return self.from_model_layout(raw)

    def feature_blocks(self, denoiser) -> list[nn.Module]:
        return list(denoiser.transformer_blocks)

    def tokens_of(self, output) -> torch.Tensor:
        return output[0]  # (video tokens, text tokens)

    def guided_native(self, net, x, t, condition, neg_condition, guidance_scale, **kw):
        return super().guided_native(net, x, t, condition, neg_condition, guidance_scale, **kw).float()

    def scheduler_step(self, sched, pred, timestep, x, i, timesteps, generator, state: dict):
        """The DPM variant is a stochastic two-step solver: it also takes the previous x0 and timestep."""
        if type(sched).__name__ != "CogVideoXDPMScheduler":
            return super().scheduler_step(sched, pred, timestep, x, i, timesteps, generator, state)
        x, state["old_x0"] = sched.step(pred, state.get("old_x0"), timestep, timesteps[i - 1] if i > 0 else None,
                                        x, generator=generator, return_dict=False)
        return x

    def encode_prompt(self, net, pipe, prompts, device) -> dict:
        embeds, _ = pipe.encode_prompt(prompts, do_classifier_free_guidance=False, device=device,
                                       max_sequence_length=net.options["max_sequence_length"])
        return {"prompt_embeds": embeds}


class PromptOnlyNegative:
    """For adapters whose condition holds more than the prompt (Wan I2V's image parts, VACE's control latents): CFG's
    negative swaps only the prompt and keeps the rest, as those pipelines do. Put it before the adapter's base."""

    @staticmethod
    def _negative(condition, neg_condition):
        if neg_condition is None:
            return None
        return {**condition, "prompt_embeds": neg_condition["prompt_embeds"]}

    def guided_native(self, net, x, t, condition, neg_condition, guidance_scale, **kw):
        return super().guided_native(net, x, t, condition, self._negative(condition, neg_condition),
                                     guidance_scale, **kw)

    def guided_x0(self, net, x, t, condition, neg_condition, guidance_scale, **kw):  # explicit t_list sampling
        return super().guided_x0(net, x, t, condition, self._negative(condition, neg_condition), guidance_scale,
                                 **kw)


class WanI2VAdapter(PromptOnlyNegative, WanAdapter):
    """Wan 2.1 I2V: the T2V transformer with image cross-attention (CLIP ViT penultimate hidden states,
    `image_embeds`) and the first-frame condition concatenated to the noisy latents on channels (`first_frame_cond`:
    the temporal-factor mask channels then the VAE latents of the image followed by zero frames), as
    WanImageToVideoPipeline builds them. CFG's negative keeps the image parts and swaps only the prompt."""

    family = "wan_i2v"
    pipeline_cls = "diffusers.WanImageToVideoPipeline"
    components = {
        **WanAdapter.components,
        "image_encoder": ("transformers.CLIPVisionModel", "image_encoder"),
        # the PIL-backed class directly: the default CLIPImageProcessor needs torchvision (not a dependency) and
        # otherwise falls back to this same class with a warning on every load
        "image_processor": ("transformers.CLIPImageProcessorPil", "image_processor"),
    }
    encoder_names = ("vae", "text_encoder", "tokenizer", "image_encoder", "image_processor")
    condition_keys = ("prompt_embeds", "image_embeds", "first_frame_cond")

    def latent_channels(self, net) -> int:
        return int(net.denoiser.config.out_channels)  # in_channels also counts the first-frame condition

    def model_inputs(self, net, x, t, condition) -> dict:
        inputs = super().model_inputs(net, x, t, condition)
        inputs["hidden_states"] = torch.cat([x, condition["first_frame_cond"].to(x)], dim=1)
        inputs["encoder_hidden_states_image"] = condition["image_embeds"].to(x.dtype)
        return inputs

    def encode_prompt(self, net, pipe, prompts, device) -> dict:
        """The T2V pipeline's text path on this pipeline's tokenizer / encoder: the same embeddings, but diffusers
        0.42's I2V module calls ftfy unconditionally (NameError without the optional ftfy package)."""
        from diffusers import WanPipeline

        embeds = WanPipeline._get_t5_prompt_embeds(pipe, prompts, 1, net.options["max_sequence_length"], device)
        return {"prompt_embeds": embeds}

    def complete_batch(self, net, data: dict) -> dict:
        """Training batches: the image condition from the first frame of the raw pixel video, added to condition and
        neg_condition (CFG's negative differs only in the prompt). Conditions that already hold it pass unchanged."""
        raw, cond = data.get("real_raw"), data.get("condition")
        if not isinstance(raw, torch.Tensor) or raw.ndim != 5 or not isinstance(cond, dict) or \
                "first_frame_cond" in cond:
            return data
        image_cond = {k: v.to(raw.dtype) for k, v in self.encode_image_condition(net, raw[:, :, 0], raw.shape[2]).items()}
        data["condition"] = {**cond, **image_cond}
        if isinstance(data.get("neg_condition"), dict):
            data["neg_condition"] = {**data["neg_condition"], **image_cond}
        return data

    def encode_image_condition(self, net, images, num_frames: int) -> dict:
        """Images [B, 3, H, W] in [-1, 1] -> {"image_embeds", "first_frame_cond"} for a video of num_frames pixel
        frames: the pipeline's own prepare_latents (one image at a time: it repeats one image over the batch)."""
        pipe, device = net.pipeline(), net._enc_device(images.device)
        vae = net.encoders["vae"]
        # 8-bit pixels, as the pipeline's PIL input reaches the CLIP processor (its resize works on 8-bit images)
        uint8 = ((images.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu()
        pixels = pipe.image_processor(images=list(uint8.permute(0, 2, 3, 1).numpy()), return_tensors="pt").pixel_values
        encoder = net.encoders["image_encoder"]
        hidden = encoder(pixel_values=pixels.to(device, encoder.dtype), output_hidden_states=True)
        b, _, h, w = images.shape
        f, s = pipe.vae_scale_factor_temporal, pipe.vae_scale_factor_spatial
        shape = (1, vae.config.z_dim, (num_frames - 1) // f + 1, h // s, w // s)
        cond = [pipe.prepare_latents(img[None].to(device, torch.float32), 1, vae.config.z_dim, h, w, num_frames,
                                     torch.float32, device, None, torch.zeros(shape, device=device))[1]
                for img in images]
        return {"image_embeds": hidden.hidden_states[-2].to(images.device),
                "first_frame_cond": torch.cat(cond).to(images.device)}


class Wan22I2VAdapter(WanI2VAdapter):
    """Wan 2.2 TI2V-5B image-to-video (WanImageToVideoPipeline with expand_timesteps=True): no CLIP encoder and no
    channel concatenation. The condition `first_frame_cond` is the clean latent of the image, [B, C, 1, h, w]; the
    transformer sees it in place of the first latent frame, and that frame's tokens get timestep 0 (the other tokens
    the sample's t), as the pipeline builds its model input and per-token timesteps.

    The conditioning frame does not count in training or sampling: the native prediction of the first latent frame
    is replaced by the one whose x0 is the image latent (`convert_output`), so in every prediction type the
    first frame's x0 is the image, its error against a video that starts with the image is 0, and no gradient flows
    through it. Training batches get the image from their first pixel frame (`complete_batch`), and their `real`
    latents' first frame becomes that image latent. Teacher sampling is the pipeline's: the scheduler steps the
    whole latent video, the model always sees the image in frame 0, and the result's frame 0 is the image."""

    family = "wan22_i2v"
    components = WanAdapter.components
    encoder_names = WanAdapter.encoder_names
    condition_keys = ("prompt_embeds", "first_frame_cond")
    extra_kwargs = {"max_sequence_length": 512, "expand_timesteps": True}

    def pipeline_extra_kwargs(self) -> dict:
        return {"expand_timesteps": True}

    def time_input(self, net, x, t):
        """Per-frame times with the image frame's at 0, then one per token (the pipeline's first_frame_mask * t)."""
        if not net.options["expand_timesteps"]:
            raise ValueError(f"{type(net).__name__} is a per-token-time model: expand_timesteps must stay True")
        per_frame = t[:, None].expand(t.shape[0], x.shape[2]) if t.ndim == 1 else t
        per_frame = torch.cat([torch.zeros_like(per_frame[:, :1]), per_frame[:, 1:]], dim=1)
        return super().time_input(net, x, per_frame)

    def image_latent(self, net, x, condition) -> torch.Tensor:
        image = condition["first_frame_cond"]
        if image.ndim != 5 or image.shape[2] != 1 or image.shape[1] != x.shape[1] or image.shape[3:] != x.shape[3:]:
            raise ValueError(f"{type(net).__name__} takes first_frame_cond = the image latent [B, {x.shape[1]}, 1, "
                             f"{x.shape[3]}, {x.shape[4]}] (encode_image_condition); got {tuple(image.shape)}")
        return image.to(x)

    def model_inputs(self, net, x, t, condition) -> dict:
        x = torch.cat([self.image_latent(net, x, condition), x[:, :, 1:]], dim=2)
        return WanAdapter.model_inputs(self, net, x, t, condition)

    def convert_output(self, net, x_t, out, t, condition, fwd_pred_type):
        """Our prediction type, with frame 0's replaced by the one that gives x0 = the image latent at (x_t, t): the
        image itself for x0; kept as predicted where sigma(t) = 0 for the other types (x0 = x_t there whatever
        they say)."""
        out = net.convert_output(x_t, out, t, fwd_pred_type)
        target, image = fwd_pred_type or net.net_pred_type, self.image_latent(net, x_t, condition)
        if target != "x0":
            sched = net.noise_scheduler
            t0 = (t if t.ndim == 1 else t[:, 0]).to(torch.float64)
            live = sched.sigma(t0) > 0
            t_safe = torch.where(live, t0, torch.full_like(t0, sched.max_t))
            image = sched.convert_model_output(x_t[:, :, :1], image, t_safe, "x0", target).to(out.dtype)
            image = torch.where(live.view(-1, 1, 1, 1, 1), image, out[:, :, :1])
        return torch.cat([image.to(out.dtype), out[:, :, 1:]], dim=2)

    def sample(self, net, noise, condition, neg_condition, guidance_scale, num_steps, generator=None, **kw):
        x = super().sample(net, noise, condition, neg_condition, guidance_scale, num_steps, generator, **kw)
        return torch.cat([self.image_latent(net, x, condition).to(x.dtype), x[:, :, 1:]], dim=2)

    def complete_batch(self, net, data: dict) -> dict:
        """As Wan 2.1 I2V (the image from the raw video's first frame); then the first latent frame of `real` is set
        to the image latent, so the training video starts exactly with its conditioning image."""
        data = super().complete_batch(net, data)
        real, cond = data.get("real"), data.get("condition")
        if isinstance(real, torch.Tensor) and real.ndim == 5 and isinstance(cond, dict) and "first_frame_cond" in cond:
            data["real"] = torch.cat([self.image_latent(net, real, cond).to(real.dtype), real[:, :, 1:]], dim=2)
        return data

    def encode_image_condition(self, net, images, num_frames: int) -> dict:
        """Images [B, 3, H, W] in [-1, 1] -> {"first_frame_cond": the normalised VAE latent (mode) of each image,
        [B, C, 1, H / s, W / s]}: the pipeline's own prepare_latents (num_frames only sizes its unused noise)."""
        pipe, device = net.pipeline(), net._enc_device(images.device)
        z_dim = net.encoders["vae"].config.z_dim
        _, _, h, w = images.shape
        f, s = pipe.vae_scale_factor_temporal, pipe.vae_scale_factor_spatial
        shape = (1, z_dim, (num_frames - 1) // f + 1, h // s, w // s)
        _, latent, _ = pipe.prepare_latents(images.to(device, torch.float32), 1, z_dim, h, w, num_frames,
                                            torch.float32, device, None, torch.zeros(shape, device=device))
        return {"first_frame_cond": latent.to(images.device)}
