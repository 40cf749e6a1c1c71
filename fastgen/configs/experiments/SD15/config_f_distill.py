"""f-distill of Stable Diffusion 1.5 (JS divergence by default): the SD1.5 DMD2 recipe with the density-ratio
weighted distribution-matching gradient."""

from fastgen.configs.experiments.SD15.config_dmd2 import apply_sd15_dmd2
from fastgen.configs.methods import config_f_distill


def create_config():
    return apply_sd15_dmd2(config_f_distill.create_config(), name="f_distill")
