"""Settings shared by the FLUX.1 experiments (512 px: latents [16, 64, 64]; distilled guidance 3.5 is a network
input, see FluxConfig)."""

from fastgen.configs.data import ImageLoaderConfig
from fastgen.configs.net import FluxConfig

FLUX_INPUT_SHAPE = [16, 64, 64]


def apply_flux(config, name: str) -> None:
    config.model.net = FluxConfig
    config.model.input_shape = list(FLUX_INPUT_SHAPE)
    config.model.enable_preprocessors = True
    config.dataloader_train = ImageLoaderConfig
    config.dataloader_train.img_size = 512
    config.log_config.group = "flux"
    config.log_config.name = name
