"""CausVid: DMD2 for a causal (chunk-autoregressive) video student with a bidirectional teacher."""

import attrs
from omegaconf import DictConfig

from fastgen.configs.config import BaseConfig
from fastgen.configs.methods import config_dmd2
from fastgen.configs.methods.common import apply_standard_training
from fastgen.utils import LazyCall as L


@attrs.define(slots=False)
class ModelConfig(config_dmd2.ModelConfig):
    context_noise: float = 0.0  # t of the context written to the KV cache in AR sampling (0: the clean chunk)
    # Per-chunk student times of diffusion forcing: "independent" (the paper), "nondecreasing" (sorted per sample,
    # so an earlier chunk is never noisier than a later one) or "clean_context" (clean real chunks before a drawn
    # chunk, its t from there on). See CausVidModel / benchmarks/results/oracle_causal.md for what each measured.
    chunk_t_order: str = "independent"
    # Backward simulation (DMD2's multi-step fix; the official CausVid code has the switch, off by default): the
    # student's training input for a chunk at t_c is that chunk's state in the student's own no-grad AR rollout from
    # noise (clean/context_noise cache of its finished chunks, as at sampling) instead of real data noised to t_c.
    # With chunk_t_order="clean_context" each trained chunk sees exactly its sampling-time input and context (the
    # Toy config's pair; results/oracle_causal.md).
    backward_simulation: bool = False


@attrs.define(slots=False)
class Config(BaseConfig):
    model: ModelConfig = attrs.Factory(ModelConfig)
    model_class: DictConfig = attrs.Factory(lambda: L("fastgen.methods.CausVidModel")(config=None))


def create_config() -> Config:
    config = Config()
    apply_standard_training(config)
    config.model.student_sample_steps = 4
    return config
