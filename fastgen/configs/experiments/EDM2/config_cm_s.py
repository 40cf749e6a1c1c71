"""Consistency training (ECT) of EDM2-S on class-conditional ImageNet-64."""

from fastgen.configs.experiments.EDM2._common import apply_edm2
from fastgen.configs.methods import config_cm


def create_config():
    config = config_cm.create_config()
    apply_edm2(config, lr=1e-3, decay_steps=2000)
    config.model.net.dropout = 0.4
    config.model.loss_config.huber_const = 0.06
    config.model.loss_config.weighting_ct_loss = "c_out_sq"
    config.model.sample_t_cfg.train_p_mean = -0.8
    config.model.sample_t_cfg.train_p_std = 1.6
    ct = config.trainer.callbacks.ct_schedule
    ct.q, ct.ratio_limit, ct.kimg_per_stage = 4.0, 0.9961, 3200
    config.trainer.max_iter = 100000
    config.trainer.batch_size_global = 1024
    config.log_config.name = "cm_s"
    return config
