"""Settings shared by the DiT/SiT experiments on class-conditional ImageNet-256 (SD-VAE latents [4, 32, 32])."""

from fastgen.configs.data import ImageNet256_Loader_Config
from fastgen.utils.env import ckpt_root_dir

INPUT_SHAPE = [4, 32, 32]


def release_path(name: str) -> str:
    """A DiT/SiT release converted to our layout (fastgen.networks.DiT.convert), e.g. DiT-XL-2-256x256."""
    return f"{ckpt_root_dir()}/imagenet-256/{name}.pt"


def apply_imagenet256(config, name: str) -> None:
    """Class-conditional ImageNet-256 SD-VAE latents."""
    config.dataloader_train = ImageNet256_Loader_Config
    config.dataloader_train.use_labels = True
    config.model.input_shape = list(INPUT_SHAPE)
    config.log_config.group = "imagenet256"
    config.log_config.name = name
