"""Consistency-training curriculum: the ratio r = t_r / t (how close the paired times are) grows by stages.

The ratio is a pure function of the number of training images seen, so it needs no checkpoint state and a resumed
run (or a later stage started with `model.resume_iter`) sees exactly the ratio the uninterrupted run would.
"""

from __future__ import annotations

from typing import Any

from fastgen.callbacks.callback import Callback, global_batch_size, unwrap_model


def ct_stage(total_iter: int, batch_size: int, kimg_per_stage: float) -> int:
    """stage = floor(total_iter * B / (kimg_per_stage * 1000)): completed curriculum stages."""
    return int(total_iter * batch_size // (kimg_per_stage * 1000))


def ct_ratio(stage: int, q: float, ratio_limit: float) -> float:
    """r = min(1 - 1/q^(stage+1), ratio_limit) (ECT's doubling schedule: with q=2, r = 1/2, 3/4, 7/8, ...)."""
    return min(1.0 - 1.0 / q ** (stage + 1), ratio_limit)


class CTScheduleCallback(Callback):
    """Sets `model.ratio` before every step from the images seen so far (resume_iter + iteration - 1 steps).

    Args: q (ratio growth base, > 1), ratio_limit (cap), kimg_per_stage (thousands of images per stage),
    batch_size (global batch; None -> `trainer.global_batch_size`).
    """

    def __init__(self, q: float = 2.0, ratio_limit: float = 0.999, kimg_per_stage: float = 12500,
                 batch_size: int | None = None):
        super().__init__()
        if q <= 1:
            raise ValueError(f"CTScheduleCallback q got {q}; expected a value > 1 so the ratio grows towards 1")
        if kimg_per_stage <= 0:
            raise ValueError(f"CTScheduleCallback kimg_per_stage got {kimg_per_stage}; expected a positive number")
        self.q = q
        self.ratio_limit = ratio_limit
        self.kimg_per_stage = kimg_per_stage
        self.batch_size = batch_size

    def _global_batch_size(self) -> int:
        batch = self.batch_size if self.batch_size is not None else global_batch_size(self.trainer, self.config)
        if batch is None:
            raise ValueError("CTScheduleCallback needs the global batch size: set batch_size=... or run it under a "
                             "trainer that defines global_batch_size")
        return int(batch)

    def ratio_for(self, model: Any, iters_done: int) -> float:
        """Set and return model.ratio after `iters_done` iterations of this run (plus model.resume_iter)."""
        model = unwrap_model(model)
        total = max(0, int(iters_done) + int(getattr(model, "resume_iter", 0) or 0))
        batch = self._global_batch_size()
        stage = ct_stage(total, batch, self.kimg_per_stage)
        ratio = ct_ratio(stage, self.q, self.ratio_limit)
        model.ratio = ratio
        self.logs.update({"ct/kimg": total * batch / 1000.0, "ct/stage": float(stage), "ct/ratio": ratio})
        return ratio

    def on_train_begin(self, model: Any, iteration: int = 0, **kwargs: Any) -> None:
        self.ratio_for(model, iteration)  # `iteration` steps are done (validation before the loop uses this)

    def on_training_step_begin(self, model: Any, iteration: int = 0, **kwargs: Any) -> None:
        self.ratio_for(model, iteration - 1)
