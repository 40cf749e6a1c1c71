"""Settings shared by the SDXL experiments (1024 px: latents [4, 128, 128])."""

from fastgen.configs.data import ImageLatentLoaderConfig, ImageLoaderConfig
from fastgen.configs.experiments._pretrained import apply_pretrained_family
from fastgen.configs.net import SDXLConfig

SDXL_INPUT_SHAPE = [4, 128, 128]


def apply_sdxl(config, name: str) -> None:
    """SDXL from the hub, pixel + caption shards encoded on the fly (experiments on pre-encoded data switch the
    loader and turn the encoders off)."""
    apply_pretrained_family(config, SDXLConfig, SDXL_INPUT_SHAPE, ImageLoaderConfig, {"img_size": 1024}, "sdxl", name)


def use_sdxl_latents(config, batch_size: int) -> None:
    """Pre-encoded shards (VAE latents + text-embedding mappings): the encoders are not built."""
    config.model.enable_preprocessors = False
    config.dataloader_train = ImageLatentLoaderConfig
    config.dataloader_train.batch_size = batch_size
