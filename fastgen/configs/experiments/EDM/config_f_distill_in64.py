"""f-distill (JS) on class-conditional ImageNet-64: the DMD2 ImageNet-64 recipe with f-divergence weighting."""

from fastgen.configs.experiments.EDM.config_dmd2_in64 import apply_in64
from fastgen.configs.methods import config_f_distill


def create_config():
    config = apply_in64(config_f_distill.create_config())
    config.model.f_distill.f_div = "js"
    config.model.f_distill.ratio_ema_rate = 0.5
    config.log_config.name = "f_distill_in64"
    return config
