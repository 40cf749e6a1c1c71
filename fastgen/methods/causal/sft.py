"""CausalSFT: diffusion forcing (Chen et al. 2024) for a causal video net.

As SFT (denoising score matching on real videos), but every chunk of `chunk_size` frames gets its own noise level:
t [B, T] ~ sample_t_cfg per chunk, constant within a chunk, independent across chunks; x_t = alpha(t) x0 +
sigma(t) eps per frame; loss = || net(x_t, t) - target ||^2 in one block-causal pass (is_ar=False). A chunk thus
learns to denoise given context at any noise level, which is what AR sampling with (re-noised) cached context needs.
Sampling: causal_generate with `student_sample_steps` steps per chunk and CFG at config.guidance_scale.
"""

from __future__ import annotations

import torch

from fastgen.methods.causal.common import CausalMethodMixin
from fastgen.methods.fine_tuning.sft import SFTModel, sample_t_kwargs


class CausalSFTModel(CausalMethodMixin, SFTModel):
    non_causal_method = "SFTModel"

    def sample_train_t(self, real: torch.Tensor) -> torch.Tensor:
        """Diffusion forcing: one t per chunk from sample_t_cfg, float64 [B, T]."""
        kwargs = {**sample_t_kwargs(self.config.sample_t_cfg), "device": real.device}
        return self.net.noise_scheduler.sample_t_inhom_sft(real.shape[0], real.shape[2], self.net.chunk_size, **kwargs)

    def sampling_guidance(self, guidance_scale: float | None) -> float | None:
        return self.config.guidance_scale if guidance_scale is None else guidance_scale
