"""Memory statistics: process RSS (CPU) and, with CUDA, peak allocated / reserved GPU memory since the last report.

The reference's GPU-stats callback only worked on CUDA; this one reports RSS on any machine. With several ranks the
maximum over ranks is reported (all ranks must call the hook, as they do in the trainer).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from loguru import logger

from fastgen.callbacks.callback import Callback, logging_interval

GIB = 1024**3


def process_rss_bytes() -> int:
    """Resident set size of this process (psutil if installed, else /proc/self/status VmRSS; 0 if neither)."""
    try:
        import psutil

        return int(psutil.Process(os.getpid()).memory_info().rss)
    except ImportError:
        pass
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except OSError:
        pass
    return 0


def _cuda_in_use() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_initialized()


def memory_stats() -> dict[str, float]:
    stats = {"mem/rss_gib": process_rss_bytes() / GIB}
    if _cuda_in_use():
        stats["mem/cuda_peak_allocated_gib"] = torch.cuda.max_memory_allocated() / GIB
        stats["mem/cuda_peak_reserved_gib"] = torch.cuda.max_memory_reserved() / GIB
    return stats


def _max_over_ranks(stats: dict[str, float]) -> dict[str, float]:
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return stats
    device = "cuda" if torch.distributed.get_backend() == "nccl" else "cpu"
    keys = sorted(stats)
    values = torch.tensor([stats[k] for k in keys], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(values, op=torch.distributed.ReduceOp.MAX)
    return dict(zip(keys, values.tolist()))


class MemStatsCallback(Callback):
    def __init__(self, every_n: int | None = None):
        super().__init__()
        if every_n is not None and every_n <= 0:
            raise ValueError(f"MemStatsCallback every_n got {every_n}; expected a positive integer or None")
        self.every_n = every_n
        self.last_stats: dict[str, float] = {}

    def _interval(self) -> int:
        return int(self.every_n or logging_interval(self.trainer, self.config, default=100))

    def on_train_begin(self, model: Any, iteration: int = 0, **kwargs: Any) -> None:
        if _cuda_in_use():
            torch.cuda.reset_peak_memory_stats()

    def on_training_step_end(self, model: Any, data: Any = None, outputs: Any = None, loss_map: Any = None,
                             iteration: int = 0, **kwargs: Any) -> None:
        if iteration % self._interval() != 0:
            return
        stats = _max_over_ranks(memory_stats())
        self.last_stats = stats
        self.logs.update(stats)
        logger.info(f"iteration {iteration}: " + ", ".join(f"{k.split('/')[1]}={v:.3f}" for k, v in stats.items()))
        if _cuda_in_use():
            torch.cuda.reset_peak_memory_stats()
