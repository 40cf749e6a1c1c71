"""Learning-rate multipliers as pure functions of the step.

Each scheduler is a small callable `f(step) -> float` that multiplies the optimizer's base learning rate
(use through `torch.optim.lr_scheduler.LambdaLR`, see `fastgen.configs.opt.get_scheduler`). Keeping them free of
torch makes them trivially testable and resumable: the multiplier depends on the step alone.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence


def _as_list(value: float | Sequence[float], n: int, name: str) -> list[float]:
    values = [float(v) for v in value] if isinstance(value, Sequence) else [float(value)] * n
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} entries; expected one per cycle ({n})")
    return values


class _CycleScheduler:
    """Shared cycle bookkeeping: `cycle_lengths` split the step axis into consecutive cycles; the last one repeats."""

    def __init__(self, warm_up_steps, cycle_lengths, **per_cycle):
        self.cycle_lengths = [float(c) for c in cycle_lengths]
        if not self.cycle_lengths or any(c <= 0 for c in self.cycle_lengths):
            raise ValueError(f"cycle_lengths must be positive, got {list(cycle_lengths)}")
        n = len(self.cycle_lengths)
        self.warm_up_steps = _as_list(warm_up_steps, n, "warm_up_steps")
        for name, value in per_cycle.items():
            setattr(self, name, _as_list(value, n, name))
        self.cum_cycles = [0.0]
        for length in self.cycle_lengths:
            self.cum_cycles.append(self.cum_cycles[-1] + length)

    def _locate(self, step: int) -> tuple[int, float]:
        """(cycle index, step within that cycle); steps past the last cycle stay in the last cycle."""
        cycle = min(bisect.bisect_right(self.cum_cycles, step) - 1, len(self.cycle_lengths) - 1)
        return cycle, step - self.cum_cycles[cycle]

    def schedule(self, step: int) -> float:
        return self(step)


class LambdaLinearScheduler(_CycleScheduler):
    """Per cycle: linear warm-up f_start -> f_max, then linear change f_max -> f_min over the rest of the cycle.

    The default config (warm-up 1000, f_max = f_min = 1) is "linear warm-up, then constant".
    """

    def __init__(self, warm_up_steps=(0,), f_min=(1.0,), f_max=(1.0,), f_start=(0.0,), cycle_lengths=(1e10,),
                 verbosity_interval: int = 0):
        super().__init__(warm_up_steps, cycle_lengths, f_min=f_min, f_max=f_max, f_start=f_start)
        self.verbosity_interval = verbosity_interval

    def __call__(self, step: int) -> float:
        c, n = self._locate(step)
        warm, length = self.warm_up_steps[c], self.cycle_lengths[c]
        if n < warm:  # f = f_start + (f_max - f_start) * n / warm
            return self.f_start[c] + (self.f_max[c] - self.f_start[c]) * n / warm
        decay_steps = length - warm
        if decay_steps <= 0:
            return self.f_max[c]
        frac = min((n - warm) / decay_steps, 1.0)
        return self.f_max[c] + (self.f_min[c] - self.f_max[c]) * frac


class LambdaWarmUpCosineScheduler:
    """Linear warm-up lr_start -> lr_max, then half-cosine lr_max -> lr_min reached at `max_decay_steps`."""

    def __init__(self, warm_up_steps: int, lr_min: float, lr_max: float, lr_start: float, max_decay_steps: int,
                 verbosity_interval: int = 0):
        if max_decay_steps <= warm_up_steps:
            raise ValueError(f"max_decay_steps ({max_decay_steps}) must exceed warm_up_steps ({warm_up_steps})")
        self.warm_up_steps, self.max_decay_steps = warm_up_steps, max_decay_steps
        self.lr_min, self.lr_max, self.lr_start = lr_min, lr_max, lr_start
        self.verbosity_interval = verbosity_interval

    def __call__(self, step: int) -> float:
        if step < self.warm_up_steps:
            return self.lr_start + (self.lr_max - self.lr_start) * step / self.warm_up_steps
        t = min((step - self.warm_up_steps) / (self.max_decay_steps - self.warm_up_steps), 1.0)
        # cosine annealing: lr_min + (lr_max - lr_min) * (1 + cos(pi t)) / 2
        return self.lr_min + 0.5 * (self.lr_max - self.lr_min) * (1.0 + math.cos(math.pi * t))

    def schedule(self, step: int) -> float:
        return self(step)


class LambdaWarmUpCosineScheduler2(_CycleScheduler):
    """Cosine schedule with one (warm-up, f_start, f_max, f_min) set per cycle."""

    def __init__(self, warm_up_steps, f_min, f_max, f_start, cycle_lengths, verbosity_interval: int = 0):
        super().__init__(warm_up_steps, cycle_lengths, f_min=f_min, f_max=f_max, f_start=f_start)
        self.verbosity_interval = verbosity_interval

    def __call__(self, step: int) -> float:
        c, n = self._locate(step)
        warm, length = self.warm_up_steps[c], self.cycle_lengths[c]
        if n < warm:
            return self.f_start[c] + (self.f_max[c] - self.f_start[c]) * n / warm
        t = min((n - warm) / max(length - warm, 1e-12), 1.0)
        return self.f_min[c] + 0.5 * (self.f_max[c] - self.f_min[c]) * (1.0 + math.cos(math.pi * t))


class LambdaInverseSquareRootScheduler:
    """EDM2 schedule: f = min(step / warm_up_steps, 1) / sqrt(max(step / decay_steps, 1)).

    `warm_up_steps=0` disables the ramp; `decay_steps=0` disables the decay.
    """

    def __init__(self, warm_up_steps: int = 0, decay_steps: int = 70000):
        if warm_up_steps < 0 or decay_steps < 0:
            raise ValueError(f"warm_up_steps and decay_steps must be >= 0, got {warm_up_steps}, {decay_steps}")
        self.warm_up_steps, self.decay_steps = warm_up_steps, decay_steps

    def __call__(self, step: int) -> float:
        f = 1.0
        if self.decay_steps > 0:
            f /= math.sqrt(max(step / self.decay_steps, 1.0))
        if self.warm_up_steps > 0:
            f *= min(step / self.warm_up_steps, 1.0)
        return f

    def schedule(self, step: int) -> float:
        return self(step)
