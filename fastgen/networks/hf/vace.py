"""VACE-Wan (Wan 2.1 VACE 1.3B / 14B, video-to-video): diffusers' WanVACETransformer3DModel through HFNetwork.

The transformer is Wan 2.1 T2V plus a control branch: `control_hidden_states` (the control video's VAE latents and
its mask, `vace_in_channels` = 2 x 16 + 8 x 8 = 96 channels on the latent grid) run through the VACE blocks, whose
hints are added after the main blocks listed in `vace_layers`, scaled by `control_hidden_states_scale` (one per VACE
layer; our `context_scale`, 1.0 by default). Everything else -- time, text, VAE, UniPC sampling -- is Wan's
(WanAdapter), and CFG's negative keeps the control and swaps only the prompt, as WanVACEPipeline does.

The control latents are built exactly as WanVACEPipeline builds them, by calling its own `prepare_video_latents`
(the VAE modes of the inactive `video * (1 - mask)` and reactive `video * mask` parts, normalised) and
`prepare_masks` (the mask folded 8x8 -> 64 channels on the latent grid). Masks are [B, 1, F, H, W] in [0, 1]
(1 = generate, the pipeline's white); no mask = all ones (the pipeline's default: the whole video is control).
Reference images (`encode_control(..., reference_images=)`) become extra leading latent frames of the control, as in
the pipeline; the latents to sample then carry those frames too, dropped before decoding (`fit_reference_images`
prepares image files as the pipeline does; the inference script's `--reference_image`; training batches take none).

Depth control (`control_type="depth"`): the control video is the per-frame depth map of the input video from a
Depth-Anything model in `transformers` (DepthAnythingForDepthEstimation + its DPT image processor, loaded from
`depth_model_path`, a hub id or local folder), min-max normalised per frame to [-1, 1] and repeated to 3 channels,
as VACE's depth annotator feeds it. The depth model is frozen and sits with the other encoders (never a submodule,
never checkpointed, moved by `encoders_device`).
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from fastgen.networks.hf.loading import load_component
from fastgen.networks.hf.network import HFNetwork, encoder_dtype
from fastgen.networks.hf.video_adapters import PromptOnlyNegative, WanAdapter, WanI2VAdapter

CONTROL_TYPES = ("video", "depth")
DEFAULT_DEPTH_MODEL = "depth-anything/Depth-Anything-V2-Large-hf"
DEPTH_PARTS = ("depth_processor", "depth_model")
DEPTH_FRAMES_PER_CALL = 16  # frames per depth-model call: bounds the ViT's activation memory on long videos


def depth_to_control(depth: torch.Tensor) -> torch.Tensor:
    """Depth maps [N, H, W] -> control frames [N, 3, H, W] in [-1, 1]: min-max per frame, repeated to RGB (a flat
    map becomes -1)."""
    flat = depth.flatten(1)
    low, high = flat.min(1).values, flat.max(1).values
    unit = (depth - low[:, None, None]) / (high - low).clamp_min(1e-6)[:, None, None]
    return (unit * 2 - 1)[:, None].expand(-1, 3, -1, -1)


class VACEAdapter(PromptOnlyNegative, WanAdapter):
    """WanVACETransformer3DModel: Wan 2.1 with the control branch (see the module docstring)."""

    family = "vace_wan"
    pipeline_cls = "diffusers.WanVACEPipeline"
    components = {
        **WanAdapter.components,
        "transformer": ("diffusers.WanVACETransformer3DModel", "transformer"),
        # the depth annotator: its own repo (depth_model_path), built only for control_type="depth"
        "depth_model": ("transformers.DepthAnythingForDepthEstimation", ""),
        "depth_processor": ("transformers.DPTImageProcessorPil", ""),
    }
    condition_keys = ("prompt_embeds", "control_hidden_states")
    extra_kwargs = {**WanAdapter.extra_kwargs, "context_scale": 1.0}
    # the T2V pipeline's text path: diffusers 0.42's VACE module, like the I2V one, needs the optional ftfy package
    encode_prompt = WanI2VAdapter.encode_prompt

    def model_inputs(self, net, x, t, condition) -> dict:
        inputs = super().model_inputs(net, x, t, condition)
        control = condition["control_hidden_states"]
        channels = int(net.denoiser.config.vace_in_channels)
        if control.ndim != 5 or control.shape[1] != channels or control.shape[2:] != x.shape[2:] or \
                control.shape[0] != x.shape[0]:
            raise ValueError(f"{type(net).__name__} needs control_hidden_states [B, {channels}, T, H, W] on the "
                             f"latent grid of x {tuple(x.shape)}; got {tuple(control.shape)} (build it with "
                             "net.encode_control(video, mask) from a video of the same frames and size)")
        layers = len(net.denoiser.config.vace_layers)
        inputs["control_hidden_states"] = control.to(x.dtype)
        inputs["control_hidden_states_scale"] = x.new_full((layers,), float(net.options["context_scale"]))
        return inputs

    def fsdp_units(self, denoiser) -> list[nn.Module]:
        return [*denoiser.blocks, *denoiser.vace_blocks]

    def encode_control(self, net, video: torch.Tensor, mask: torch.Tensor | None = None,
                       reference_images: torch.Tensor | None = None) -> torch.Tensor:
        """Control video [B, 3, F, H, W] in [-1, 1] (+ mask [B, 1, F, H, W] in [0, 1], + reference images
        [B, R, 3, H, W] in [-1, 1]) -> control_hidden_states [B, 2 z + s^2, R + T, H/s, W/s], by WanVACEPipeline's
        own methods, one video at a time (they take one)."""
        from diffusers import WanVACEPipeline

        pipe, device = net.pipeline(), net._enc_device(video.device)
        if mask is None:
            mask = torch.ones_like(video[:, :1])
        # prepare_masks reads only these attributes (the encoder-only pipeline has no transformer)
        holder = SimpleNamespace(transformer=net.denoiser, vae_scale_factor_temporal=pipe.vae_scale_factor_temporal,
                                 vae_scale_factor_spatial=pipe.vae_scale_factor_spatial)
        if reference_images is None:
            reference_images = video.new_zeros(video.shape[0], 0, *video.shape[1:2], *video.shape[3:])
        if reference_images.ndim != 5 or reference_images.shape[2:] != (video.shape[1], *video.shape[3:]):
            raise ValueError(f"reference_images must be [B, R, 3, H, W] at the video's size {tuple(video.shape[3:])}; "
                             f"got {tuple(reference_images.shape)}")
        out = []
        for one_video, one_mask, refs in zip(video, mask, reference_images):
            one_video = one_video[None].to(device, torch.float32)
            one_mask = one_mask[None].to(device, torch.float32)
            refs = [list(refs.to(device, torch.float32))]  # the pipeline's list (batch) of lists of [3, H, W]
            latents = pipe.prepare_video_latents(one_video, one_mask, refs, None, device)
            masks = WanVACEPipeline.prepare_masks(holder, one_mask, refs, None)
            out.append(torch.cat([latents, masks.to(latents)], dim=1))
        return torch.cat(out).to(video.device, torch.float32)

    def depth_video(self, net, video: torch.Tensor) -> torch.Tensor:
        """Video [B, 3, F, H, W] in [-1, 1] -> its depth control video [B, 3, F, H, W] in [-1, 1] (8-bit frames
        through the depth model's image processor, depth resized back by its post-processing)."""
        from fastgen.utils.image_grid import to_uint8

        processor, model = net.encoders["depth_processor"], net.encoders["depth_model"]
        device = net._enc_device(video.device)
        b, _, f, h, w = video.shape
        frames = to_uint8(video.permute(0, 2, 3, 4, 1).reshape(b * f, h, w, 3))
        maps = []
        for start in range(0, len(frames), DEPTH_FRAMES_PER_CALL):
            chunk = list(frames[start:start + DEPTH_FRAMES_PER_CALL])
            pixels = processor(images=chunk, return_tensors="pt").pixel_values.to(device, model.dtype)
            output = model(pixel_values=pixels)
            maps += [r["predicted_depth"] for r in
                     processor.post_process_depth_estimation(output, target_sizes=[(h, w)] * len(chunk))]
        control = depth_to_control(torch.stack(maps).float())
        return control.reshape(b, f, 3, h, w).permute(0, 2, 1, 3, 4).to(video.device, video.dtype)

    def complete_batch(self, net, data: dict) -> dict:
        """Training batches: control_hidden_states from the batch's `control_video` (depth control: its depth map),
        or, with depth control and no control video, from the depth of the raw `real` video; an optional
        `control_mask`. Added to condition and neg_condition (CFG's negative differs only in the prompt);
        conditions that already hold it pass unchanged."""
        cond = data.get("condition")
        if not isinstance(cond, dict) or "control_hidden_states" in cond:
            return data
        video = data.get("control_video")
        if video is None and net.depth_control:
            video = data.get("real_raw")
        if not isinstance(video, torch.Tensor) or video.ndim != 5:
            need = "a pixel `real` video or a `control_video`" if net.depth_control else "a `control_video`"
            raise ValueError(f"{type(net).__name__} (control_type={net.control_type!r}) needs {need} "
                             "[B, 3, F, H, W] in [-1, 1] in the batch to build its control latents")
        control = {"control_hidden_states": net.encode_control(video, data.get("control_mask")).to(video.dtype)}
        data["condition"] = {**cond, **control}
        if isinstance(data.get("neg_condition"), dict):
            data["neg_condition"] = {**data["neg_condition"], **control}
        return data


class VACEWan(HFNetwork):
    """Wan 2.1 VACE (WanVACETransformer3DModel + UMT5 + AutoencoderKLWan [+ Depth-Anything]); condition keys
    prompt_embeds, control_hidden_states (`encode_control(video, mask)` builds the second).

    Args (beyond HFNetwork's):
        control_type: "video" (the control video is given: a batch's `control_video`, inference's --control_video)
            or "depth" (the control video is the depth map of the given / real video, from the depth model).
        depth_model_path: the Depth-Anything model (hub id or local folder in the transformers layout) for
            control_type="depth"; None there means DEFAULT_DEPTH_MODEL. Setting it with control_type="video" is an
            error (it would be ignored).
        context_scale: the VACE hints' scale (the pipeline's conditioning_scale), one value for every VACE layer.
    """

    adapter = VACEAdapter()

    def __init__(self, model_id: str, control_type: str = "video", depth_model_path: str | None = None, **kwargs):
        if control_type not in CONTROL_TYPES:
            raise ValueError(f"control_type must be one of {CONTROL_TYPES}; got {control_type!r}")
        if kwargs.get("expand_timesteps"):
            raise ValueError("VACEWan (Wan 2.1 VACE) takes one time per sample: expand_timesteps must stay False")
        if depth_model_path is not None and control_type != "depth":
            raise ValueError(f"depth_model_path={depth_model_path!r} is set but control_type={control_type!r}: set "
                             "control_type='depth' to compute the control video with that depth model, or drop it")
        # read by init_preprocessors, which the base constructor may call
        self.control_type = control_type
        self.depth_model_path = depth_model_path or (DEFAULT_DEPTH_MODEL if control_type == "depth" else None)
        super().__init__(model_id, **kwargs)

    @property
    def depth_control(self) -> bool:
        return self.control_type == "depth"

    def _build(self, name: str, dtype: torch.dtype | None = None):
        """The depth parts come from depth_model_path (their own repo, no subfolder), always with their weights:
        the annotator is never trained, so a random one would only produce noise."""
        if name not in DEPTH_PARTS or name in self.component_configs:
            return super()._build(name, dtype)
        return load_component(self._class_of(name)[0], self.depth_model_path, dtype=dtype)

    def init_preprocessors(self) -> None:
        """The base encoders, then (depth control) the depth processor and model, frozen, with real weights on the
        CPU even under meta init (they are not in state_dict: no rank receives them from rank 0)."""
        super().init_preprocessors()
        if not self.depth_control or all(name in self.encoders for name in DEPTH_PARTS):
            return
        dtype = encoder_dtype(self.encoders_dtype, "depth_model")
        with torch.device("cpu"):
            processor, model = self._build("depth_processor"), self._build("depth_model", dtype)
        self.encoders["depth_processor"] = processor
        self.encoders["depth_model"] = model.eval().requires_grad_(False).to(self.encoders.device)
        if dtype is not None and model.dtype != dtype:
            model.to(dtype)

    @property
    def has_preprocessors(self) -> bool:
        return super().has_preprocessors and (not self.depth_control or all(n in self.encoders for n in DEPTH_PARTS))

    @torch.no_grad()
    def control_video(self, video: torch.Tensor) -> torch.Tensor:
        """The control pixels of a video [B, 3, F, H, W] in [-1, 1]: itself, or its depth video (depth control)."""
        if not self.depth_control:
            return video
        self._require_encoders("control_video")
        return self.adapter.depth_video(self, video)

    @torch.no_grad()
    def fit_reference_images(self, images: list, height: int, width: int) -> torch.Tensor:
        """PIL reference images -> [1, R, 3, height, width] in [-1, 1] for encode_control, by WanVACEPipeline's own
        preprocessing: each scaled to fit the video size keeping its aspect ratio, centred on a white canvas (as
        VACE prepares references; a stretched subject would not look like itself)."""
        self._require_encoders("fit_reference_images")
        # num_frames=1: without a video the pipeline allocates a zero video of that many frames, unused here
        fitted = self.pipeline().preprocess_conditions(reference_images=list(images), height=height, width=width,
                                                       num_frames=1, dtype=torch.float32,
                                                       device=torch.device("cpu"))[2][0]
        return torch.stack(fitted)[None]

    @torch.no_grad()
    def encode_control(self, video: torch.Tensor, mask: torch.Tensor | None = None,
                       reference_images: torch.Tensor | None = None) -> torch.Tensor:
        """A video [B, 3, F, H, W] in [-1, 1] (F = (T-1)*4+1, the size of the generated video) and an optional
        mask [B, 1, F, H, W] in [0, 1] -> control_hidden_states (depth control: of the video's depth map).

        Optional reference images [B, R, 3, H, W] in [-1, 1] (already at the video's size: fit_reference_images
        fits image files onto a white canvas, as the pipeline does) become R leading latent frames of the control, as in
        WanVACEPipeline: the latents to denoise then have R extra leading frames too (drop them after sampling)."""
        self._require_encoders("encode_control")
        return self.adapter.encode_control(self, self.control_video(video), mask, reference_images)
