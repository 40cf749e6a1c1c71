"""Self-Forcing of Wan 2.1 T2V 14B: the 1.3B recipe with the 14B causal student and teacher, the 14B multiscale
discriminator, FSDP2 with meta init and bf16 weights."""

from fastgen.configs.discriminator import Discriminator_Wan_14B_Multiscale_Config
from fastgen.configs.experiments.WanT2V._common import apply_wan_14b_fsdp
from fastgen.configs.experiments.WanT2V.config_sf import apply_wan_self_forcing
from fastgen.configs.methods import config_self_forcing


def create_config():
    config = apply_wan_self_forcing(config_self_forcing.create_config(), name="sf_14b", size="14b",
                                    discriminator=Discriminator_Wan_14B_Multiscale_Config)
    apply_wan_14b_fsdp(config)
    return config
