"""f-distill (KL) on class-conditional CIFAR-10: the DMD2 CIFAR-10 recipe with f-divergence weighting."""

from fastgen.configs.experiments.EDM._cifar10 import cond_teacher_path, use_const_emas
from fastgen.configs.methods import config_f_distill


def create_config():
    config = config_f_distill.create_config()
    config.model.pretrained_model_path = cond_teacher_path()
    config.model.f_distill.f_div = "kl"
    use_const_emas(config)
    config.trainer.max_iter = 100000
    config.trainer.batch_size_global = 2048
    config.log_config.name = "f_distill_cifar10"
    return config
