"""DMD2: distribution matching (VSD against a fake score) plus a GAN on teacher (or fake-score) features.

`fake_score_net` gives the fake score its own architecture (None: the teacher's config, else `net`); it is needed
when the teacher has no trainable weights to copy (e.g. the exact Gaussian-mixture teacher of the Toy configs).
`regression_loss_weight` > 0 adds the original DMD's regression onto teacher (noise, sample) pairs to the generator
loss. `gan_feature_source` picks the network whose features feed the discriminator heads: "teacher" (FastGen's default)
or "fake_score" (the DMD2 paper, sec. 4.3: the classifier sits on the fake denoiser's bottleneck and its loss also
trains the fake score).
"""

from typing import Optional

import attrs
from omegaconf import DictConfig

from fastgen.configs.config import BaseConfig, BaseModelConfig, fresh
from fastgen.configs.discriminator import Discriminator_EDM_CIFAR10_Config
from fastgen.configs.methods.common import apply_standard_training
from fastgen.configs.opt import BaseOptimizerConfig, BaseSchedulerConfig
from fastgen.utils import LazyCall as L


@attrs.define(slots=False)
class ModelConfig(BaseModelConfig):
    fake_score_optimizer: DictConfig = fresh(BaseOptimizerConfig)
    fake_score_scheduler: DictConfig = fresh(BaseSchedulerConfig)
    discriminator: Optional[dict] = fresh(Discriminator_EDM_CIFAR10_Config)
    discriminator_optimizer: DictConfig = fresh(BaseOptimizerConfig)
    discriminator_scheduler: DictConfig = fresh(BaseSchedulerConfig)
    student_update_freq: int = 5  # generator step when iteration % freq == 0, else fake-score/discriminator step
    gan_loss_weight_gen: float = 0.001  # 0 disables the GAN (no discriminator is built)
    gan_use_same_t_noise: bool = False
    fake_score_pred_type: Optional[str] = None  # None: the fake score's native prediction type (= the teacher's)
    # per-noise-level weight of the fake score's DSM loss: "none" (the reference) or "edm" (common_loss.dsm_weight)
    fake_score_dsm_weighting: str = "none"
    fake_score_dsm_sigma_data: float = 0.5
    fake_score_net: Optional[dict] = None  # fake-score architecture; None: teacher config (else net)
    gan_feature_source: str = "teacher"  # "teacher" | "fake_score": whose features the discriminator heads read
    # weight of the discriminator loss in the critic step; None: 1 on teacher features (reference), 1e-2 on fake-score
    # features (DMD2 paper: the classification loss also trains the fake score's encoder, weighted 1e-2 against its
    # EDM-weighted denoising loss)
    gan_loss_weight_disc: Optional[float] = None
    gan_r1_reg_weight: float = 0.0
    gan_r1_reg_alpha: float = 0.1
    # weight of DMD's regression loss (Yin et al. 2024a, eq. 7) on generator steps: 0.5 MSE between the student's
    # first step from the pairs' noise and the teacher's ODE solution; > 0 needs batches with "pair_noise" and
    # "pair_real" (a fastgen.datasets.zip_loader.ZipLoader with a teacher-pair loader as its secondary)
    regression_loss_weight: float = 0.0


@attrs.define(slots=False)
class Config(BaseConfig):
    model: ModelConfig = attrs.Factory(ModelConfig)
    model_class: DictConfig = attrs.Factory(lambda: L("fastgen.methods.DMD2Model")(config=None))


def create_config() -> Config:
    config = Config()
    apply_standard_training(config)
    config.model.sample_t_cfg.time_dist_type = "polynomial"
    return config
