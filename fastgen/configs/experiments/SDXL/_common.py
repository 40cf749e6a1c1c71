"""Settings shared by the SDXL experiments (1024 px: latents [4, 128, 128])."""

from fastgen.configs.data import ImageLatentLoaderConfig, ImageLoaderConfig
from fastgen.configs.net import SDXLConfig

SDXL_INPUT_SHAPE = [4, 128, 128]


def apply_sdxl(config, name: str) -> None:
    """SDXL from the hub, pixel + caption shards encoded on the fly (experiments on pre-encoded data switch the
    loader and turn the encoders off)."""
    config.model.net = SDXLConfig
    config.model.input_shape = list(SDXL_INPUT_SHAPE)
    config.model.enable_preprocessors = True
    config.dataloader_train = ImageLoaderConfig
    config.dataloader_train.img_size = 1024
    config.log_config.group = "sdxl"
    config.log_config.name = name


def use_sdxl_latents(config, batch_size: int) -> None:
    """Pre-encoded shards (VAE latents + text-embedding mappings): the encoders are not built."""
    config.model.enable_preprocessors = False
    config.dataloader_train = ImageLatentLoaderConfig
    config.dataloader_train.batch_size = batch_size
