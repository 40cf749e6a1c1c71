"""f-distill of SDXL: the SDXL DMD2 recipe with lr 5e-7."""

from fastgen.configs.experiments.SDXL.config_dmd2 import apply_sdxl_dmd2
from fastgen.configs.methods import config_f_distill


def create_config():
    return apply_sdxl_dmd2(config_f_distill.create_config(), name="f_distill", lr=5e-7)
