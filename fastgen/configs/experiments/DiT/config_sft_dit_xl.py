"""Fine-tune the released DiT-XL/2 (ImageNet-256) with DSM: eps prediction on DDPM's linear-beta schedule (the one it
was trained with; SD's "sd" schedule is linear in sqrt(beta), other noise levels), learned-sigma output channels kept."""

from fastgen.configs.experiments.DiT._common import apply_imagenet256, release_path
from fastgen.configs.methods import config_sft
from fastgen.configs.net import DiT_IN256_XL_Config


def create_config():
    config = config_sft.create_config()
    config.model.net = DiT_IN256_XL_Config
    net = config.model.net
    net.net_pred_type, net.learn_sigma = "eps", True
    net.schedule_type = "ddpm_linear"
    config.model.pretrained_model_path = release_path("DiT-XL-2-256x256")
    apply_imagenet256(config, name="sft_dit_xl")
    return config
