"""DMD2 on class-conditional ImageNet-64 (EDM ADM teacher)."""

from fastgen.configs.data import ImageNet64_Loader_Config
from fastgen.configs.discriminator import Discriminator_EDM_ImageNet64_Config
from fastgen.configs.experiments.EDM._cifar10 import in64_teacher_path, use_const_emas
from fastgen.configs.methods import config_dmd2
from fastgen.configs.net import EDM_ImageNet64_Config


def apply_in64(config):
    """The ImageNet-64 recipe on a DMD2-family config (shared with f-distill): ADM teacher, lr 2e-6, GAN 3e-3."""
    config.model.net = EDM_ImageNet64_Config
    config.model.discriminator = Discriminator_EDM_ImageNet64_Config
    config.model.input_shape = [3, 64, 64]
    config.model.pretrained_model_path = in64_teacher_path()
    for name in ("net_optimizer", "fake_score_optimizer", "discriminator_optimizer"):
        getattr(config.model, name).lr = 2e-6
    config.model.gan_loss_weight_gen = 3e-3
    config.dataloader_train = ImageNet64_Loader_Config
    use_const_emas(config)
    config.trainer.max_iter = 600000
    config.trainer.batch_size_global = 512
    config.log_config.group = "imagenet64"
    return config


def create_config():
    config = apply_in64(config_dmd2.create_config())
    config.log_config.name = "dmd2_in64"
    return config
