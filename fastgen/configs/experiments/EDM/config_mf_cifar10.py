"""MeanFlow from scratch on unconditional CIFAR-10: rectified-flow schedule, flow prediction on the EDM UNet."""

from fastgen.configs.methods import config_mean_flow
from fastgen.utils import LazyCall as L

MF_AUGMENT_PIPE = L("fastgen.datasets.augment.AugmentPipe")(p=0.12, xflip=1e8, scale=1, aniso=1, translate_frac=1)


def create_config():
    config = config_mean_flow.create_config()
    net = config.model.net
    net.schedule_type = "rf"
    net.net_pred_type = "flow"
    net.drop_precond = "both"
    net.augment_dim = 6
    for t_cfg in (config.model.sample_t_cfg, config.model.sample_r_cfg):
        t_cfg.time_dist_type = "logitnormal"
        t_cfg.min_t, t_cfg.max_t = 0.0, 1.0
        t_cfg.train_p_std = 1.6
    config.model.sample_t_cfg.train_p_mean = -0.6
    config.model.sample_r_cfg.train_p_mean = -4.0
    config.model.sample_r_cfg.enabled = True
    config.model.sample_t_cfg.r_sample_ratio = 0.75
    loss = config.model.loss_config
    loss.loss_type, loss.norm_method, loss.norm_const = "l2", "poly_0.75", 1e-3
    opt = config.model.net_optimizer
    opt.optim_type, opt.lr = "adam", 6e-4
    config.model.net_scheduler.warm_up_steps = [200 * 50000 // 1024]  # 200 epochs of CIFAR-10 at batch 1024
    config.model.net_scheduler.f_start = [0.0]
    config.trainer.augment_pipe = MF_AUGMENT_PIPE
    config.trainer.max_iter = 1000000
    config.trainer.batch_size_global = 1024
    config.log_config.name = "mf_cifar10"
    return config
