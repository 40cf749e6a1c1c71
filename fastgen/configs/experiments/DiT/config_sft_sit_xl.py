"""Fine-tune the released SiT-XL/2 (ImageNet-256) with flow matching: velocity prediction on the rectified-flow
schedule in SiT's time convention (noise at 0), CFG 4.0 for the teacher's samples."""

from fastgen.configs.experiments.DiT._common import apply_imagenet256, release_path
from fastgen.configs.methods import config_sft
from fastgen.configs.net import DiT_IN256_XL_Config


def create_config():
    config = config_sft.create_config()
    config.model.net = DiT_IN256_XL_Config
    net = config.model.net
    net.net_pred_type, net.schedule_type, net.learn_sigma = "flow", "rf", True
    net.scale_t, net.use_sit_convention = False, True
    config.model.guidance_scale = 4.0
    config.model.pretrained_model_path = release_path("SiT-XL-2-256x256")
    apply_imagenet256(config, name="sft_sit_xl")
    return config
