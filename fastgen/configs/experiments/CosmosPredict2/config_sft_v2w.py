"""Fine-tune Cosmos-Predict2 2B video2world: conditioned on the first latent frame of each training video (pinned
clean by the network: its flow-matching loss is zero there)."""

from fastgen.configs.experiments.CosmosPredict2.config_sft import apply_cosmos_sft
from fastgen.configs.methods import config_sft


def create_config():
    return apply_cosmos_sft(config_sft.create_config(), name="sft_v2w", video2world=True)
