"""DMD2 of Stable Diffusion 1.5 into a 1-step generator at 512 px: bf16 autocast, lr 1e-5, SD1.5 discriminator heads
(GAN weight 1e-3), teacher CFG 1.75, global batch 2048."""

from fastgen.configs.discriminator import Discriminator_SD15_Res512_Config
from fastgen.configs.experiments.SD15._common import apply_sd15, apply_sd_dmd2
from fastgen.configs.methods import config_dmd2


def apply_sd15_dmd2(config, name: str):
    """SD1.5 + the DMD2 recipe (shared with config_f_distill)."""
    apply_sd15(config, name)
    apply_sd_dmd2(config, lr=1e-5, discriminator=Discriminator_SD15_Res512_Config, gan_loss_weight_gen=1e-3,
                  guidance_scale=1.75)
    config.trainer.batch_size_global = 2048
    return config


def create_config():
    return apply_sd15_dmd2(config_dmd2.create_config(), name="dmd2")
