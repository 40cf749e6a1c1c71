"""Fine-tune CogVideoX 5B (v prediction) at 480x720 / 49 frames: the 2B recipe on the 5B transformer."""

from fastgen.configs.experiments.CogVideoX.config_sft import apply_cogvideox_sft
from fastgen.configs.methods import config_sft


def create_config():
    return apply_cogvideox_sft(config_sft.create_config(), name="sft_5b", size="5b")
