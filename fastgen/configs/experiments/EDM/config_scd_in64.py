"""sCD on class-conditional ImageNet-64 from the EDM ADM teacher: bf16 autocast with the JVP in float32, Adam 7e-5
(eps 1e-11) with the inverse-square-root decay, gradient clipping at 10, power EMAs."""

from fastgen.configs.data import ImageNet64_Loader_Config
from fastgen.configs.experiments.EDM._cifar10 import in64_teacher_path, use_power_emas
from fastgen.configs.methods import config_scm
from fastgen.configs.net import EDM_ImageNet64_Config
from fastgen.configs.opt import InverseSquareRootSchedulerConfig


def create_config():
    config = config_scm.create_config()
    config.model.net = EDM_ImageNet64_Config
    config.model.net.enable_logvar = True
    config.model.net.max_t = 800.0  # SNR matching of TrigFlow times near pi/2
    config.model.input_shape = [3, 64, 64]
    config.model.pretrained_model_path = in64_teacher_path()
    config.model.loss_config.use_cd = True
    config.model.sample_t_cfg.t_list = [80.0, 0.0]
    config.model.precision_amp = "bfloat16"
    config.model.precision_amp_jvp = "float32"
    config.dataloader_train = ImageNet64_Loader_Config
    opt = config.model.net_optimizer
    opt.optim_type, opt.lr, opt.eps, opt.weight_decay = "adam", 7e-5, 1e-11, 0.0
    config.model.net_scheduler = InverseSquareRootSchedulerConfig
    config.model.net_scheduler.decay_steps = 35000
    config.trainer.callbacks.grad_clip.grad_norm = 10.0
    use_power_emas(config)
    config.trainer.batch_size_global = 1024
    config.log_config.group = "imagenet64"
    config.log_config.name = "scd_in64"
    return config
