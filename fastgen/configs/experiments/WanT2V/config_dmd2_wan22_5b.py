"""DMD2 of Wan 2.2 TI2V-5B (used text-to-video) into a 4-step generator at 704x1280 / 81 frames (latents
[48, 21, 44, 80], per-token time): the 1.3B recipe with the 5B multiscale discriminator (blocks 15, 22, 29), FSDP2
with meta init and bf16 weights."""

from fastgen.configs.discriminator import Discriminator_Wan22_5B_Multiscale_Config
from fastgen.configs.experiments.WanT2V._common import apply_wan_14b_fsdp
from fastgen.configs.experiments.WanT2V.config_dmd2 import apply_wan_dmd2
from fastgen.configs.methods import config_dmd2


def create_config():
    config = apply_wan_dmd2(config_dmd2.create_config(), name="dmd2_wan22_5b", size="5b",
                            discriminator=Discriminator_Wan22_5B_Multiscale_Config)
    apply_wan_14b_fsdp(config)
    return config
