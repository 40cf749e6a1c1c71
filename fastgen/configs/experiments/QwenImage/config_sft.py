"""Fine-tune Qwen-Image with flow matching at 512 px (FSDP2 with meta init and CPU offload, bf16)."""

from fastgen.configs.experiments.QwenImage._common import apply_large_model_fsdp, apply_qwen_image
from fastgen.configs.methods import config_sft


def create_config():
    config = config_sft.create_config()
    apply_qwen_image(config, name="sft")
    apply_large_model_fsdp(config)
    return config
