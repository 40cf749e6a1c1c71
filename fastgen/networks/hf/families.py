"""The public diffusers-backed networks: HFNetwork bound to one family adapter each (configs name these)."""

from __future__ import annotations

from fastgen.networks.hf import adapters
from fastgen.networks.hf.network import HFNetwork


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


FAMILIES = {cls.adapter.family: cls for cls in (SD15, SDXL, Flux, QwenImage)}


def network_class(family: str) -> type[HFNetwork]:
    """The network class of a family name (sd15, sdxl, flux, qwen_image)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown diffusers family {family!r}; expected one of {sorted(FAMILIES)}")
    return FAMILIES[family]
