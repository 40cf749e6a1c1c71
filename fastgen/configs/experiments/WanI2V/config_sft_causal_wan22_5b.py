"""Causal fine-tuning of Wan 2.2 TI2V-5B image-to-video by diffusion forcing (704x1280, 81 frames; chunks of 3 latent
frames, the first chunk holding the clean image latent at time 0); samples chunk by chunk with the KV cache, 50 steps
per chunk, CFG 5.0; FSDP2 with meta init and bf16 weights."""

from fastgen.configs.experiments.WanI2V.config_sft_causal_14b import apply_wan_i2v_sft_causal
from fastgen.configs.methods import config_sft_causal


def create_config():
    return apply_wan_i2v_sft_causal(config_sft_causal.create_config(), name="sft_causal_wan22_5b", size="wan22_5b")
