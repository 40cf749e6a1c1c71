"""f-distill: DMD2 with an f-divergence weighting from the discriminator's density-ratio estimate."""

import attrs
from omegaconf import DictConfig

from fastgen.configs.config import BaseConfig, ConfigNode
from fastgen.configs.methods import config_dmd2
from fastgen.configs.methods.common import apply_standard_training
from fastgen.utils import LazyCall as L


@attrs.define(slots=False)
class FdistillConfig(ConfigNode):
    f_div: str = "js"  # rkl | kl | js | sf | neyman | sh | jf
    ratio_lower: float = 0.1
    ratio_upper: float = 20.0
    ratio_normalization: bool = True
    bin_num: int = 10
    ratio_ema_rate: float = 0.0


@attrs.define(slots=False)
class ModelConfig(config_dmd2.ModelConfig):
    f_distill: FdistillConfig = attrs.Factory(FdistillConfig)


@attrs.define(slots=False)
class Config(BaseConfig):
    model: ModelConfig = attrs.Factory(ModelConfig)
    model_class: DictConfig = attrs.Factory(lambda: L("fastgen.methods.FdistillModel")(config=None))


def create_config() -> Config:
    config = Config()
    apply_standard_training(config)
    config.model.sample_t_cfg.time_dist_type = "polynomial"
    return config
