"""DMD2 of Wan 2.1 VACE 1.3B (depth-controlled video-to-video) into a 4-step generator at 480p / 81 frames: the
WanT2V DMD2 recipe (multiscale video discriminator heads on blocks 15, 22 and 29, GAN weight 0.03, teacher CFG 5.0,
6k iterations, global batch 64) with the VACE network; teacher, student and fake score all see the control latents."""

from fastgen.configs.experiments.WanT2V.config_dmd2 import apply_wan_dmd2
from fastgen.configs.experiments.WanV2V._common import apply_wan_v2v
from fastgen.configs.methods import config_dmd2


def create_config():
    config = apply_wan_dmd2(config_dmd2.create_config(), name="dmd2")
    apply_wan_v2v(config, name="dmd2")  # the VACE network and the wan_v2v run group on top of the T2V recipe
    return config
