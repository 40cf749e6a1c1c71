"""Fine-tune Wan 2.1 I2V 14B 480P with flow matching on videos whose first frame is the image condition; samples in
50 steps with CFG 5.0 (the Wan pipeline's defaults); FSDP2 with meta init and bf16 weights."""

from fastgen.configs.experiments.WanI2V._common import apply_wan_i2v
from fastgen.configs.methods import config_sft


def apply_wan_i2v_sft(config, name: str, size: str):
    apply_wan_i2v(config, name, size)
    config.model.guidance_scale = 5.0
    config.model.student_sample_steps = 50
    return config


def create_config():
    return apply_wan_i2v_sft(config_sft.create_config(), name="sft_14b", size="14b")
