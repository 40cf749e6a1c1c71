"""Fine-tune Cosmos-Predict2 2B (text2world) with flow matching at 480p / 93 frames; samples in 35 steps (the
pipelines' default) with CFG 8.0 (the pipelines' default 7.0 in their cond + g (cond - uncond) form)."""

from fastgen.configs.experiments.CosmosPredict2._common import apply_cosmos
from fastgen.configs.methods import config_sft


def apply_cosmos_sft(config, name: str, size: str = "2b", video2world: bool = False):
    apply_cosmos(config, name, size, video2world)
    config.model.guidance_scale = 8.0
    config.model.student_sample_steps = 35
    return config


def create_config():
    return apply_cosmos_sft(config_sft.create_config(), name="sft")
