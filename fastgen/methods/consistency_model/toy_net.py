"""ToyMLP with a smooth time embedding, for the continuous-time methods (sCM, MeanFlow) on toy data.

Why: sCM and MeanFlow differentiate the network along time (a JVP with tangent 1 in t). ToyMLP's Fourier time
features reach 16 cycles per unit of the noise label, so dF/dt is dominated by fast oscillations of the embedding
and the training target becomes noise; Lu & Song (2024, Sec. 4.1) report the same instability for large Fourier
scales and fix it with low-frequency time embeddings. Capping the frequencies at `max_time_freq` (default 2) makes
both methods converge on the toy mixture in a few hundred steps. Everything else is ToyMLP.
"""

from __future__ import annotations

import math

import torch

from fastgen.networks.toy import ToyMLP


class SmoothTimeToyMLP(ToyMLP):
    """ToyMLP whose Fourier time features span [1/4, max_time_freq] instead of [1/4, 16]."""

    def __init__(self, max_time_freq: float = 2.0, **kwargs):
        if not max_time_freq > 0.25:
            raise ValueError(f"max_time_freq must be > 0.25 (the lowest frequency); got {max_time_freq}")
        object.__setattr__(self, "max_time_freq", float(max_time_freq))
        super().__init__(**kwargs)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        freqs = self.time_embed.freqs
        with torch.no_grad():
            freqs.copy_(torch.logspace(-2, math.log2(self.max_time_freq), freqs.numel(), base=2.0,
                                       device=freqs.device, dtype=freqs.dtype))
