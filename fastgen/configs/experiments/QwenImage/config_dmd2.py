"""DMD2 of Qwen-Image into a 4-step generator: FSDP2 with meta init and CPU offload, bf16 with float32 reduction,
teacher CFG 4.0, ImageDiT discriminator heads on the middle of the 60 transformer blocks."""

from fastgen.configs.discriminator import Discriminator_ImageDiT_QwenImage_Config
from fastgen.configs.experiments.QwenImage._common import apply_large_model_fsdp, apply_qwen_image
from fastgen.configs.methods import config_dmd2


def create_config():
    config = config_dmd2.create_config()
    apply_qwen_image(config, name="dmd2")
    apply_large_model_fsdp(config)
    config.model.discriminator = Discriminator_ImageDiT_QwenImage_Config
    config.model.guidance_scale = 4.0
    config.model.student_sample_steps = 4
    return config
