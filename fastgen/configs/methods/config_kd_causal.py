"""Causal knowledge distillation (per-chunk noise levels) for video nets."""

import attrs
from omegaconf import DictConfig

from fastgen.configs.config import BaseConfig, BaseModelConfig
from fastgen.configs.methods.common import apply_standard_training
from fastgen.utils import LazyCall as L


@attrs.define(slots=False)
class ModelConfig(BaseModelConfig):
    context_noise: float = 0.0  # t of the context written to the KV cache in AR sampling (0: the clean chunk)


@attrs.define(slots=False)
class Config(BaseConfig):
    model: ModelConfig = attrs.Factory(ModelConfig)
    model_class: DictConfig = attrs.Factory(lambda: L("fastgen.methods.CausalKDModel")(config=None))


def create_config() -> Config:
    config = Config()
    apply_standard_training(config)
    config.model.student_sample_steps = 4
    return config
