"""DMD2 of Wan 2.2 TI2V-5B into a 4-step image-to-video generator (704x1280, 81 frames; the image latent is the
first latent frame, which carries no loss): the Wan T2V DMD2 recipe with the 5B multiscale discriminator (blocks
15, 22, 29), FSDP2 with meta init and bf16 weights."""

from fastgen.configs.discriminator import Discriminator_Wan22_5B_Multiscale_Config
from fastgen.configs.experiments.WanI2V._common import apply_wan_i2v
from fastgen.configs.experiments.WanT2V._common import apply_wan_dmd2_recipe
from fastgen.configs.methods import config_dmd2


def create_config():
    config = config_dmd2.create_config()
    apply_wan_i2v(config, name="dmd2_wan22_5b", size="wan22_5b")
    apply_wan_dmd2_recipe(config, Discriminator_Wan22_5B_Multiscale_Config)
    return config
