"""Fine-tune Wan 2.1 T2V 14B with flow matching at 480p / 81 frames: the 1.3B recipe under FSDP2 with meta init and
bf16 weights."""

from fastgen.configs.experiments.WanT2V import config_sft
from fastgen.configs.experiments.WanT2V._common import apply_wan, apply_wan_14b_fsdp


def create_config():
    config = config_sft.create_config()
    apply_wan(config, name="sft_14b", size="14b")
    apply_wan_14b_fsdp(config)
    return config
