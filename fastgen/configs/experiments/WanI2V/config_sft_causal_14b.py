"""Causal fine-tuning of Wan 2.1 I2V 14B 480P by diffusion forcing (CausalSFTModel: an independent t per chunk of 3
latent frames; the first-frame condition goes with every chunk, the CLIP image tokens through cross-attention);
samples chunk by chunk with the KV cache, 50 steps per chunk, CFG 5.0; FSDP2 with meta init and bf16 weights."""

from fastgen.configs.experiments.WanI2V._common import apply_causal_wan_i2v
from fastgen.configs.methods import config_sft_causal


def apply_wan_i2v_sft_causal(config, name: str, size: str):
    apply_causal_wan_i2v(config, name, size)
    config.model.guidance_scale = 5.0
    config.model.student_sample_steps = 50
    return config


def create_config():
    return apply_wan_i2v_sft_causal(config_sft_causal.create_config(), name="sft_causal_14b", size="14b")
