"""Fine-tune Qwen-Image with flow matching at 512 px (FSDP2 with meta init and CPU offload, bf16); samples
with true CFG 4.0 in 50 steps."""

from fastgen.configs.experiments.QwenImage._common import apply_large_model_fsdp, apply_qwen_image
from fastgen.configs.methods import config_sft


def create_config():
    config = config_sft.create_config()
    apply_qwen_image(config, name="sft")
    apply_large_model_fsdp(config)
    config.model.guidance_scale = 4.0  # true CFG
    config.model.student_sample_steps = 50  # the teacher's samples: the Qwen-Image pipeline's default steps
    return config
