"""DMD2 of SDXL into a 1-step generator at 1024 px on pre-encoded latents: the Stable Diffusion DMD2 recipe with
lr 5e-5, SDXL discriminator heads (GAN weight 5e-3), teacher CFG 8.0, 6 samples per GPU, 25k iterations."""

from fastgen.configs.discriminator import Discriminator_SDXL_Res1024_Config
from fastgen.configs.experiments.SD15._common import apply_sd_dmd2
from fastgen.configs.experiments.SDXL._common import apply_sdxl, use_sdxl_latents
from fastgen.configs.methods import config_dmd2


def apply_sdxl_dmd2(config, name: str, lr: float = 5e-5):
    """SDXL + the DMD2 recipe (shared with config_f_distill)."""
    apply_sdxl(config, name)
    use_sdxl_latents(config, batch_size=6)
    apply_sd_dmd2(config, lr=lr, discriminator=Discriminator_SDXL_Res1024_Config, gan_loss_weight_gen=5e-3,
                  guidance_scale=8.0)
    config.trainer.max_iter = 25000
    return config


def create_config():
    return apply_sdxl_dmd2(config_dmd2.create_config(), name="dmd2")
