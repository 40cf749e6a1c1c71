"""Fine-tune FLUX.1-dev with flow matching at 512 px; samples in 28 steps with the distilled guidance
3.5."""

from fastgen.configs.experiments.Flux._common import apply_flux
from fastgen.configs.methods import config_sft


def create_config():
    config = config_sft.create_config()
    apply_flux(config, name="sft")
    config.model.student_sample_steps = 28  # the teacher's samples: the FLUX.1-dev pipeline's default steps
    return config
