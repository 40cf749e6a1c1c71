"""Self-Forcing: CausVid trained on the student's own autoregressive rollouts (gradient through one exit step)."""

import attrs
from omegaconf import DictConfig

from fastgen.configs.callbacks import EMA_CALLBACK, STANDARD_CALLBACKS
from fastgen.configs.config import BaseConfig
from fastgen.configs.methods import config_causvid
from fastgen.configs.methods.common import apply_standard_training, callbacks_from
from fastgen.utils import LazyCall as L


@attrs.define(slots=False)
class ModelConfig(config_causvid.ModelConfig):
    enable_gradient_in_rollout: bool = True  # the exit step keeps its graph (False: no gradient; refused at train time)
    start_gradient_frame: int = 0  # chunks starting before this latent frame roll out without a graph
    same_step_across_blocks: bool = True  # one exit step for every chunk (else one per chunk), drawn on rank 0
    last_step_only: bool = False  # the exit step is always the last of student_sample_steps


@attrs.define(slots=False)
class Config(BaseConfig):
    model: ModelConfig = attrs.Factory(ModelConfig)
    model_class: DictConfig = attrs.Factory(lambda: L("fastgen.methods.SelfForcingModel")(config=None))


def create_config() -> Config:
    config = Config()
    apply_standard_training(config)
    config.trainer.callbacks = callbacks_from(STANDARD_CALLBACKS, EMA_CALLBACK)
    config.model.use_ema = True
    config.model.student_sample_steps = 4
    return config
