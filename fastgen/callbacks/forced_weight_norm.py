"""EDM2 forced weight normalisation: re-normalise the network's weights before every forward pass.

EDM2 keeps each weight row at unit norm by normalising in place before the micro-step that uses it; the network
provides `forced_weight_normalization()`, this callback only calls it at the right time.
"""

from __future__ import annotations

from typing import Any

import torch
from loguru import logger

from fastgen.callbacks.callback import Callback, unwrap_model, unwrap_module


class ForcedWeightNormCallback(Callback):
    def __init__(self) -> None:
        super().__init__()
        self._warned = False
        self.num_calls = 0

    def on_training_accum_step_begin(self, model: Any, data: Any = None, iteration: int = 0, accum_round: int = 0,
                                     **kwargs: Any) -> None:
        net = unwrap_module(unwrap_model(model).net)
        normalize = getattr(net, "forced_weight_normalization", None)
        if normalize is None:
            if not self._warned:
                logger.warning(f"{type(net).__name__} has no forced_weight_normalization(); "
                               "ForcedWeightNormCallback does nothing (remove it from trainer.callbacks)")
                self._warned = True
            return
        with torch.no_grad():
            normalize()
        self.num_calls += 1
