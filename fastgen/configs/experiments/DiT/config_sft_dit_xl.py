"""Fine-tune the released DiT-XL/2 (ImageNet-256) with DSM: eps prediction on DDPM's linear-beta schedule (the one it
was trained with, see _common.ddpm_linear_alphas_cumprod), learned-sigma output channels kept."""

from fastgen.configs.experiments.DiT._common import apply_imagenet256, ddpm_linear_alphas_cumprod, release_path
from fastgen.configs.methods import config_sft
from fastgen.configs.net import DiT_IN256_XL_Config


def create_config():
    config = config_sft.create_config()
    config.model.net = DiT_IN256_XL_Config
    net = config.model.net
    net.net_pred_type, net.learn_sigma = "eps", True
    net.schedule_type, net.alphas_cumprod = "alphas", ddpm_linear_alphas_cumprod()
    config.model.pretrained_model_path = release_path("DiT-XL-2-256x256")
    apply_imagenet256(config, name="sft_dit_xl")
    return config
