"""sCT (continuous-time consistency training, TrigFlow) on unconditional CIFAR-10; 1-step sampling from t=80."""

from fastgen.configs.experiments.EDM._cifar10 import uncond_teacher_path
from fastgen.configs.methods import config_scm


def create_config():
    config = config_scm.create_config()
    config.model.pretrained_model_path = uncond_teacher_path()
    config.model.net.max_t = 800.0  # the EDM schedule must cover TrigFlow's t -> pi/2 through SNR matching
    config.model.sample_t_cfg.t_list = [80.0, 0.0]
    config.trainer.max_iter = 400000
    config.trainer.batch_size_global = 512
    config.log_config.name = "sct_cifar10"
    return config
