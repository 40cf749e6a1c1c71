"""Fine-tune CogVideoX 2B (v prediction) at 480x720 / 49 frames; samples in 50 steps (the CogVideoX pipeline's
default) with CFG 6.0."""

from fastgen.configs.experiments.CogVideoX._common import apply_cogvideox
from fastgen.configs.methods import config_sft


def apply_cogvideox_sft(config, name: str, size: str):
    apply_cogvideox(config, name, size)
    config.model.guidance_scale = 6.0
    config.model.student_sample_steps = 50
    return config


def create_config():
    return apply_cogvideox_sft(config_sft.create_config(), name="sft", size="2b")
