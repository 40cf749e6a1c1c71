"""Settings shared by the DiT/SiT experiments on class-conditional ImageNet-256 (SD-VAE latents [4, 32, 32])."""

from fastgen.configs.data import ImageNet256_Loader_Config
from fastgen.utils.env import ckpt_root_dir

INPUT_SHAPE = [4, 32, 32]


def release_path(name: str) -> str:
    """A DiT/SiT release converted to our layout (fastgen.networks.DiT.convert), e.g. DiT-XL-2-256x256."""
    return f"{ckpt_root_dir()}/imagenet-256/{name}.pt"


def ddpm_linear_alphas_cumprod(num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> list:
    """alpha-bar of DDPM's linear betas, which DiT was trained with (pure Python: configs import no torch).

    Why not schedule_type="sd": SD's betas are linear in sqrt(beta) (0.00085 -> 0.012), a different noise level per
    step, so a DiT teacher would be queried at the wrong noise levels."""
    abar, table = 1.0, []
    for i in range(num_steps):
        abar *= 1.0 - (beta_start + (beta_end - beta_start) * i / (num_steps - 1))
        table.append(abar)
    return table


def apply_imagenet256(config, name: str) -> None:
    """Class-conditional ImageNet-256 SD-VAE latents."""
    config.dataloader_train = ImageNet256_Loader_Config
    config.dataloader_train.use_labels = True
    config.model.input_shape = list(INPUT_SHAPE)
    config.log_config.group = "imagenet256"
    config.log_config.name = name
