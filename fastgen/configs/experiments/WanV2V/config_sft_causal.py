"""Causal fine-tuning of Wan 2.1 VACE 1.3B by diffusion forcing (CausalSFTModel: an independent t per chunk of 3
latent frames; the control branch block-causal too) on depth-controlled video-to-video at 480p / 81 frames; samples
chunk by chunk with the KV cache, 50 steps per chunk, CFG 5.0."""

from fastgen.configs.experiments.WanV2V._common import apply_wan_v2v
from fastgen.configs.methods import config_sft_causal


def create_config():
    config = config_sft_causal.create_config()
    apply_wan_v2v(config, name="sft_causal", causal=True)
    config.model.guidance_scale = 5.0
    config.model.student_sample_steps = 50
    return config
