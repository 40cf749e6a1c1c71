"""SFT (denoising score matching) of a small MLP on the 8-mode ring Gaussian mixture: trains in seconds on CPU.

    python train.py --config=fastgen/configs/experiments/Toy/config_sft.py - trainer.max_iter=500

The data distribution is known exactly (fastgen.utils.gmm), so sample quality can be measured directly
(sliced Wasserstein distance of `model.generator_fn` samples, 35-evaluation Heun, to fresh data).
"""

from fastgen.configs.callbacks import WANDB_CALLBACK, GradClip_CALLBACK, ParamCount_CALLBACK
from fastgen.configs.data import GaussianMixture_Loader_Config
from fastgen.configs.methods import config_sft
from fastgen.configs.methods.common import callbacks_from
from fastgen.configs.net import Toy_MLP_Config


def apply_toy_settings(config, name: str, max_iter: int = 2000, batch_size: int = 256) -> None:
    """ToyMLP student on 2-D data, device auto, Adam 1e-3 without warm-up, W&B disabled, short intervals."""
    config.model.net = Toy_MLP_Config
    config.model.input_shape = [2]
    config.model.device = "auto"
    config.model.net_optimizer.optim_type = "adam"
    config.model.net_optimizer.lr = 1e-3
    config.model.net_optimizer.weight_decay = 0.0
    config.model.net_scheduler.warm_up_steps = [0]
    config.trainer.callbacks = callbacks_from(GradClip_CALLBACK, ParamCount_CALLBACK, WANDB_CALLBACK)
    config.trainer.callbacks.grad_clip.grad_norm = 10.0
    config.trainer.max_iter = max_iter
    config.trainer.logging_iter = 100
    config.trainer.save_ckpt_iter = 500
    config.trainer.validation_iter = 500
    config.trainer.tf32_enabled = False
    config.log_config.group = "toy"
    config.log_config.name = name
    config.log_config.wandb_mode = "disabled"
    config.dataloader_train.batch_size = batch_size


def create_config():
    config = config_sft.create_config()
    config.dataloader_train = GaussianMixture_Loader_Config
    apply_toy_settings(config, name="sft_ring8")
    t_cfg = config.model.sample_t_cfg
    t_cfg.time_dist_type = "lognormal"  # EDM's training distribution of log sigma
    t_cfg.train_p_mean = -1.2
    t_cfg.train_p_std = 1.2
    config.model.student_sample_steps = 35  # SFT inference = 35-evaluation Heun (18 steps) PF-ODE sampling
    return config
