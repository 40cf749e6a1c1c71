"""Wall-clock breakdown of training iterations: data loading, forward, backward, optimizer, whole iteration.

Phases are delimited by the hooks the trainer calls:
  step_begin -> accum_step_begin        data (first micro-batch)
  accum_step_begin -> backward_begin    forward
  backward_begin -> next accum_step_begin | optimizer_step_begin   backward (for later micro-batches this also
                                        contains loading the next batch: there is no hook between the two)
  optimizer_step_begin -> step_end      optimizer (clipping, step, zero_grad, earlier step-end callbacks)
Means over the last `every_n` iterations go to `self.logs` (-> W&B) and the log every `every_n` iterations.
`cuda_sync=True` synchronises CUDA at each boundary so GPU work is attributed to the right phase (slower).
"""

from __future__ import annotations

import time
from typing import Any

import torch
from loguru import logger

from fastgen.callbacks.callback import Callback, global_batch_size, logging_interval

PHASES = ("data", "forward", "backward", "optimizer")


class TrainProfilerCallback(Callback):
    def __init__(self, every_n: int | None = None, cuda_sync: bool = False):
        super().__init__()
        if every_n is not None and every_n <= 0:
            raise ValueError(f"TrainProfilerCallback every_n got {every_n}; expected a positive integer or None")
        self.every_n = every_n
        self.cuda_sync = cuda_sync
        self._reset_window()
        self._mark = None
        self._phase = None
        self._step_start = None

    def _reset_window(self) -> None:
        self.sums = dict.fromkeys((*PHASES, "iteration"), 0.0)
        self.num_iters = 0

    def _interval(self) -> int:
        return int(self.every_n or logging_interval(self.trainer, self.config, default=100))

    def _now(self) -> float:
        if self.cuda_sync and torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
        return time.perf_counter()

    def _switch(self, phase: str | None) -> float:
        """Close the running phase (adding its time) and start `phase`."""
        now = self._now()
        if self._phase is not None and self._mark is not None:
            self.sums[self._phase] += now - self._mark
        self._phase, self._mark = phase, now
        return now

    def on_training_step_begin(self, model: Any, iteration: int = 0, **kwargs: Any) -> None:
        self._phase = None
        self._step_start = self._switch("data")

    def on_training_accum_step_begin(self, model: Any, data: Any = None, iteration: int = 0, accum_round: int = 0,
                                     **kwargs: Any) -> None:
        self._switch("forward")

    def on_backward_begin(self, model: Any, loss_map: Any = None, iteration: int = 0, **kwargs: Any) -> None:
        self._switch("backward")

    def on_optimizer_step_begin(self, model: Any, iteration: int = 0, **kwargs: Any) -> None:
        self._switch("optimizer")

    def on_training_step_end(self, model: Any, data: Any = None, outputs: Any = None, loss_map: Any = None,
                             iteration: int = 0, **kwargs: Any) -> None:
        if self._step_start is None:
            return
        now = self._switch(None)
        self.sums["iteration"] += now - self._step_start
        self.num_iters += 1
        self._step_start = None
        if iteration % self._interval() == 0:
            self.report(iteration)

    def report(self, iteration: int) -> dict[str, float]:
        n = max(self.num_iters, 1)
        means = {f"timing/{k}_s": v / n for k, v in self.sums.items()}
        batch = global_batch_size(self.trainer, self.config)
        if batch and means["timing/iteration_s"] > 0:
            means["timing/samples_per_s"] = batch / means["timing/iteration_s"]
        self.logs.update(means)
        parts = ", ".join(f"{k}={means[f'timing/{k}_s'] * 1000:.1f}ms" for k in ("iteration", *PHASES))
        logger.info(f"iteration {iteration}: mean over {self.num_iters} iterations: {parts}")
        self._reset_window()
        return means
