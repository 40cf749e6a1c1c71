"""DMD2 of Cosmos-Predict2 14B (text2world) into a 4-step generator: the 2B recipe with the 14B multiscale
discriminator (blocks 18, 27, 35), FSDP2 with meta init and bf16 weights."""

from fastgen.configs.experiments.CosmosPredict2.config_dmd2 import apply_cosmos_dmd2
from fastgen.configs.methods import config_dmd2


def create_config():
    return apply_cosmos_dmd2(config_dmd2.create_config(), name="dmd2_14b", size="14b")
