"""DMD2 of Wan 2.1 T2V 14B into a 2-step generator (t 0.999 -> 0.833 -> 0): the 1.3B recipe with the 14B multiscale
discriminator (blocks 20, 30, 39), FSDP2 with meta init and bf16 weights."""

from fastgen.configs.discriminator import Discriminator_Wan_14B_Multiscale_Config
from fastgen.configs.experiments.WanT2V._common import WAN_T_LIST_2, apply_wan_14b_fsdp, apply_wan_distill
from fastgen.configs.experiments.WanT2V.config_dmd2 import apply_wan_dmd2
from fastgen.configs.methods import config_dmd2


def create_config():
    config = apply_wan_dmd2(config_dmd2.create_config(), name="dmd2_14b", size="14b",
                            discriminator=Discriminator_Wan_14B_Multiscale_Config)
    apply_wan_distill(config, t_list=WAN_T_LIST_2)
    apply_wan_14b_fsdp(config)
    return config
