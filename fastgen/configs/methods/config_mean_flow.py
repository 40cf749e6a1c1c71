"""MeanFlow: learn the average velocity u(x_t, t, r) via the MeanFlow identity (JVP along (v, 1, 0))."""

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
class MFSampleTConfig(SampleTConfig):
    time_dist_type: str = "lognormal"
    r_sample_ratio: float = 0.0  # fraction of the batch with r != t (the rest is plain flow matching)


@attrs.define(slots=False)
class SampleRConfig(SampleTConfig):
    enabled: bool = False  # sample r from its own distribution (else r ~ sample_t_cfg)
    time_dist_type: str = "lognormal"


@attrs.define(slots=False)
class LossConfig(ConfigNode):
    use_cd: bool = False
    use_squared_l2: bool = False
    use_jvp_finite_diff: bool = False
    jvp_finite_diff_eps: float = 1e-4
    norm_method: str = "poly_1.0"  # "poly_<p>" or "exp_<a>_<b>" adaptive loss normalisation
    norm_const: float = 0.1
    tangent_warmup_steps: int = 0
    tangent_spatial_invariance: bool = False
    loss_type: str = "opt_grad"  # "opt_grad" | "l2"


@attrs.define(slots=False)
class ModelConfig(BaseModelConfig):
    net_optimizer: DictConfig = fresh(RAdamOptimizerConfig)
    sample_t_cfg: MFSampleTConfig = attrs.Factory(MFSampleTConfig)
    sample_r_cfg: SampleRConfig = attrs.Factory(SampleRConfig)
    loss_config: LossConfig = attrs.Factory(LossConfig)
    use_ema: Any = True  # bool or list of names starting with "ema" (Any: OmegaConf has no Union of containers)
    guidance_mixture_ratio: Optional[float] = None
    cond_dropout_prob: Optional[float] = None
    cond_keys_no_dropout: list[str] = attrs.Factory(list)
    guidance_t_start: float = 0.0
    guidance_t_end: float = 1.0
    precision_amp_jvp: Optional[str] = None
    # the probability path u is learnt on: None = the network's own schedule; a schedule name ("rf", "trig", ...) =
    # that path, mapped onto the network by SNR matching (an EDM network distilled on the rf path: u stays O(1) and
    # 1-step errors are not multiplied by sigma_max; see fastgen/methods/consistency_model/mean_flow.py)
    path_schedule: Optional[str] = None


@attrs.define(slots=False)
class Config(BaseConfig):
    model: ModelConfig = attrs.Factory(ModelConfig)
    model_class: DictConfig = attrs.Factory(lambda: L("fastgen.methods.MeanFlowModel")(config=None))


def create_config() -> Config:
    config = Config()
    config.trainer.callbacks = callbacks_from(
        GradClip_CALLBACK, EMA_CALLBACK, GPUStats_CALLBACK, TrainProfiler_CALLBACK, ParamCount_CALLBACK,
        WANDB_CALLBACK,
    )
    config.trainer.callbacks.grad_clip.grad_norm = 1e6
    config.trainer.tf32_enabled = False
    config.model.student_sample_type = "ode"
    config.model.load_student_weights = False
    config.model.net.dropout = 0.2
    config.model.net.r_timestep = True
    config.model.net_scheduler.warm_up_steps = [0]
    config.model.net_optimizer.weight_decay = 0.0
    make_unconditional(config)
    return config
