"""Cosmos-Predict2 (diffusers' CosmosTransformer3DModel) as Cosmos2VideoToWorldPipeline / Cosmos2TextToImagePipeline
run it, text2world and video2world.

The pipelines keep their latents in EDM (variance-exploding) form x = x0 + s eps, s from sigma_max 80 down to
sigma_min 0.002, and precondition every call: t = s / (1 + s), input (1 - t) x (the rectified-flow interpolant
(1 - t) x0 + t eps), timestep t itself (not 1000 t), x0 = (1 - t) x - t out. So the transformer predicts the flow
velocity eps - x0 at rf time t: our native type is `flow` on the `rf` schedule with model timestep t, and our
schedule stops at t = 80 / 81 (sigma_max). Their sampler is FlowMatchEulerDiscreteScheduler with Karras sigmas
(rho 7) between the pipeline's sigma_min / sigma_max; its last step has zero length (the pipeline sets the final
sigma to sigma_min), so the result is x at sigma_min. `sample` steps that scheduler exactly as the pipeline does.

Video2world: the first latent frames are given clean (`condition["conditioning_latents"]` [B, C, n, H, W]). Every
forward replaces those frames of the input by the clean latents, gives them the time of sigma_conditioning
(1e-4, the pipeline's default) and marks them in the extra `condition_mask` input channel, as the pipeline does at
every step; the output's x0 in those frames is the clean latents exactly (re-expressed at (x_t, t) in any other
prediction type), so a loss on them is zero and never pulls the network. Text2world: no conditioning frames,
condition mask all zero (the Video2World transformer has the extra channel; the Text2Image one has none).

CFG: the pipelines mix x0 as cond + g (cond - uncond); our CFG is uncond + g (cond - uncond): the pipeline's g is
our g - 1. The negative keeps the conditioning latents and swaps only the prompt, as the pipeline does.
"""

from __future__ import annotations

import functools
import inspect
from types import SimpleNamespace

import torch

from fastgen.networks.hf.network import HFNetwork
from fastgen.networks.hf.video_adapters import WanAdapter

COND_KEY = "conditioning_latents"


class GuardrailNotRun:
    """The pipeline's `safety_checker` slot (the optional cosmos_guardrail package) in the pipelines fastgen builds
    for prompt encoding, scheduler set-up and tests on latents: those never reach the guardrail, which screens
    prompts given as text and decoded videos. Calling it is refused rather than passed through."""

    def to(self, *args, **kwargs):
        return self

    def _refuse(self, *args, **kwargs):
        raise RuntimeError("this Cosmos pipeline was built by fastgen without the guardrail; install "
                           "cosmos_guardrail and build the diffusers pipeline directly to screen prompts or videos")

    check_text_safety = check_video_safety = __call__ = _refuse


@functools.cache
def _call_default(pipeline_cls: str, name: str):
    """A default argument of a pipeline's __call__ (read once per process: it never changes)."""
    from fastgen.networks.hf.loading import resolve_class

    return inspect.signature(resolve_class(pipeline_cls).__call__).parameters[name].default


def _resize_nearest(tensor, size, interpolation=None, **kwargs):
    return torch.nn.functional.interpolate(tensor, size=list(size), mode="nearest")


def ensure_padding_mask_resize() -> None:
    """diffusers resizes Cosmos's (all-zero) padding mask with torchvision's nearest resize, and torchvision is not a
    dependency here (it does not import beside the CPU torch wheel). Without it, give that module the same
    operation: torchvision's tensor path for NEAREST is F.interpolate(mode="nearest")."""
    from diffusers.models.transformers import transformer_cosmos

    if not hasattr(transformer_cosmos, "transforms"):
        transformer_cosmos.transforms = SimpleNamespace(
            functional=SimpleNamespace(resize=_resize_nearest), InterpolationMode=SimpleNamespace(NEAREST="nearest"))


