"""Fine-tune FLUX.1-dev with flow matching at 512 px."""

from fastgen.configs.experiments.Flux._common import apply_flux
from fastgen.configs.methods import config_sft


def create_config():
    config = config_sft.create_config()
    apply_flux(config, name="sft")
    return config
