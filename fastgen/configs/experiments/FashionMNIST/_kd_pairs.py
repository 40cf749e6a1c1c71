"""KD data for Fashion-MNIST: (noise, teacher sample) pairs of the shipped teacher, made once and cached.

The pairs are the teacher's own sampler (EDM Heun, `teacher_nfe` network evaluations, as the table scores it) on
seeded unit noise, class-balanced (pair i has class i % 10). The noise stream is one generator seeded with
`noise_seed`, far from the seeds of the demo's evaluation noise (eval_seed * 1_000_003 + index), so a KD student
is never trained on the noise it is scored on. A shard holds "noise" (unit noise; KD scales it by sigma_max),
"real" (the teacher's image), "condition" (one-hot) and "t_list" [80, 0] (fastgen.datasets.kd_dataset).

Cost: the teacher's sampler, about 90 s per 1000 pairs at 35 NFE on 2 CPU cores (fastgen/demo/README.md), so the
default 10000 pairs take about 15 minutes once; later runs reuse the file. Torch is imported only when a loader is
built or pairs are made (loading the config stays light).
"""

from __future__ import annotations

import os

from loguru import logger

DEFAULT_NUM_PAIRS = 10000
DEFAULT_TEACHER_NFE = 35
# noise seed of the pairs: outside the range of the demo's per-index evaluation seeds
NOISE_SEED = 1_000_000_007
GENERATION_BATCH = 250


def default_pairs_path(num_pairs: int = DEFAULT_NUM_PAIRS, teacher_nfe: int = DEFAULT_TEACHER_NFE,
                       noise_seed: int = NOISE_SEED, teacher_path: str | None = None) -> str:
    """$FASTGEN_OUTPUT_ROOT/fastgen/fashion_mnist/kd_pairs/<teacher sha256[:12]>_n<N>_nfe<NFE>_seed<S>.safetensors:
    everything the pairs depend on is in the name, so a cached file is reused only for the same teacher and recipe."""
    from fastgen.configs.experiments.FashionMNIST._common import shipped_teacher_path
    from fastgen.metrics import sha256_of_file
    from fastgen.utils.env import output_root

    digest = sha256_of_file(teacher_path or shipped_teacher_path())[:12]
    name = f"teacher{digest}_n{int(num_pairs)}_nfe{int(teacher_nfe)}_seed{int(noise_seed)}.safetensors"
    return os.path.join(output_root(), "fastgen", "fashion_mnist", "kd_pairs", name)


def generate_pairs(path: str, num_pairs: int = DEFAULT_NUM_PAIRS, teacher_nfe: int = DEFAULT_TEACHER_NFE,
                   noise_seed: int = NOISE_SEED, teacher_path: str | None = None,
                   batch_size: int = GENERATION_BATCH) -> None:
    """Sample `num_pairs` images from the teacher (Heun, `teacher_nfe` evaluations) and write the KD shard `path`
    (atomically: an interrupted run leaves no half-written file)."""
    import torch

    from fastgen.datasets.kd_dataset import generate_teacher_pairs
    from fastgen.demo.evaluate import NUM_CLASSES, one_hot
    from fastgen.demo.teacher import load_teacher_net

    if num_pairs < 1 or teacher_nfe < 1:
        raise ValueError(f"num_pairs and teacher_nfe must be >= 1; got {num_pairs} and {teacher_nfe}")
    teacher = load_teacher_net(teacher_path)
    noise = torch.randn(int(num_pairs), *teacher_shape(teacher), generator=torch.Generator().manual_seed(noise_seed))
    condition = one_hot(torch.arange(int(num_pairs)) % NUM_CLASSES)
    done = 0

    @torch.no_grad()
    def heun(x, t_cur, t_next, cond):  # unit noise -> the teacher's sample (its sampler scales by sigma_max)
        nonlocal done
        images = teacher.sample(x, condition=cond, num_steps=int(teacher_nfe), sampler_type="heun")
        done += x.shape[0]
        logger.info(f"[kd pairs] {done}/{num_pairs} teacher samples ({teacher_nfe} NFE Heun)")
        return images

    t_max = float(teacher.noise_scheduler.max_t)
    generate_teacher_pairs(heun, noise, condition, [t_max, 0.0], path, batch_size=batch_size, save_path=False)


def teacher_shape(net) -> tuple[int, int, int]:
    return int(net.img_channels), int(net.img_resolution), int(net.img_resolution)


def teacher_pair_loader(path: str | None = None, batch_size: int = 32, num_pairs: int = DEFAULT_NUM_PAIRS,
                        teacher_nfe: int = DEFAULT_TEACHER_NFE, noise_seed: int = NOISE_SEED,
                        teacher_path: str | None = None, generate_if_missing: bool = True, seed: int = 0,
                        sampler_start_idx: int | None = None, rank: int | None = None,
                        world_size: int | None = None):
    """A TeacherPairLoader over `path` (None: `default_pairs_path(...)`), generating the pairs first (rank 0, then a
    barrier) when the file is missing and `generate_if_missing`."""
    from fastgen.datasets.kd_dataset import TeacherPairLoader
    from fastgen.utils import distributed as dist_utils

    path = path or default_pairs_path(num_pairs, teacher_nfe, noise_seed, teacher_path)
    if not os.path.exists(path):
        if not generate_if_missing:
            raise FileNotFoundError(f"KD pairs {path} not found and dataloader_train.generate_if_missing=false")
        if dist_utils.is_rank0():
            logger.info(f"[kd pairs] {path} missing: sampling {num_pairs} pairs from the teacher")
            generate_pairs(path, num_pairs, teacher_nfe, noise_seed, teacher_path)
        dist_utils.barrier()
    return TeacherPairLoader(path=path, batch_size=batch_size, seed=seed, sampler_start_idx=sampler_start_idx,
                             use_path=False, rank=rank, world_size=world_size)


def _smoke_batch(kwargs: dict, batch_size: int) -> dict:
    """`train.py --smoke`: the real loader's keys (noise, real, condition) at the tiny size, no path (1-step KD)."""
    from fastgen.datasets.kd_dataset import TeacherPairLoader

    return TeacherPairLoader.smoke_batch({**kwargs, "use_path": False}, batch_size)


teacher_pair_loader.smoke_batch = _smoke_batch
