"""What the four causal methods share: the causal-student check and sampling through the AR rollout.

Every causal student is a CausalFastGenNetwork (chunks of `chunk_size` latent frames, block-causal attention, a KV
cache). Training passes run the whole video at once (is_ar=False, teacher/diffusion forcing); sampling runs
`causal_generate` chunk by chunk with the cache, the cached context re-noised to `model.context_noise`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from fastgen.networks.causal_sampling import causal_generate
from fastgen.networks.network import require_causal


class CausalMethodMixin:
    """Put before the non-causal base method: `class CausalSFTModel(CausalMethodMixin, SFTModel)`."""

    non_causal_method: str | None = None  # what to use for a bidirectional student (named in the error)

    def build_model(self) -> None:
        super().build_model()
        require_causal(self.net, type(self).__name__, self.non_causal_method)

    @property
    def context_noise(self) -> float:
        return float(getattr(self.config, "context_noise", 0.0) or 0.0)

    def sampling_guidance(self, guidance_scale: float | None) -> float | None:
        """CFG scale of the student's own sampling (distilled students sample without guidance)."""
        return guidance_scale

    def generator_fn(self, net: nn.Module, noise: torch.Tensor, condition: Any = None,
                     student_sample_steps: int | None = None, t_list=None, neg_condition: Any = None,
                     guidance_scale: float | None = None, precision_amp: Any = "infer",
                     on_chunk: Callable[[int, torch.Tensor], None] | None = None,
                     generator: torch.Generator | None = None, **kwargs: Any) -> torch.Tensor:
        """Chunk-by-chunk AR sampling with the KV cache (causal_generate) on the student's t_list
        (`student_sample_steps` steps per chunk, default config.student_sample_steps)."""
        steps = int(student_sample_steps or self.config.student_sample_steps)
        t_list = self.student_t_list(net, steps, t_list)
        with self.inference_mode(net, precision_amp):
            return causal_generate(net, noise, condition, t_list=t_list, context_noise=self.context_noise,
                                   neg_condition=neg_condition, guidance_scale=self.sampling_guidance(guidance_scale),
                                   on_chunk=on_chunk, generator=generator)
