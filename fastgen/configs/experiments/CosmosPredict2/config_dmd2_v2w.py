"""DMD2 of Cosmos-Predict2 2B video2world: the text2world recipe conditioned on the first latent frame of each
training video (kept clean by the student, teacher and fake score alike, so it adds no loss)."""

from fastgen.configs.experiments.CosmosPredict2.config_dmd2 import apply_cosmos_dmd2
from fastgen.configs.methods import config_dmd2


def create_config():
    return apply_cosmos_dmd2(config_dmd2.create_config(), name="dmd2_v2w", video2world=True)
