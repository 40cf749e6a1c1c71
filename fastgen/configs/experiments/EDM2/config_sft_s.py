"""Fine-tune EDM2-S on ImageNet-64 with DSM (EDM2 recipe: lognormal t, Adam 1e-2, inverse-sqrt decay)."""

from fastgen.configs.experiments.EDM2._common import apply_edm2
from fastgen.configs.methods import config_sft


def create_config():
    config = config_sft.create_config()
    apply_edm2(config, lr=1e-2, decay_steps=70000)
    t_cfg = config.model.sample_t_cfg
    t_cfg.time_dist_type, t_cfg.train_p_mean, t_cfg.train_p_std = "lognormal", -0.8, 1.6
    config.model.student_sample_steps = 32
    config.trainer.batch_size_global = 2048
    config.log_config.name = "sft_s"
    return config
