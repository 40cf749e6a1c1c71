"""Teacher for the Fashion-MNIST demo: class-conditional EDM SongUNet (~0.71M parameters) trained from scratch by SFT.

    python train.py --config=fastgen/configs/experiments/FashionMNIST/config_sft_teacher.py - trainer.max_iter=6000

EDM recipe (Karras et al. 2022): preconditioned x0 prediction, lognormal log-sigma (P_mean -1.2, P_std 1.2),
sigma_data 0.5; Adam lr 1e-3 with a 200-step linear warm-up, gradient clipping at 10, batch 64, one power EMA
(`ema`, gamma 6.94) which is what gets exported and sampled. Sampling = 35-evaluation Heun (18 steps).
`scripts/train_demo_teacher.sh` holds the exact command that produced the shipped weights.
"""

from fastgen.configs.experiments.FashionMNIST._common import apply_demo_settings, power_ema
from fastgen.configs.methods import config_sft


def create_config():
    config = config_sft.create_config()
    apply_demo_settings(config, name="sft_teacher", batch_size=64)
    config.trainer.callbacks.update(power_ema())
    config.model.use_ema = ["ema"]
    t_cfg = config.model.sample_t_cfg
    t_cfg.time_dist_type = "lognormal"
    t_cfg.train_p_mean = -1.2
    t_cfg.train_p_std = 1.2
    t_cfg.min_t = 0.002
    t_cfg.max_t = 80.0
    config.model.net_optimizer.optim_type = "adam"
    config.model.net_optimizer.lr = 1e-3
    config.model.net_optimizer.weight_decay = 0.0
    config.model.net_scheduler.warm_up_steps = [200]
    config.model.student_sample_steps = 35  # SFT inference: 35 network evaluations of Heun (18 steps)
    config.trainer.max_iter = 6000
    return config
