"""Train/fine-tune the EDM CIFAR-10 denoiser with plain DSM (EDM recipe: augmentation, dropout, power EMAs)."""

from fastgen.configs.experiments.EDM._cifar10 import EDM_AUGMENT_PIPE, use_power_emas
from fastgen.configs.methods import config_sft


def create_config():
    config = config_sft.create_config()
    t_cfg = config.model.sample_t_cfg
    t_cfg.time_dist_type = "lognormal"
    t_cfg.train_p_mean = -1.2
    t_cfg.train_p_std = 1.2
    config.model.net.dropout = 0.13
    config.model.net.augment_dim = 9
    config.model.net_optimizer.optim_type = "adam"
    config.model.net_optimizer.lr = 2e-5
    config.trainer.augment_pipe = EDM_AUGMENT_PIPE
    config.model.student_sample_steps = 18
    use_power_emas(config)
    config.log_config.name = "sft_edm_cifar10"
    return config
