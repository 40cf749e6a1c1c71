"""Fine-tune Wan 2.1 VACE 1.3B with flow matching on depth-controlled video-to-video at 480p / 81 frames; samples
in 50 steps (the pipeline's default) with CFG 5.0."""

from fastgen.configs.experiments.WanV2V._common import apply_wan_v2v
from fastgen.configs.methods import config_sft


def create_config():
    config = config_sft.create_config()
    apply_wan_v2v(config, name="sft")
    config.model.guidance_scale = 5.0
    config.model.student_sample_steps = 50
    return config
