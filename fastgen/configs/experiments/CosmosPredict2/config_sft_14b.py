"""Fine-tune Cosmos-Predict2 14B (text2world): the 2B recipe under FSDP2 with meta init and bf16 weights."""

from fastgen.configs.experiments.CosmosPredict2.config_sft import apply_cosmos_sft
from fastgen.configs.methods import config_sft


def create_config():
    return apply_cosmos_sft(config_sft.create_config(), name="sft_14b", size="14b")
