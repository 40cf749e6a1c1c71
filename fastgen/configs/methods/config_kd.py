"""Knowledge distillation: regress the student onto teacher (noise -> sample) pairs or trajectories."""

import attrs
from omegaconf import DictConfig

from fastgen.configs.config import BaseConfig, BaseModelConfig
from fastgen.configs.methods.common import apply_standard_training
from fastgen.utils import LazyCall as L


@attrs.define(slots=False)
class ModelConfig(BaseModelConfig):
    pass


@attrs.define(slots=False)
class Config(BaseConfig):
    model: ModelConfig = attrs.Factory(ModelConfig)
    model_class: DictConfig = attrs.Factory(lambda: L("fastgen.methods.KDModel")(config=None))


def create_config() -> Config:
    config = Config()
    apply_standard_training(config)
    return config
