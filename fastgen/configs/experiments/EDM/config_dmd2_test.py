"""Quick-start DMD2 on class-conditional CIFAR-10: short run, global batch 64, frequent logs/checkpoints, no EMA."""

from fastgen.configs.methods import config_dmd2
from fastgen.utils.env import ckpt_root_dir


def create_config():
    config = config_dmd2.create_config()
    config.model.pretrained_model_path = f"{ckpt_root_dir()}/cifar10/edm-cifar10-32x32-cond-vp.pth"
    config.trainer.max_iter = 5000
    config.trainer.logging_iter = 50
    config.trainer.save_ckpt_iter = 1000
    config.trainer.batch_size_global = 64
    config.dataloader_train.batch_size = 64
    config.model.use_ema = False
    return config
