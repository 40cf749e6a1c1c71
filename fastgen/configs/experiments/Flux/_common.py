"""Settings shared by the FLUX.1 experiments (512 px: latents [16, 64, 64]; distilled guidance 3.5 is a network
input, see FluxConfig)."""

from fastgen.configs.data import ImageLoaderConfig
from fastgen.configs.experiments._pretrained import apply_pretrained_family
from fastgen.configs.net import FluxConfig

FLUX_INPUT_SHAPE = [16, 64, 64]


def apply_flux(config, name: str) -> None:
    apply_pretrained_family(config, FluxConfig, FLUX_INPUT_SHAPE, ImageLoaderConfig, {"img_size": 512}, "flux", name)
