"""Knowledge distillation of CogVideoX 2B into a 1-step generator from pre-computed (noise, teacher sample, text
embedding) pairs; the text encoder and VAE are not built."""

from fastgen.configs.data import PairLoaderConfig
from fastgen.configs.experiments.CogVideoX._common import apply_cogvideox
from fastgen.configs.methods import config_kd


def create_config():
    config = config_kd.create_config()
    apply_cogvideox(config, name="kd")
    config.model.enable_preprocessors = False
    config.dataloader_train = PairLoaderConfig
    return config
