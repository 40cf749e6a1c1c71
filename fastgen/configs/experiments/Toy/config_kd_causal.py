"""CausalKD: the exact AR(1) teacher's ODE paths distilled chunk by chunk into the toy causal student (CPU, seconds).

    python train.py --config=fastgen/configs/experiments/Toy/config_kd_causal.py

The loader writes the teacher paths the first time it is built (rank 0, then a barrier) to `dataloader_train.path`
(default $DATA_ROOT_DIR/toy/kd_causal_ar1_paths.safetensors): the bidirectional exact denoiser E[x0 | x_t]
(`AR1VideoDenoiser`) integrated with Heun steps from noise * sigma(t_list[0]) through every time of the student's
4-step t_list, the states stored as data["path"]. Each chunk of a training video is then taken at its own step.
"""

from __future__ import annotations

import os

from fastgen.configs.experiments.Toy.config_kd import _heun_segment
from fastgen.configs.experiments.Toy.config_sft_causal import apply_toy_causal_settings
from fastgen.configs.methods import config_kd_causal
from fastgen.utils import LazyCall as L
from fastgen.utils.env import data_root_dir

TOY_CAUSAL_T_LIST = [0.999, 0.75, 0.5, 0.25, 0.0]  # the rf schedule's 4-step grid


def generate_ar1_teacher_paths(path: str, num_videos: int = 4096, dim: int = 4, num_frames: int = 8, a: float = 0.9,
                               t_list=tuple(TOY_CAUSAL_T_LIST), substeps: int = 16, seed: int = 0) -> None:
    """Write (noise, real, path) of the exact AR(1) teacher's PF-ODE to `path` (a .safetensors shard)."""
    import torch

    from fastgen.datasets.kd_dataset import generate_teacher_pairs
    from fastgen.networks.toy_causal import AR1VideoDenoiser

    teacher = AR1VideoDenoiser(dim=dim, a=a, schedule_type="rf")
    schedule = teacher.noise_scheduler
    noise = torch.randn(num_videos, dim, num_frames, 1, 1, generator=torch.Generator().manual_seed(seed))

    def x0_fn(x, t):
        return teacher(x, t, fwd_pred_type="x0")

    def sample_fn(x, t_cur, t_next, condition):
        times = torch.linspace(float(t_cur), float(t_next), substeps + 1, dtype=torch.float64)
        return _heun_segment(x0_fn, x, times, schedule).to(torch.float32)

    x_init = schedule.latents(noise, torch.tensor(float(t_list[0]), dtype=torch.float64))
    generate_teacher_pairs(sample_fn, noise, None, list(t_list), path, x_init=x_init)


def ar1_teacher_path_loader(path: str, batch_size: int = 128, num_videos: int = 4096, dim: int = 4,
                            num_frames: int = 8, a: float = 0.9, t_list=tuple(TOY_CAUSAL_T_LIST),
                            generate_if_missing: bool = True, seed: int = 0, sampler_start_idx: int | None = None,
                            rank: int | None = None, world_size: int | None = None):
    """A TeacherPairLoader over `path`, generating the teacher paths first when the file is missing."""
    from fastgen.datasets.kd_dataset import TeacherPairLoader
    from fastgen.utils import distributed as dist_utils

    if generate_if_missing and not os.path.exists(path):
        if dist_utils.is_rank0():
            generate_ar1_teacher_paths(path, num_videos=num_videos, dim=dim, num_frames=num_frames, a=a,
                                       t_list=t_list, seed=seed)
        dist_utils.barrier()
    return TeacherPairLoader(path=path, batch_size=batch_size, seed=seed, sampler_start_idx=sampler_start_idx,
                             rank=rank, world_size=world_size)


def _smoke_batch(kwargs: dict, batch_size: int) -> dict:
    from fastgen.datasets.kd_dataset import TeacherPairLoader

    shape = [int(kwargs.get("dim", 4)), int(kwargs.get("num_frames", 8)), 1, 1]
    return TeacherPairLoader.smoke_batch({"input_shape": shape, "t_list": list(kwargs.get("t_list") or [])},
                                         batch_size)


ar1_teacher_path_loader.smoke_batch = _smoke_batch  # train.py --smoke: batches like the real loader's


def create_config():
    config = config_kd_causal.create_config()
    apply_toy_causal_settings(config, name="kd_causal_ar1", max_iter=600)
    config.dataloader_train = L(ar1_teacher_path_loader)(
        path=f"{data_root_dir()}/toy/kd_causal_ar1_paths.safetensors", batch_size=128, num_videos=4096, dim=4,
        num_frames=8, a=0.9, t_list=list(TOY_CAUSAL_T_LIST), generate_if_missing=True, seed=0, sampler_start_idx=None,
    )
    config.model.student_sample_steps = 4
    config.model.sample_t_cfg.t_list = list(TOY_CAUSAL_T_LIST)
    return config
