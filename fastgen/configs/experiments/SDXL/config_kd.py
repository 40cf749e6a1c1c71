"""Knowledge distillation of SDXL from pre-computed (noise, teacher sample, text embedding) pairs: 16 pairs per
GPU, 6k iterations."""

from fastgen.configs.data import PairLoaderConfig
from fastgen.configs.experiments.SDXL._common import apply_sdxl
from fastgen.configs.methods import config_kd


def create_config():
    config = config_kd.create_config()
    apply_sdxl(config, name="kd")
    config.model.enable_preprocessors = False
    config.dataloader_train = PairLoaderConfig
    config.dataloader_train.batch_size = 16
    config.trainer.max_iter = 6000
    return config
