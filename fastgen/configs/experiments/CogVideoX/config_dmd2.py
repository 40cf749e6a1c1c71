"""DMD2 of CogVideoX 5B into a 4-step generator (deterministic sampling on t 0.999, 0.937, 0.833, 0.624, 0):
multiscale video discriminator heads on transformer blocks 21, 31 and 41, teacher CFG 6.0."""

from fastgen.configs.discriminator import Discriminator_CogVideoX_5B_Multiscale_Config
from fastgen.configs.experiments.CogVideoX._common import apply_cogvideox
from fastgen.configs.experiments.WanT2V._common import WAN_T_LIST_4, apply_wan_distill
from fastgen.configs.methods import config_dmd2


def create_config():
    config = config_dmd2.create_config()
    apply_cogvideox(config, name="dmd2", size="5b")
    apply_wan_distill(config, t_list=WAN_T_LIST_4)  # the same 4-step list and ode sampling as the Wan students
    config.model.discriminator = Discriminator_CogVideoX_5B_Multiscale_Config
    config.model.guidance_scale = 6.0
    return config
