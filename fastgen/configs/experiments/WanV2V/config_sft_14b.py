"""Fine-tune Wan 2.1 VACE 14B with flow matching on depth-controlled video-to-video at 480p / 81 frames: the 1.3B
recipe under FSDP2 with meta init and bf16 weights, the frozen encoders (UMT5, VAE, depth model) kept on the CPU.

On the CPU the depth model (ViT-L, every frame) dominates a step's encoding time; where GPU memory allows, run the
encoders beside the transformer with `- model.net.encoders_device=null`."""

from fastgen.configs.experiments.WanT2V._common import apply_wan_14b_fsdp
from fastgen.configs.experiments.WanV2V import config_sft
from fastgen.configs.experiments.WanV2V._common import apply_wan_v2v


def create_config():
    config = config_sft.create_config()
    apply_wan_v2v(config, name="sft_14b", size="14b")
    apply_wan_14b_fsdp(config)
    config.model.net.encoders_device = "cpu"
    return config
