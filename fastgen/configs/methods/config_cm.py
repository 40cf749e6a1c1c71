"""Consistency models (ECT-style continuous-time CT / CD) with a CT ratio schedule callback."""

from typing import Any

import attrs
from omegaconf import DictConfig

from fastgen.configs.callbacks import (
    EMA_CALLBACK,
    WANDB_CALLBACK,
    CTSchedule_CALLBACK,
    GPUStats_CALLBACK,
    GradClip_CALLBACK,
    ParamCount_CALLBACK,
    TrainProfiler_CALLBACK,
)
from fastgen.configs.config import BaseConfig, BaseModelConfig, ConfigNode, SampleTConfig, fresh
from fastgen.configs.methods.common import callbacks_from, make_unconditional
from fastgen.configs.opt import RAdamOptimizerConfig
from fastgen.utils import LazyCall as L


@attrs.define(slots=False)
class CMSampleTConfig(SampleTConfig):
    time_dist_type: str = "lognormal"
    min_r: float = 0.0  # lower bound of the second (earlier) time r
    quantize: bool = False  # snap t and r to the EDM sigma grid


@attrs.define(slots=False)
class LossConfig(ConfigNode):
    use_cd: bool = False  # consistency distillation (teacher ODE step) instead of training
    huber_const: float = 1e-8  # pseudo-Huber constant c; 0 -> plain (squared) L2
    use_squared_l2: bool = False
    weighting_ct_loss: str = "default"  # default | c_out | c_out_sq | sigma_sq | sqrt | one


@attrs.define(slots=False)
class ModelConfig(BaseModelConfig):
    net_optimizer: DictConfig = fresh(RAdamOptimizerConfig)
    sample_t_cfg: CMSampleTConfig = attrs.Factory(CMSampleTConfig)
    use_ema: Any = True  # bool or list of names starting with "ema" (Any: OmegaConf has no Union of containers)
    loss_config: LossConfig = attrs.Factory(LossConfig)


@attrs.define(slots=False)
class Config(BaseConfig):
    model: ModelConfig = attrs.Factory(ModelConfig)
    model_class: DictConfig = attrs.Factory(lambda: L("fastgen.methods.CMModel")(config=None))


def create_config() -> Config:
    config = Config()
    config.trainer.callbacks = callbacks_from(
        CTSchedule_CALLBACK, GradClip_CALLBACK, EMA_CALLBACK, GPUStats_CALLBACK, TrainProfiler_CALLBACK,
        ParamCount_CALLBACK, WANDB_CALLBACK,
    )
    config.trainer.callbacks.ct_schedule.kimg_per_stage = 6400
    config.trainer.callbacks.grad_clip.grad_norm = 1e6
    config.trainer.tf32_enabled = False
    config.model.net.dropout = 0.2
    config.model.net_scheduler.warm_up_steps = [0]
    config.model.net_optimizer.weight_decay = 0.0
    make_unconditional(config)
    return config
