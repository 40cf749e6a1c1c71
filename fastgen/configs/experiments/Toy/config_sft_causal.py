"""CausalSFT (diffusion forcing) of a toy block-causal frame transformer on AR(1) "videos" (seconds on CPU).

    python train.py --config=fastgen/configs/experiments/Toy/config_sft_causal.py - trainer.max_iter=1000

Videos are 8 frames of 4-D vectors from a stationary AR(1) chain (fastgen/utils/ar1_video.py), chunks of 2 frames,
each chunk with its own t. The distribution is known exactly, so benchmarks/oracle_causal.py scores the AR samples
(per-frame marginals, lag-1 correlation, drift at 2x the training length).
"""

from fastgen.configs.data import AR1Video_Loader_Config
from fastgen.configs.experiments.Toy.config_sft import apply_toy_settings
from fastgen.configs.methods import config_sft_causal
from fastgen.configs.net import Toy_Causal_Video_Config


def apply_toy_causal_settings(config, name: str, max_iter: int = 600, batch_size: int = 128) -> None:
    """AR(1) videos [4, 8, 1, 1], the toy causal student (chunks of 2, cache window 6), Adam 1e-3, W&B off."""
    config.dataloader_train = AR1Video_Loader_Config
    apply_toy_settings(config, name=name, max_iter=max_iter, batch_size=batch_size)
    config.model.net = Toy_Causal_Video_Config
    config.model.input_shape = [4, 8, 1, 1]
    config.trainer.save_ckpt_iter = max_iter
    config.trainer.validation_iter = max_iter
    config.log_config.group = "toy_causal"


def create_config():
    config = config_sft_causal.create_config()
    apply_toy_causal_settings(config, name="sft_causal_ar1")
    config.model.student_sample_steps = 8  # AR sampling: 8 steps per chunk
    return config
