"""Consistency training (ECT) on class-conditional ImageNet-64 with fp16 AMP and the EDM2 LR schedule."""

from fastgen.configs.data import ImageNet64_Loader_Config
from fastgen.configs.experiments.EDM._cifar10 import in64_teacher_path, use_power_emas
from fastgen.configs.methods import config_cm
from fastgen.configs.net import EDM_ImageNet64_Config
from fastgen.configs.opt import InverseSquareRootSchedulerConfig


def create_config():
    config = config_cm.create_config()
    config.model.net = EDM_ImageNet64_Config
    config.model.net.dropout = 0.2
    config.model.input_shape = [3, 64, 64]
    config.model.pretrained_model_path = in64_teacher_path()
    config.dataloader_train = ImageNet64_Loader_Config
    config.model.precision_amp = "float16"
    config.model.grad_scaler_enabled = True
    config.model.grad_scaler_init_scale = 16.0
    config.model.grad_scaler_growth_interval = 20000
    config.model.loss_config.huber_const = 0.06
    config.model.loss_config.weighting_ct_loss = "c_out_sq"
    config.model.sample_t_cfg.train_p_mean = -0.8
    config.model.sample_t_cfg.train_p_std = 1.6
    opt = config.model.net_optimizer
    opt.optim_type, opt.lr, opt.betas, opt.weight_decay = "adam", 1e-3, [0.9, 0.99], 0.0
    config.model.net_scheduler = InverseSquareRootSchedulerConfig
    config.model.net_scheduler.decay_steps = 2000
    use_power_emas(config)
    ct = config.trainer.callbacks.ct_schedule
    ct.q, ct.ratio_limit, ct.kimg_per_stage = 4.0, 0.9961, 3200
    config.trainer.batch_size_global = 1024
    config.log_config.group = "imagenet64"
    config.log_config.name = "cm_in64"
    return config
