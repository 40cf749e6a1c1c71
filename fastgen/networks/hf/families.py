"""The public diffusers-backed networks: HFNetwork bound to one family adapter each (configs name these)."""

from __future__ import annotations

import torch

from fastgen.networks.hf import adapters, video_adapters
from fastgen.networks.hf.cosmos import CosmosPredict2
from fastgen.networks.hf.network import HFNetwork
from fastgen.networks.hf.vace import VACEWan


class SD15(HFNetwork):
    """Stable Diffusion 1.x (UNet2DConditionModel + CLIP + AutoencoderKL); eps on the sd schedule."""

    adapter = adapters.SD15Adapter()


class SDXL(HFNetwork):
    """Stable Diffusion XL (UNet with text_time embedding + two CLIP encoders); eps on the sdxl schedule."""

    adapter = adapters.SDXLAdapter()


class Flux(HFNetwork):
    """FLUX.1 (FluxTransformer2DModel + CLIP + T5); flow on rf. guidance_scale: the distilled guidance input."""

    adapter = adapters.FluxAdapter()


class QwenImage(HFNetwork):
    """Qwen-Image (QwenImageTransformer2DModel + Qwen2.5-VL + AutoencoderKLQwenImage); flow on rf."""

    adapter = adapters.QwenImageAdapter()


class Wan(HFNetwork):
    """Wan 2.1 T2V (WanTransformer3DModel + UMT5 + AutoencoderKLWan); video latents [B, C, T, H, W], flow on rf.
    Wan 2.2 TI2V-5B: expand_timesteps=True (per-token time; t may be [B, T])."""

    adapter = video_adapters.WanAdapter()


class WanI2V(HFNetwork):
    """Wan 2.1 I2V (+ CLIP image encoder, first-frame latents with mask); condition keys prompt_embeds,
    image_embeds, first_frame_cond (encode_image_condition builds the last two from images)."""

    adapter = video_adapters.WanI2VAdapter()

    @torch.no_grad()
    def encode_image_condition(self, images, num_frames: int) -> dict:
        self._require_encoders("encode_image_condition")
        return self.adapter.encode_image_condition(self, images, num_frames)


class Wan22I2V(WanI2V):
    """Wan 2.2 TI2V-5B image-to-video (per-token time; the clean image latent replaces the first latent frame, whose
    tokens get time 0; no CLIP encoder); condition keys prompt_embeds, first_frame_cond (the image latent
    [B, C, 1, h, w], from encode_image_condition). The first frame's prediction always gives x0 = the image."""

    adapter = video_adapters.Wan22I2VAdapter()


class CogVideoX(HFNetwork):
    """CogVideoX 2B / 5B (CogVideoXTransformer3DModel + T5 + AutoencoderKLCogVideoX); latents [B, C, T, H, W],
    v on the cogvideox schedule."""

    adapter = video_adapters.CogVideoXAdapter()


FAMILIES = {cls.adapter.family: cls for cls in (SD15, SDXL, Flux, QwenImage, Wan, WanI2V, Wan22I2V, VACEWan,
                                               CogVideoX, CosmosPredict2)}


def network_class(family: str) -> type[HFNetwork]:
    """The network class of a family name (sd15, sdxl, flux, qwen_image)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown diffusers family {family!r}; expected one of {sorted(FAMILIES)}")
    return FAMILIES[family]
