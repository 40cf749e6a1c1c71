"""Causal fine-tuning (diffusion forcing) of Wan 2.1 T2V 14B: the 1.3B recipe under FSDP2 with meta init and bf16
weights."""

from fastgen.configs.experiments.WanT2V import config_sft_causal
from fastgen.configs.experiments.WanT2V._causal import apply_causal_wan
from fastgen.configs.experiments.WanT2V._common import apply_wan_14b_fsdp


def create_config():
    config = config_sft_causal.create_config()
    apply_causal_wan(config, name="sft_causal_14b", size="14b")
    apply_wan_14b_fsdp(config)
    return config
