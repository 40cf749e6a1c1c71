"""Causal fine-tuning of Wan 2.1 T2V 1.3B by diffusion forcing (CausalSFTModel: an independent t per chunk of 3
latent frames) at 480p / 81 frames; samples chunk by chunk with the KV cache, 50 steps per chunk, CFG 5.0."""

from fastgen.configs.experiments.WanT2V._causal import apply_causal_wan
from fastgen.configs.methods import config_sft_causal


def create_config():
    config = config_sft_causal.create_config()
    apply_causal_wan(config, name="sft_causal")
    config.model.guidance_scale = 5.0
    config.model.student_sample_steps = 50
    return config
