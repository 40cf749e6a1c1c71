"""DMD2 of Cosmos-Predict2 2B (text2world) into a 4-step ode generator at 480p / 93 frames: multiscale video
discriminator heads on transformer blocks 13, 20 and 27 (GAN weight 0.03), teacher CFG 3.0, 6k iterations, global
batch 64."""

from fastgen.configs.discriminator import (
    Discriminator_CosmosPredict2_2B_Multiscale_Config,
    Discriminator_CosmosPredict2_14B_Multiscale_Config,
)
from fastgen.configs.experiments.CosmosPredict2._common import apply_cosmos, apply_cosmos_distill
from fastgen.configs.methods import config_dmd2

DISCRIMINATORS = {"2b": Discriminator_CosmosPredict2_2B_Multiscale_Config,
                  "14b": Discriminator_CosmosPredict2_14B_Multiscale_Config}


def apply_cosmos_dmd2(config, name: str, size: str = "2b", video2world: bool = False):
    """Cosmos-Predict2 + the video DMD2 recipe (shared with the 14B and video2world configs)."""
    apply_cosmos(config, name, size, video2world)
    apply_cosmos_distill(config)
    config.model.discriminator = DISCRIMINATORS[size]
    config.model.gan_loss_weight_gen = 0.03
    config.model.guidance_scale = 3.0  # ours: uncond + g (cond - uncond) (the pipelines' g is ours - 1)
    config.trainer.max_iter = 6000
    config.trainer.batch_size_global = 64
    return config


def create_config():
    return apply_cosmos_dmd2(config_dmd2.create_config(), name="dmd2")
