"""Fine-tune Wan 2.2 TI2V-5B image-to-video with flow matching (704x1280, 81 frames; the first latent frame is the
clean image latent and is not trained on); samples in 50 steps with CFG 5.0; FSDP2 with meta init and bf16
weights."""

from fastgen.configs.experiments.WanI2V.config_sft_14b import apply_wan_i2v_sft
from fastgen.configs.methods import config_sft


def create_config():
    return apply_wan_i2v_sft(config_sft.create_config(), name="sft_wan22_5b", size="wan22_5b")
