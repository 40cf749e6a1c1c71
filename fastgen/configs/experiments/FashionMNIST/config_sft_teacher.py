"""Teacher for the Fashion-MNIST demo: class-conditional EDM SongUNet (~0.71M parameters) trained from scratch by SFT.

    python train.py --config=fastgen/configs/experiments/FashionMNIST/config_sft_teacher.py

EDM recipe (Karras et al. 2022): preconditioned x0 prediction, EDM loss weighting (unit-scale loss at every noise
level), lognormal log-sigma (P_mean -1.2, P_std 1.2), sigma_data 0.5; Adam lr 1e-3 with a 200-step linear warm-up,
gradient clipping at 10, batch 256, 10000 iterations, one power EMA (`ema`, gamma 6.94) which is what gets exported
and sampled. Sampling = 35-evaluation Heun (18 steps). One GPU runs it in about 7 minutes (26 it/s on an H100); a
2-core CPU needs about 4 s per iteration, so pass e.g. `trainer.max_iter=1500 dataloader_train.batch_size=64` for a
quick CPU teacher. `scripts/train_demo_teacher.sh` holds the exact commands that produced the shipped weights.
"""

from fastgen.configs.experiments.FashionMNIST._common import apply_demo_settings, power_ema
from fastgen.configs.methods import config_sft


def create_config():
    config = config_sft.create_config()
    apply_demo_settings(config, name="sft_teacher", batch_size=256)
    config.trainer.callbacks.update(power_ema())
    config.model.use_ema = ["ema"]
    config.model.dsm_weighting = "edm"  # unit-scale loss at every noise level (plain x0 MSE starves low noise)
    config.model.dsm_sigma_data = 0.5
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
    config.trainer.max_iter = 10000
    config.trainer.logging_iter = 500
    config.trainer.save_ckpt_iter = 1000
    return config
