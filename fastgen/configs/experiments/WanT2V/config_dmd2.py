"""DMD2 of Wan 2.1 T2V 1.3B into a 4-step generator at 480p / 81 frames: multiscale video discriminator heads on
transformer blocks 15, 22 and 29 (GAN weight 0.03), teacher CFG 5.0, 6k iterations, global batch 64."""

from fastgen.configs.discriminator import Discriminator_Wan_1_3B_Multiscale_Config
from fastgen.configs.experiments.WanT2V._common import apply_wan, apply_wan_dmd2_recipe
from fastgen.configs.methods import config_dmd2


def apply_wan_dmd2(config, name: str, size: str = "1.3b", discriminator=Discriminator_Wan_1_3B_Multiscale_Config):
    """Wan + the video DMD2 recipe (shared with config_fdistill and the 14B / 5B configs)."""
    apply_wan(config, name, size)
    apply_wan_dmd2_recipe(config, discriminator)
    return config


def create_config():
    return apply_wan_dmd2(config_dmd2.create_config(), name="dmd2")
