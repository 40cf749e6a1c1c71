"""SiD (Score identity Distillation, Zhou et al. 2024): data-free distillation through a score identity.

Same networks as DMD2 (generator, frozen teacher, fake score initialised from the teacher). The generator loss is
  L = (1 - alpha) * ||f_teacher - f_fake||^2 + (f_teacher - f_fake)^T (f_fake - x_g),   alpha = 1.2 (paper default),
and the fake score is trained by denoising score matching on generator samples at every iteration.
"""

import attrs
from omegaconf import DictConfig

from fastgen.configs.config import BaseConfig
from fastgen.configs.methods import config_dmd2
from fastgen.configs.methods.common import apply_standard_training
from fastgen.utils import LazyCall as L


@attrs.define(slots=False)
class ModelConfig(config_dmd2.ModelConfig):
    sid_alpha: float = 1.2  # weight of the score-difference correction term
    sid_loss_weight: float = 1.0  # scale of the SiD generator loss (the GAN term keeps its own weight)
    student_update_freq: int = 1  # fake score updates every iteration; the generator every `freq` iterations
    gan_loss_weight_gen: float = 0.0  # plain SiD has no GAN term (SiDA sets it > 0)


@attrs.define(slots=False)
class Config(BaseConfig):
    model: ModelConfig = attrs.Factory(ModelConfig)
    model_class: DictConfig = attrs.Factory(lambda: L("fastgen.methods.SiDModel")(config=None))


def create_config() -> Config:
    config = Config()
    apply_standard_training(config)
    config.model.sample_t_cfg.time_dist_type = "polynomial"
    return config
