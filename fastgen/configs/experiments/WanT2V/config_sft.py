"""Fine-tune Wan 2.1 T2V 1.3B with flow matching at 480p / 81 frames; samples in 50 steps (the Wan pipeline's
default) with CFG 5.0."""

from fastgen.configs.experiments.WanT2V._common import apply_wan
from fastgen.configs.methods import config_sft


def create_config():
    config = config_sft.create_config()
    apply_wan(config, name="sft")
    config.model.guidance_scale = 5.0
    config.model.student_sample_steps = 50
    return config
