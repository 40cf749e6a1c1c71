"""Supervised fine-tuning (plain denoising score matching), optionally with condition dropout for CFG."""

from typing import Optional

import attrs
from omegaconf import DictConfig

from fastgen.configs.config import BaseConfig, BaseModelConfig
from fastgen.configs.methods.common import apply_standard_training
from fastgen.utils import LazyCall as L


@attrs.define(slots=False)
class ModelConfig(BaseModelConfig):
    cond_dropout_prob: Optional[float] = None  # per-sample probability of replacing the condition by neg_condition
    cond_keys_no_dropout: list[str] = attrs.Factory(list)  # dict-condition keys never dropped


@attrs.define(slots=False)
class Config(BaseConfig):
    model: ModelConfig = attrs.Factory(ModelConfig)
    model_class: DictConfig = attrs.Factory(lambda: L("fastgen.methods.SFTModel")(config=None))


def create_config() -> Config:
    config = Config()
    apply_standard_training(config)
    return config
