"""Sampling grids of the schedulers the diffusers families ship with, as pure functions (numpy float64).

They reproduce the grids of diffusers' DDIMScheduler / EulerDiscreteScheduler (discrete timesteps of an alpha-bar
table, by `timestep_spacing`) and FlowMatchEulerDiscreteScheduler as the Flux / Qwen-Image pipelines call it (their
own sigmas linspace(1, 1/n, n), a static or resolution-dependent shift, an optional terminal stretch); tests compare
them with the schedulers to 1e-6. The fixed-shift grids of Wan-style samplers are `noise_schedule.flow_shift_t_list`. Mapping onto our schedules:
  * sd / sdxl: t = timestep / num_train_timesteps (our alpha-bar table is indexed by t * N, so t hits the entries
    the scheduler uses exactly);
  * flow (rf): t = sigma (x_t = (1 - sigma) x0 + sigma eps; the transformer's velocity is our `flow`).
"""

from __future__ import annotations

import math

import numpy as np

from fastgen.networks.noise_schedule import shifted_sigmas

SPACINGS = ("leading", "trailing", "linspace")


def discrete_timesteps(num_steps: int, num_train_timesteps: int = 1000, timestep_spacing: str = "leading",
                       steps_offset: int = 0) -> np.ndarray:
    """The integer timesteps (descending) a DDIM/Euler scheduler visits in `num_steps` steps."""
    n, big = int(num_steps), int(num_train_timesteps)
    if not 1 <= n <= big:
        raise ValueError(f"num_steps must be in [1, {big}]; got {num_steps}")
    if timestep_spacing == "leading":
        ts = (np.arange(n) * (big // n)).round() + steps_offset
    elif timestep_spacing == "trailing":
        ts = np.round(np.arange(big, 0, -big / n)) - 1
        ts = ts[::-1]
    elif timestep_spacing == "linspace":
        ts = np.linspace(0, big - 1, n).round()
    else:
        raise ValueError(f"timestep_spacing must be one of {SPACINGS}; got {timestep_spacing!r}")
    return ts[::-1].astype(np.int64)


def ddim_t_list(num_steps: int, scheduler_config: dict) -> tuple[np.ndarray, bool]:
    """(t_list, final_to_x0) for deterministic DDIM (eta = 0) on our sd schedule.

    t_list holds the visited times then the final one: 0 (alpha-bar[0]) when `set_alpha_to_one` is false, as the SD
    pipelines do; with it true the last step lands on the clean sample (final_to_x0 = True).
    """
    big = int(scheduler_config.get("num_train_timesteps", 1000))
    ts = discrete_timesteps(num_steps, big, scheduler_config.get("timestep_spacing", "leading"),
                            int(scheduler_config.get("steps_offset", 0)))
    return np.append(ts / big, 0.0), bool(scheduler_config.get("set_alpha_to_one", True))


def euler_discrete_t_list(num_steps: int, scheduler_config: dict) -> tuple[np.ndarray, bool]:
    """(t_list, final_to_x0=True) for EulerDiscreteScheduler with linear interpolation: its Euler step in
    sigma_VE = sqrt((1 - abar) / abar) is exactly a DDIM step, and its last sigma is 0 (the clean sample)."""
    big = int(scheduler_config.get("num_train_timesteps", 1000))
    spacing = scheduler_config.get("timestep_spacing", "leading")
    if spacing == "linspace" or scheduler_config.get("interpolation_type", "linear") != "linear" or \
            scheduler_config.get("use_karras_sigmas"):
        raise ValueError("EulerDiscreteScheduler grids off the integer timesteps (linspace spacing, Karras sigmas, "
                         "non-linear interpolation) are not supported; use timestep_spacing leading or trailing")
    ts = discrete_timesteps(num_steps, big, spacing, int(scheduler_config.get("steps_offset", 0)))
    return np.append(ts / big, 0.0), True


def flow_shift_mu(image_seq_len: int, scheduler_config: dict) -> float:
    """Resolution-dependent shift: mu linear in the number of image tokens (Flux / Qwen-Image pipelines)."""
    base_len = scheduler_config.get("base_image_seq_len", 256)
    max_len = scheduler_config.get("max_image_seq_len", 4096)
    base_shift = scheduler_config.get("base_shift", 0.5)
    max_shift = scheduler_config.get("max_shift", 1.15)
    slope = (max_shift - base_shift) / (max_len - base_len)
    return image_seq_len * slope + base_shift - slope * base_len


def shift_sigmas(sigmas: np.ndarray, scheduler_config: dict, mu: float | None = None) -> np.ndarray:
    """Apply the flow scheduler's shift, then its optional terminal stretch (the last sigma becomes
    `shift_terminal`). Every variant is the map s sigma / (1 + (s - 1) sigma) of `shifted_sigmas`: static with
    s = `shift`; resolution-dependent with s = e^mu ("exponential", Flux / Qwen-Image) or s = mu ("linear")."""
    s = np.asarray(sigmas, dtype=np.float64)
    if scheduler_config.get("use_dynamic_shifting", False):
        if mu is None:
            raise ValueError("this flow scheduler shifts by resolution (use_dynamic_shifting): mu is required")
        exponential = scheduler_config.get("time_shift_type", "exponential") == "exponential"
        s = shifted_sigmas(s, math.exp(mu) if exponential else mu)
    else:
        s = shifted_sigmas(s, float(scheduler_config.get("shift", 1.0)))
    terminal = scheduler_config.get("shift_terminal")
    if terminal:
        if len(s) < 2:
            raise ValueError("a flow scheduler with shift_terminal needs at least 2 sampling steps")
        one_minus = 1 - s
        s = 1 - one_minus / (one_minus[-1] / (1 - terminal))
    return s


def flow_t_list(num_steps: int, scheduler_config: dict, image_seq_len: int) -> tuple[np.ndarray, bool]:
    """(t_list, final_to_x0=True): the Flux / Qwen-Image pipelines' sigmas linspace(1, 1/n, n), shifted, then 0."""
    n = int(num_steps)
    if n < 1:
        raise ValueError(f"num_steps must be >= 1; got {num_steps}")
    mu = flow_shift_mu(image_seq_len, scheduler_config)
    sigmas = shift_sigmas(np.linspace(1.0, 1.0 / n, n), scheduler_config, mu)
    return np.append(sigmas, 0.0), True
