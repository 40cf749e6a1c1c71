"""DMD2 of Wan 2.1 I2V 14B 480P into a 4-step image-to-video generator (480x832, 81 frames): the Wan T2V DMD2
recipe (multiscale discriminator heads on blocks 20, 30, 39, GAN weight 0.03, CFG 5.0 against the negative prompt
with the image kept, 6k iterations, global batch 64), FSDP2 with meta init and bf16 weights."""

from fastgen.configs.discriminator import Discriminator_Wan_14B_Multiscale_Config
from fastgen.configs.experiments.WanI2V._common import apply_wan_i2v
from fastgen.configs.experiments.WanT2V._common import apply_wan_dmd2_recipe
from fastgen.configs.methods import config_dmd2


def create_config():
    config = config_dmd2.create_config()
    apply_wan_i2v(config, name="dmd2_14b", size="14b")
    apply_wan_dmd2_recipe(config, Discriminator_Wan_14B_Multiscale_Config)
    return config
