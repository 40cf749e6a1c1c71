"""Truncated consistency models: stage 2 trains only t >= transition_t, with a stage-1 CM as the boundary teacher."""

import attrs
from omegaconf import DictConfig

from fastgen.configs.config import BaseConfig
from fastgen.configs.methods import config_cm
from fastgen.utils import LazyCall as L


@attrs.define(slots=False)
class ModelConfig(config_cm.ModelConfig):
    boundary_prob: float = 0.25  # fraction of the batch placed exactly at transition_t
    w_boundary: float = 0.1  # weight of the boundary loss
    transition_t: float = 1.0


@attrs.define(slots=False)
class Config(BaseConfig):
    model: ModelConfig = attrs.Factory(ModelConfig)
    model_class: DictConfig = attrs.Factory(lambda: L("fastgen.methods.TCMModel")(config=None))


def create_config() -> Config:
    base = config_cm.create_config()
    config = Config(
        log_config=base.log_config, trainer=base.trainer, dataloader_train=base.dataloader_train,
        dataloader_val=base.dataloader_val, eval=base.eval,
    )
    for field in attrs.fields(config_cm.ModelConfig):  # keep every CM setting, add the TCM ones
        setattr(config.model, field.name, getattr(base.model, field.name))
    config.trainer.checkpointer.pretrained_ckpt_key_map = {"cm_teacher": "ema", "net": "ema", "ema": "ema"}
    config.model.net_optimizer.lr = 5e-5
    t_cfg = config.model.sample_t_cfg
    t_cfg.time_dist_type = "log_t"
    t_cfg.train_p_mean = 0.0
    t_cfg.train_p_std = 0.2
    t_cfg.log_t_df = 0.01
    t_cfg.min_t = config.model.transition_t
    config.trainer.callbacks.ct_schedule.kimg_per_stage = 1000
    return config
