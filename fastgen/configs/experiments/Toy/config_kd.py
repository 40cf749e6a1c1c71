"""Knowledge distillation of the exact Gaussian-mixture teacher into a 1-step MLP student (seconds on CPU).

    python train.py --config=fastgen/configs/experiments/Toy/config_kd.py - trainer.max_iter=500

Teacher pairs: the loader `toy_teacher_pair_loader` writes them the first time it is built (rank 0, then a barrier)
to `dataloader_train.path` (default $DATA_ROOT_DIR/toy/kd_<gmm>_pairs.safetensors) by solving the teacher's
probability-flow ODE with Heun steps from noise * sigma(t_list[0]) through every time of `t_list` (the path is
stored too, so `t_list=[80, 1, 0]` with `model.student_sample_steps=2` gives 2-step KD). The teacher is the exact
denoiser E[x0 | x_t] (`GMMDenoiser`), so the pairs are exact ODE solutions up to the solver error.
Set `dataloader_train.generate_if_missing=false` to require an existing file.
"""

from __future__ import annotations

import os

from fastgen.configs.experiments.Toy.config_sft import apply_toy_settings
from fastgen.configs.methods import config_kd
from fastgen.utils import LazyCall as L
from fastgen.utils.env import data_root_dir


def _heun_segment(x0_fn, x, times, schedule):
    """Integrate the PF-ODE through `times` with Heun steps; a step to t = 0 returns the x0 prediction."""
    import torch

    from fastgen.networks.samplers import pf_ode_velocity

    x = x.to(torch.float64)
    for t, t_next in zip(times[:-1], times[1:]):
        x0 = x0_fn(x, t.expand(x.shape[0]))
        if t_next == 0:
            return x0
        d = pf_ode_velocity(x, x0, t, schedule)
        x_pred = x + (t_next - t) * d
        d_next = pf_ode_velocity(x_pred, x0_fn(x_pred, t_next.expand(x.shape[0])), t_next, schedule)
        x = x + (t_next - t) * 0.5 * (d + d_next)
    return x


def generate_toy_teacher_pairs(path: str, num_pairs: int = 8192, gmm_name: str = "ring8", dim: int = 2,
                               t_list=(80.0, 0.0), substeps: int = 32, seed: int = 0) -> None:
    """Write (noise, real, path) pairs of the exact GMM teacher's ODE to `path` (a .safetensors shard)."""
    import torch

    from fastgen.datasets.kd_dataset import generate_teacher_pairs
    from fastgen.networks.toy import GMMDenoiser

    teacher = GMMDenoiser(gmm_name=gmm_name, dim=dim, schedule_type="edm").to(torch.float64)
    schedule = teacher.noise_scheduler
    noise = torch.randn(num_pairs, dim, generator=torch.Generator().manual_seed(seed))

    def x0_fn(x, t):
        return teacher(x, t, fwd_pred_type="x0")

    def sample_fn(x, t_cur, t_next, condition):
        lo = max(float(t_next), schedule.min_t)
        # Karras spacing (rho = 7) between t_cur and t_next
        ramp = torch.linspace(0, 1, substeps + 1, dtype=torch.float64)
        times = (float(t_cur) ** (1 / 7) + ramp * (lo ** (1 / 7) - float(t_cur) ** (1 / 7))) ** 7
        if float(t_next) == 0:
            times = torch.cat([times, torch.zeros(1, dtype=torch.float64)])
        return _heun_segment(x0_fn, x, times, schedule).to(torch.float32)

    x_init = schedule.latents(noise, torch.tensor(float(t_list[0]), dtype=torch.float64))
    generate_teacher_pairs(sample_fn, noise, None, list(t_list), path, x_init=x_init)


def toy_teacher_pair_loader(path: str, batch_size: int = 256, num_pairs: int = 8192, gmm_name: str = "ring8",
                            dim: int = 2, t_list=(80.0, 0.0), generate_if_missing: bool = True, seed: int = 0,
                            sampler_start_idx: int | None = None, rank: int | None = None,
                            world_size: int | None = None):
    """A TeacherPairLoader over `path`, generating the pairs first when the file is missing."""
    from fastgen.datasets.kd_dataset import TeacherPairLoader
    from fastgen.utils import distributed as dist_utils

    if generate_if_missing and not os.path.exists(path):
        if dist_utils.is_rank0():
            generate_toy_teacher_pairs(path, num_pairs=num_pairs, gmm_name=gmm_name, dim=dim, t_list=t_list,
                                       seed=seed)
        dist_utils.barrier()
    return TeacherPairLoader(path=path, batch_size=batch_size, seed=seed, sampler_start_idx=sampler_start_idx,
                             rank=rank, world_size=world_size)


def _toy_pair_smoke_batch(kwargs: dict, batch_size: int) -> dict:
    from fastgen.datasets.kd_dataset import TeacherPairLoader

    return TeacherPairLoader.smoke_batch(kwargs, batch_size)


toy_teacher_pair_loader.smoke_batch = _toy_pair_smoke_batch  # train.py --smoke: batches like the real loader's


def create_config():
    config = config_kd.create_config()
    config.dataloader_train = L(toy_teacher_pair_loader)(
        path=f"{data_root_dir()}/toy/kd_ring8_pairs.safetensors", batch_size=256, num_pairs=8192, gmm_name="ring8",
        dim=2, t_list=[80.0, 0.0], generate_if_missing=True, seed=0, sampler_start_idx=None,
    )
    apply_toy_settings(config, name="kd_ring8")
    config.model.student_sample_steps = 1
    return config
