"""LADD: adversarial distillation with a discriminator on teacher features (no score-matching term)."""

from typing import Optional

import attrs
from omegaconf import DictConfig

from fastgen.configs.config import BaseConfig, BaseModelConfig, fresh
from fastgen.configs.discriminator import Discriminator_EDM_CIFAR10_Config
from fastgen.configs.methods.common import apply_standard_training
from fastgen.configs.opt import BaseOptimizerConfig, BaseSchedulerConfig
from fastgen.utils import LazyCall as L


@attrs.define(slots=False)
class ModelConfig(BaseModelConfig):
    discriminator: Optional[dict] = fresh(Discriminator_EDM_CIFAR10_Config)
    discriminator_optimizer: DictConfig = fresh(BaseOptimizerConfig)
    discriminator_scheduler: DictConfig = fresh(BaseSchedulerConfig)
    student_update_freq: int = 5
    gan_use_same_t_noise: bool = False
    gan_r1_reg_weight: float = 0.0
    gan_r1_reg_alpha: float = 0.1


@attrs.define(slots=False)
class Config(BaseConfig):
    model: ModelConfig = attrs.Factory(ModelConfig)
    model_class: DictConfig = attrs.Factory(lambda: L("fastgen.methods.LADDModel")(config=None))


def create_config() -> Config:
    config = Config()
    apply_standard_training(config)
    return config
