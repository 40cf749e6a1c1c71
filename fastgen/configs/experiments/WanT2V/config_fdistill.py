"""f-distill of Wan 2.1 T2V 1.3B (Jensen-Shannon divergence): the Wan DMD2 recipe with the density-ratio weighted
distribution-matching gradient."""

from fastgen.configs.experiments.WanT2V.config_dmd2 import apply_wan_dmd2
from fastgen.configs.methods import config_f_distill


def create_config():
    config = apply_wan_dmd2(config_f_distill.create_config(), name="fdistill")
    config.model.f_div = "js"
    return config
