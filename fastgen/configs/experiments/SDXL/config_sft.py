"""Fine-tune SDXL with DSM (eps prediction) at 1024 px."""

from fastgen.configs.experiments.SDXL._common import apply_sdxl
from fastgen.configs.methods import config_sft


def create_config():
    config = config_sft.create_config()
    apply_sdxl(config, name="sft")
    return config
