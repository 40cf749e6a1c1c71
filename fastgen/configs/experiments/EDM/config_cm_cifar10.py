"""Consistency training (ECT) on unconditional CIFAR-10, initialised from the unconditional EDM model."""

from fastgen.configs.experiments.EDM._cifar10 import uncond_teacher_path
from fastgen.configs.methods import config_cm


def create_config():
    config = config_cm.create_config()
    config.model.pretrained_model_path = uncond_teacher_path()
    config.trainer.max_iter = 350000
    config.trainer.batch_size_global = 512
    config.log_config.name = "cm_cifar10"
    return config
