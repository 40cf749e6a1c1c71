"""Knowledge distillation of Wan 2.1 T2V 1.3B into a 1-step generator (noise at the schedule's max t -> teacher
sample) from pre-computed (noise, teacher sample, text embedding) pairs; the text encoder and VAE are not built."""

from fastgen.configs.data import PairLoaderConfig
from fastgen.configs.experiments.WanT2V._common import apply_wan
from fastgen.configs.methods import config_kd


def create_config():
    config = config_kd.create_config()
    apply_wan(config, name="kd")
    config.model.enable_preprocessors = False
    config.dataloader_train = PairLoaderConfig
    return config
