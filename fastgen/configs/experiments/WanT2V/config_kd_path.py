"""Knowledge distillation of Wan 2.1 T2V 1.3B into a 4-step generator from pre-computed teacher ODE paths
(PathLoader: per sample the teacher's states on a grid containing the student's t_list
[0.999, 0.937, 0.833, 0.624, 0], the sample, the text embedding); the text encoder and VAE are not built."""

from fastgen.configs.data import PathLoaderConfig
from fastgen.configs.experiments.WanT2V._common import apply_wan, apply_wan_distill
from fastgen.configs.methods import config_kd


def create_config():
    config = config_kd.create_config()
    apply_wan(config, name="kd_path")
    apply_wan_distill(config)
    config.model.enable_preprocessors = False
    config.dataloader_train = PathLoaderConfig
    return config
