"""sCM: continuous-time consistency models in TrigFlow (sCT / sCD) with tangent normalisation and adaptive weights."""

from typing import Any, Optional

import attrs
from omegaconf import DictConfig

from fastgen.configs.callbacks import (
    EMA_CALLBACK,
    WANDB_CALLBACK,
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
class SCMSampleTConfig(SampleTConfig):
    time_dist_type: str = "lognormal"
    train_p_mean: float = -1.0
    train_p_std: float = 1.4
    sigma_data: float = 0.5
    quantize: bool = False


@attrs.define(slots=False)
class LossConfig(ConfigNode):
    use_cd: bool = False
    tangent_warmup_steps: int = 10000
    tangent_warmup_const: float = 0.1
    prior_weighting_enabled: bool = True
    g_norm_spatial_invariance: bool = True
    divide_x_0_spatial_dim: bool = True
    use_jvp_finite_diff: bool = False
    jvp_finite_diff_eps: float = 1e-3


@attrs.define(slots=False)
class ModelConfig(BaseModelConfig):
    net_optimizer: DictConfig = fresh(RAdamOptimizerConfig)
    sample_t_cfg: SCMSampleTConfig = attrs.Factory(SCMSampleTConfig)
    loss_config: LossConfig = attrs.Factory(LossConfig)
    use_ema: Any = True  # bool or list of names starting with "ema" (Any: OmegaConf has no Union of containers)
    precision_amp_jvp: Optional[str] = None


@attrs.define(slots=False)
class Config(BaseConfig):
    model: ModelConfig = attrs.Factory(ModelConfig)
    model_class: DictConfig = attrs.Factory(lambda: L("fastgen.methods.SCMModel")(config=None))


def create_config() -> Config:
    config = Config()
    config.trainer.callbacks = callbacks_from(
        GradClip_CALLBACK, EMA_CALLBACK, GPUStats_CALLBACK, TrainProfiler_CALLBACK, ParamCount_CALLBACK,
        WANDB_CALLBACK,
    )
    config.trainer.callbacks.grad_clip.grad_norm = 1e6
    config.trainer.callbacks.ema.type = "halflife"
    config.trainer.tf32_enabled = False
    config.model.net.dropout = 0.2
    config.model.net.enable_logvar = True  # the adaptive-weighting head log u(t)
    config.model.net_optimizer.betas = [0.9, 0.99]
    config.model.net_optimizer.weight_decay = 0.0
    config.model.net_scheduler.warm_up_steps = [0]
    make_unconditional(config)
    return config
