"""MeanFlow with DiT-XL/2 on ImageNet-256 latents: the DiT-B recipe with guidance scale 0.2, guidance mixture 0.92
inside the window t <= 0.75, and 8 samples per GPU."""

from fastgen.configs.experiments.DiT.config_mf_b import apply_mean_flow_dit
from fastgen.configs.methods import config_mean_flow
from fastgen.configs.net import DiT_IN256_XL_Config


def create_config():
    config = apply_mean_flow_dit(config_mean_flow.create_config(), DiT_IN256_XL_Config, name="mf_xl")
    config.model.guidance_scale = 0.2
    config.model.guidance_mixture_ratio = 0.92
    config.model.guidance_t_end = 0.75
    config.dataloader_train.batch_size = 8
    return config
