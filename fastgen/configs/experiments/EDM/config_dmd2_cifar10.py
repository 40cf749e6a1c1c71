"""DMD2 on class-conditional CIFAR-10 (EDM teacher), 3 constant EMAs, global batch 2048."""

from fastgen.configs.experiments.EDM._cifar10 import cond_teacher_path, use_const_emas
from fastgen.configs.methods import config_dmd2


def create_config():
    config = config_dmd2.create_config()
    config.model.pretrained_model_path = cond_teacher_path()
    use_const_emas(config)
    config.trainer.max_iter = 100000
    config.trainer.batch_size_global = 2048
    config.log_config.group = "cifar10"
    config.log_config.name = "dmd2_cifar10"
    return config
