"""Train/fine-tune the EDM CIFAR-10 denoiser with plain DSM (EDM recipe: augmentation, dropout, power EMAs)."""

from fastgen.configs.experiments.EDM._cifar10 import EDM_AUGMENT_PIPE, use_power_emas
from fastgen.configs.methods import config_sft


def apply_edm_sft(config):
    """The EDM DSM recipe shared with config_sft_edm_in64: lognormal t (-1.2, 1.2), Adam 2e-5, power EMAs,
    18-step samples."""
    t_cfg = config.model.sample_t_cfg
    t_cfg.time_dist_type = "lognormal"
    t_cfg.train_p_mean = -1.2
    t_cfg.train_p_std = 1.2
    config.model.net_optimizer.optim_type = "adam"
    config.model.net_optimizer.lr = 2e-5
    config.model.student_sample_steps = 18
    use_power_emas(config)
    return config


def create_config():
    config = apply_edm_sft(config_sft.create_config())
    config.model.net.dropout = 0.13
    config.model.net.augment_dim = 9
    config.trainer.augment_pipe = EDM_AUGMENT_PIPE
    config.log_config.name = "sft_edm_cifar10"
    return config
