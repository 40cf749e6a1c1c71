"""Consistency distillation (CD; ECT-style pairs with the teacher's ODE step) 1-step student for Fashion-MNIST,
initialised from the shipped SFT teacher. `model.loss_config.use_cd=false` gives consistency training (CT; the
table's `CM` row: ECT from data, the teacher only as the initialisation).

    python train.py --config=fastgen/configs/experiments/FashionMNIST/config_cm.py                                # CD
    python train.py --config=fastgen/configs/experiments/FashionMNIST/config_cm.py - model.loss_config.use_cd=false  # CT

Not tuned (benchmarks/fashion_mnist_table.py measures it at equal CPU time with the other methods).
"""

from fastgen.configs.callbacks import CTSchedule_CALLBACK
from fastgen.configs.experiments.FashionMNIST._common import apply_distillation_settings
from fastgen.configs.methods import config_cm


def apply_consistency_settings(config, name: str) -> None:
    """What the Fashion-MNIST CM and TCM students share: ECT's c_out^2 weighting, lr 1e-4, the CT ratio schedule
    (batch 32: a new ECT ratio stage every 300 iterations, 1/2, 3/4, 7/8, ... over the 1800)."""
    apply_distillation_settings(config, name=name)
    config.model.loss_config.weighting_ct_loss = "c_out_sq"
    config.model.net_optimizer.lr = 1e-4
    config.trainer.callbacks.update(CTSchedule_CALLBACK)  # apply_distillation_settings replaced the callbacks
    config.trainer.callbacks.ct_schedule.kimg_per_stage = 9.6
    config.trainer.callbacks.grad_clip.grad_norm = 10.0


def create_config():
    config = config_cm.create_config()
    apply_consistency_settings(config, name="cm_student")
    config.model.loss_config.use_cd = True
    config.model.sample_t_cfg.train_p_mean, config.model.sample_t_cfg.train_p_std = -0.8, 1.6
    return config