class CosmosPredict2Adapter(WanAdapter):
    """Reuses Wan's video pieces (the same AutoencoderKLWan with per-channel latent normalisation -- the pipeline's
    sigma_data is 1 --, the (t, h, w) patch grid, T5 prompt encoding through the pipeline's encode_prompt); the
    model call, the conditioning frames and the EDM-preconditioned sampler are Cosmos's own."""

    family = "cosmos_predict2"
    pipeline_cls = "diffusers.Cosmos2VideoToWorldPipeline"
    components = {
        "transformer": ("diffusers.CosmosTransformer3DModel", "transformer"),
        "vae": ("diffusers.AutoencoderKLWan", "vae"),
        "text_encoder": ("transformers.T5EncoderModel", "text_encoder"),
        "tokenizer": ("transformers.T5TokenizerFast", "tokenizer"),
        "scheduler": ("diffusers.FlowMatchEulerDiscreteScheduler", "scheduler"),
    }
    extra_kwargs = {"max_sequence_length": 512, "is_video2world": False, "num_conditioning_frames": 1, "fps": 24}
    # what diffusers' conversion script saves with the Cosmos-Predict2 pipelines
    default_scheduler_config = dict(num_train_timesteps=1000, shift=1.0, use_karras_sigmas=True)

    # -- the pipeline's constants, read from the pipeline, not copied --
    def make_scheduler(self, net):
        """The shipped scheduler; the keys the pipeline registered on it before saving (sigma_max, sigma_min,
        sigma_data, final_sigmas_type) are not its own arguments: left out (diffusers would warn that it ignores
        them on every build) and registered again by `pipeline_scheduler`."""
        from fastgen.networks.hf.loading import resolve_class

        name = net.scheduler_config.get("_class_name")
        cls = resolve_class(f"diffusers.{name}" if name else self.components["scheduler"][0])
        accepted = inspect.signature(cls.__init__).parameters
        return cls.from_config({k: v for k, v in net.scheduler_config.items() if k in accepted or k.startswith("_")})

    def pipeline_scheduler(self, net):
        """The scheduler as the pipeline configures it: its __init__ registers sigma_max / sigma_min / sigma_data /
        final_sigmas_type on the scheduler (a pipeline holding only the scheduler is enough for that)."""
        from fastgen.networks.hf.loading import resolve_class

        sched = self.make_scheduler(net)
        resolve_class(self.pipeline_cls)(text_encoder=None, tokenizer=None, transformer=None, vae=None,
                                         scheduler=sched, safety_checker=GuardrailNotRun())
        return sched

    def t_conditioning(self) -> torch.Tensor:
        """The conditioning frames' time: sigma_conditioning / (1 + sigma_conditioning), float32 as the pipeline."""
        sigma = torch.tensor(_call_default(self.pipeline_cls, "sigma_conditioning"), dtype=torch.float32)
        return sigma / (sigma + 1)

    def schedule_kwargs(self, scheduler_config: dict) -> dict:
        """Our rf schedule ends at the pipeline's sigma_max (t = 80 / 81): the teacher never saw noisier inputs."""
        net = SimpleNamespace(scheduler_config=scheduler_config)
        sigma_max = float(self.pipeline_scheduler(net).config.sigma_max)
        return {"max_t": sigma_max / (1 + sigma_max)}

    def pipeline_extra_kwargs(self) -> dict:
        return {"safety_checker": GuardrailNotRun()}

    # -- shapes and condition --
    def latent_channels(self, net) -> int:
        return int(net.denoiser.config.out_channels)  # in_channels also counts the condition-mask channel

    def takes_condition_mask(self, net) -> bool:
        return int(net.denoiser.config.in_channels) > self.latent_channels(net)

    def check_condition(self, net, condition) -> None:
        super().check_condition(net, condition)
        has = COND_KEY in condition
        if net.options["is_video2world"] and not has:
            raise ValueError(f"{type(net).__name__}(is_video2world=True) needs condition[{COND_KEY!r}], the clean "
                             "latents of the first frames [B, C, n, H, W] (net.encode_image_condition(images) or "
                             "preprocess_batch on a video batch)")
        if has and not net.options["is_video2world"]:
            raise ValueError(f"condition[{COND_KEY!r}] given to a text2world {type(net).__name__}: set "
                             "is_video2world=True to condition on first frames")
        if has and not self.takes_condition_mask(net):
            raise ValueError(f"{type(net).__name__}: this transformer has no condition-mask input channel "
                             "(a Text2Image model); video2world needs a Video2World model")

    def conditioning(self, net, condition, x) -> torch.Tensor | None:
        """The clean first-frame latents [B, C, n, H, W] of a video2world condition (None for text2world)."""
        if not net.options["is_video2world"]:
            return None
        clean = condition[COND_KEY]
        b, c, frames, h, w = x.shape
        if clean.ndim != 5 or clean.shape[0] not in (1, b) or clean.shape[1] != c or clean.shape[3:] != (h, w) \
                or not 1 <= clean.shape[2] <= frames:
            raise ValueError(f"condition[{COND_KEY!r}] must be [B, {c}, n, {h}, {w}] with 1 <= n <= {frames} latent "
                             f"frames for latents {tuple(x.shape)}; got {tuple(clean.shape)}")
        return clean.expand(b, *clean.shape[1:])

    # -- model call --
    def model_timestep(self, net, t):
        return t.to(torch.float32)  # the pipelines' timestep is t = sigma / (1 + sigma) itself

    def model_inputs(self, net, x, t, condition) -> dict:
        ensure_padding_mask_resize()
        b, _, frames, h, w = x.shape
        t = self.model_timestep(net, t)
        if t.ndim == 2 and t.shape[1] != frames:
            raise ValueError(f"per-frame t must be [B, {frames}] (one per latent frame); got {tuple(t.shape)}")
        frame_t = t[:, None].expand(b, frames) if t.ndim == 1 else t
        clean = self.conditioning(net, condition, x)
        n = 0 if clean is None else clean.shape[2]
        if n:  # the first frames clean, at the conditioning time (the pipeline's cond_indicator blend)
            x = torch.cat([clean.to(x), x[:, :, n:]], dim=2)
            frame_t = torch.cat([self.t_conditioning().to(frame_t).expand(b, n), frame_t[:, n:]], dim=1)
        inputs = dict(hidden_states=x, timestep=frame_t.to(x.dtype)[:, None, :, None, None],
                      encoder_hidden_states=condition["prompt_embeds"].to(x.dtype), fps=net.options["fps"],
                      padding_mask=x.new_zeros(1, 1, h, w))  # no padding: the pipelines pass zeros
        if self.takes_condition_mask(net):
            mask = x.new_zeros(b, 1, frames, h, w)
            mask[:, :, :n] = 1
            inputs["condition_mask"] = mask
        return inputs

    def convert_output(self, net, x_t, out, t, condition, fwd_pred_type):
        """Our prediction type; video2world: the conditioning frames' x0 is the clean latents exactly."""
        out = net.convert_output(x_t, out, t, fwd_pred_type)
        clean = self.conditioning(net, condition, x_t)
        if clean is None:
            return out
        n, target = clean.shape[2], fwd_pred_type or net.net_pred_type
        if target != "x0":
            t_n = t[:, :n] if t.ndim == 2 else t
            clean = net.noise_scheduler.convert_model_output(x_t[:, :, :n], clean.to(x_t), t_n, "x0", target)
        return torch.cat([clean.to(out), out[:, :, n:]], dim=2)

    def feature_blocks(self, denoiser):
        return list(denoiser.transformer_blocks)

    # -- sampling --
    @staticmethod
    def _negative(condition, neg_condition):
        """CFG's negative: the condition with only the prompt swapped (the conditioning frames stay)."""
        if neg_condition is None:
            return None
        return {**condition, "prompt_embeds": neg_condition["prompt_embeds"]}

    def guided_x0(self, net, x, t, condition, neg_condition, guidance_scale, **kw):
        return super().guided_x0(net, x, t, condition, self._negative(condition, neg_condition), guidance_scale,
                                 **kw)

    def sample(self, net, noise, condition, neg_condition, guidance_scale, num_steps, generator=None, **kw):
        """Cosmos2VideoToWorldPipeline's loop (Cosmos2TextToImagePipeline's for text2world): Euler in the EDM
        variables on the scheduler's Karras sigmas, the network's (CFG-mixed) x0 at t = s / (1 + s) on the input
        (1 - t) x. Returns the pipeline's latents: x at the final sigma (sigma_min)."""
        sched = self.pipeline_scheduler(net)
        sched.set_timesteps(sigmas=torch.linspace(0, 1, int(num_steps), dtype=torch.float64), device=noise.device)
        if sched.config.final_sigmas_type == "sigma_min":
            sched.sigmas[-1] = sched.sigmas[-2]
        x = noise.to(torch.float32) * sched.config.sigma_max
        for i, timestep in enumerate(sched.timesteps):
            sigma = sched.sigmas[i]
            t = (sigma / (sigma + 1)).to(torch.float64).expand(noise.shape[0])
            x0 = self.guided_x0(net, (x * (1 - t[0].float())).to(noise.dtype), t, condition, neg_condition,
                                guidance_scale, **kw)
            x = sched.step((x - x0.float()) / sigma, timestep, x, return_dict=False)[0]
        return x.to(noise.dtype)

    # -- encoders --
    def negative_condition(self, net, batch: int, device) -> dict:
        """CFG's negative when none is given: the pipelines' default negative prompt."""
        from diffusers.pipelines.cosmos.pipeline_cosmos2_video2world import DEFAULT_NEGATIVE_PROMPT

        return net.encode_text([DEFAULT_NEGATIVE_PROMPT] * batch, device=device)

    def complete_batch(self, net, data: dict) -> dict:
        """Video2world training batches: the conditioning latents are the first `num_conditioning_frames` latent
        frames of `real`, added to condition and neg_condition (conditions that hold them pass unchanged)."""
        real, cond = data.get("real"), data.get("condition")
        if not net.options["is_video2world"] or not isinstance(real, torch.Tensor) or real.ndim != 5 or \
                not isinstance(cond, dict) or COND_KEY in cond:
            return data
        n = int(net.options["num_conditioning_frames"])
        if not 1 <= n < real.shape[2]:
            raise ValueError(f"num_conditioning_frames={n} must be in [1, {real.shape[2] - 1}] for videos of "
                             f"{real.shape[2]} latent frames")
        data["condition"] = {**cond, COND_KEY: real[:, :, :n]}
        if isinstance(data.get("neg_condition"), dict):
            data["neg_condition"] = {**data["neg_condition"], COND_KEY: real[:, :, :n]}
        return data

    def encode_image_condition(self, net, images, num_frames=None) -> dict:
        """Images [B, 3, H, W] in [-1, 1] -> {conditioning_latents: [B, C, n, h, w]}, n = num_conditioning_frames:
        the image repeated over the (n - 1) * temporal factor + 1 pixel frames n latent frames take (the pipeline
        pads its conditioning video with its last frame), encoded by the VAE at its posterior mode. num_frames (the
        video's length, which WanI2V's condition depends on) does not change it: the causal VAE's first latent
        frames see only the first pixel frames."""
        n = int(net.options["num_conditioning_frames"])
        vae = net.encoders["vae"]
        factor = 2 ** sum(vae.config.temperal_downsample)
        video = images[:, :, None].expand(-1, -1, (n - 1) * factor + 1, -1, -1)
        return {COND_KEY: net.encode_images(video, sample=False)[:, :, :n]}


class CosmosPredict2(HFNetwork):
    """Cosmos-Predict2 2B / 14B (CosmosTransformer3DModel + T5 + AutoencoderKLWan); latents [B, C, T, H, W], flow on
    rf with timestep t. is_video2world: condition on the first `num_conditioning_frames` latent frames
    (condition["conditioning_latents"]); fps: the rotary time scale (the model's base is 24)."""

    adapter = CosmosPredict2Adapter()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        ensure_padding_mask_resize()  # also for the bare transformer inside net.pipeline() (the parity tests)
        if int(self.options["num_conditioning_frames"]) < 1:
            raise ValueError(f"num_conditioning_frames must be >= 1 latent frame; got "
                             f"{self.options['num_conditioning_frames']}")

    @property
    def is_image_to_video(self) -> bool:
        """Whether sampling needs first frames (video inference's --image)."""
        return bool(self.options["is_video2world"])

    @torch.no_grad()
    def encode_image_condition(self, images, num_frames: int | None = None) -> dict:
        self._require_encoders("encode_image_condition")
        return self.adapter.encode_image_condition(self, images, num_frames)
