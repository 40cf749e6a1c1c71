"""Evaluation for the demo: seeded class-balanced sampling, timed FID, and the teacher-vs-student grid.

Sample i always gets the same noise (a generator seeded with (seed, i)) and class i % 10, so the teacher and the
student are compared on identical inputs, and an FID does not depend on the batch size.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from loguru import logger

NUM_CLASSES = 10
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")


def one_hot(labels: torch.Tensor, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels.long(), num_classes).to(torch.float32)


def indexed_noise(indices: list[int] | range, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Unit Gaussian noise [len(indices), *shape]; row j is a pure function of (seed, indices[j])."""
    rows = []
    for index in indices:
        generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(index))
        rows.append(torch.randn(shape, generator=generator))
    return torch.stack(rows)


def teacher_sampler(net: torch.nn.Module, nfe: int, sampler_type: str = "heun") -> Callable:
    """(noise, condition) -> images: the teacher's PF-ODE sampler with `nfe` network evaluations."""

    device = next(net.parameters()).device

    @torch.no_grad()
    def sample(noise: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        images = net.sample(noise.to(device), condition=condition.to(device), num_steps=nfe, sampler_type=sampler_type)
        return images.cpu()

    return sample


def student_sampler(net: torch.nn.Module, steps: int = 1, sample_type: str = "sde", seed: int = 0,
                    t_list: Any = None) -> Callable:
    """(noise, condition) -> images: the few-step student sampler (1 step: x0 = G(noise * sigma_max); several
    steps re-noise with fresh noise from a generator seeded with `seed` for "sde"). `t_list` (steps + 1 times
    ending in 0) overrides the schedule's default grid."""
    from fastgen.networks.samplers import student_sample

    device = next(net.parameters()).device
    if t_list is None:
        t_list = net.noise_scheduler.get_t_list(steps, device=device)
    else:
        t_list = torch.as_tensor(list(t_list), dtype=torch.float64, device=device)
        if len(t_list) != steps + 1 or float(t_list[-1]) != 0.0:
            raise ValueError(f"t_list must have steps+1={steps + 1} entries ending in 0; got {t_list.tolist()}")

    @torch.no_grad()
    def sample(noise: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        condition = condition.to(device)

        def x0_fn(x, t):
            return net(x, t, condition=condition, fwd_pred_type="x0")

        generator = torch.Generator(device=device).manual_seed(int(seed))
        images = student_sample(x0_fn, noise.to(device), t_list, net.noise_scheduler, sample_type=sample_type,
                                generator=generator)
        return images.cpu()

    return sample


def timed_fid(name: str, sample_fn: Callable, feature_net: Any, ref_stats: Any, num_samples: int, batch_size: int,
              shape: tuple[int, ...], seed: int) -> dict[str, float]:
    """FID of `num_samples` images of `sample_fn` and the wall time spent sampling them (feature extraction and
    noise generation excluded), with a progress line per batch."""
    from fastgen.metrics import compute_fid

    sampling_seconds = 0.0
    started = time.perf_counter()

    def generate(start: int, count: int) -> torch.Tensor:
        nonlocal sampling_seconds
        indices = range(start, start + count)
        noise = indexed_noise(indices, shape, seed)
        condition = one_hot(torch.tensor([i % NUM_CLASSES for i in indices]))
        tic = time.perf_counter()
        images = sample_fn(noise, condition).clamp(-1, 1)
        sampling_seconds += time.perf_counter() - tic
        done = start + count
        rate = done / max(sampling_seconds, 1e-9)
        eta = (num_samples - done) / max(rate, 1e-9)
        logger.info(f"[eval] {name}: {done}/{num_samples} samples | {rate:.1f} img/s | ETA {eta:.0f} s")
        return images

    fid = compute_fid(generate, feature_net, ref_stats, num_samples=num_samples, batch_size=batch_size)
    total = time.perf_counter() - started
    return {"fid": float(fid), "num_samples": int(num_samples), "sampling_seconds": sampling_seconds,
            "seconds_per_1000_images": sampling_seconds * 1000.0 / num_samples, "eval_seconds": total}


def real_data_fid(feature_net: Any, ref_stats: Any, num_samples: int, root: str | None = None,
                  split: str = "test") -> float:
    """FID of `num_samples` real Fashion-MNIST images of `split` against the reference statistics of the other
    split: the floor an ideal generator reaches with this sample count."""
    from fastgen.metrics import compute_fid
    from fastgen.metrics.feature_net import load_fashion_mnist

    images, _ = load_fashion_mnist(split, root=root, max_size=num_samples)
    if images.shape[0] < num_samples:
        raise ValueError(f"the {split} split has only {images.shape[0]} images; num_samples={num_samples}")
    return float(compute_fid([images[i:i + 1000] for i in range(0, num_samples, 1000)], feature_net, ref_stats,
                             num_samples=num_samples))


def comparison_grid(teacher_images: torch.Tensor, student_images: torch.Tensor, per_class: int, path: str,
                    titles: tuple[str, str] = ("teacher", "student")) -> str:
    """PNG with one row per class: `per_class` teacher samples, a gap, the student's samples from the same noise.

    Inputs are [10 * per_class, 1, H, W] ordered class-major (row c holds class c). A header names both halves.
    """
    from PIL import Image, ImageDraw

    from fastgen.utils.image_grid import make_image_grid

    left = make_image_grid(teacher_images, nrow=per_class, padding=2, pad_value=255)
    right = make_image_grid(student_images, nrow=per_class, padding=2, pad_value=255)
    gap = np.full((left.shape[0], 12, left.shape[2]), 255, np.uint8)
    body = np.concatenate([left, gap, right], axis=1)[..., 0]
    header_height = 14
    canvas = Image.new("L", (body.shape[1], body.shape[0] + header_height), 255)
    canvas.paste(Image.fromarray(body), (0, header_height))
    draw = ImageDraw.Draw(canvas)
    draw.text((2, 1), titles[0], fill=0)
    draw.text((left.shape[1] + gap.shape[1] + 2, 1), titles[1], fill=0)
    canvas.save(path, format="PNG")
    return path


def grid_images(sample_fn: Callable, per_class: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """[10 * per_class] images, class-major (class c in positions c*per_class ...), from fixed grid noise."""
    indices = [c + NUM_CLASSES * k for c in range(NUM_CLASSES) for k in range(per_class)]
    noise = indexed_noise(indices, shape, seed + 7919)
    labels = torch.tensor([i % NUM_CLASSES for i in indices])
    return sample_fn(noise, one_hot(labels)).clamp(-1, 1)
