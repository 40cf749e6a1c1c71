"""Fine-tune Stable Diffusion 1.5 with DSM (eps prediction) at 512 px; samples with CFG 7.5 and 50 steps."""

from fastgen.configs.experiments.SD15._common import apply_sd15
from fastgen.configs.methods import config_sft


def create_config():
    config = config_sft.create_config()
    apply_sd15(config, name="sft")
    config.model.guidance_scale = 7.5
    config.model.student_sample_steps = 50
    return config
