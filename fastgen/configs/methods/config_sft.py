"""Supervised fine-tuning (denoising score matching, optionally EDM-weighted), optionally with condition dropout
for CFG."""

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
    # per-noise-level weight of the DSM loss: "none" (plain MSE in the net's prediction type, the reference's loss)
    # or "edm" (Karras et al. 2022: unit-scale loss at every level; see common_loss.dsm_weight)
    dsm_weighting: str = "none"
    dsm_sigma_data: float = 0.5  # sigma_data of the "edm" weighting (the data's standard deviation)


@attrs.define(slots=False)
class Config(BaseConfig):
    model: ModelConfig = attrs.Factory(ModelConfig)
    model_class: DictConfig = attrs.Factory(lambda: L("fastgen.methods.SFTModel")(config=None))


def create_config() -> Config:
    config = Config()
    apply_standard_training(config)
    return config
