"""Throughput of 2-process DDP (gloo, CPU) versus one process at the same per-rank batch: the scaling ratio.

    .venv/bin/python benchmarks/bench_ddp.py [--steps 30] [--batch 256] [--hidden 512]

Both runs train the same FastGenModel (toy 1-step KD with a ToyMLP student, AdamW) through the same code path the
trainer uses: the DDP run wraps it with `wrap_model_ddp` and calls `model_ddp(data, iteration)`, the single-process
run calls the model. Each process uses one intra-op thread, so 2 ranks use 2 cores. Ideal ratio: 2.0 (perfect
scaling); the gap is the gradient all-reduce plus whatever else is running on the machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _build(hidden: int):
    import torch

    from fastgen.configs.experiments.Toy.config_kd import create_config
    from fastgen.utils import instantiate

    config = create_config()
    config.model.net.hidden_dim = hidden
    config.model.net.num_layers = 4
    config.model.device = "cpu"
    torch.manual_seed(0)
    model = instantiate(config.model_class, config=config.model)
    model.on_train_begin()
    return model


def _worker(rank: int, steps: int, batch: int, hidden: int, use_ddp: bool, out_file: str) -> None:
    import torch
    import torch.distributed as dist

    from fastgen.utils.distributed.ddp import wrap_model_ddp

    torch.set_num_threads(1)
    model = _build(hidden)
    call = wrap_model_ddp(model, find_unused_parameters=True) if use_ddp else model
    model.init_optimizers()
    generator = torch.Generator().manual_seed(rank)
    data = {"noise": torch.randn(batch, 2, generator=generator), "real": torch.randn(batch, 2, generator=generator)}

    def step(iteration: int) -> None:
        loss_map, _ = call(data, iteration)
        loss_map["total_loss"].backward()
        model.optimizers_schedulers_step(iteration)
        model.optimizers_zero_grad(iteration)

    for it in range(3):  # warm-up (allocator, DDP buckets)
        step(it)
    if dist.is_initialized():
        dist.barrier()
    start = time.perf_counter()
    for it in range(steps):
        step(it)
    if dist.is_initialized():
        dist.barrier()
    elapsed = time.perf_counter() - start
    if rank == 0:
        world = dist.get_world_size() if dist.is_initialized() else 1
        Path(out_file).write_text(f"{steps * batch * world / elapsed}")


def measure(world: int, steps: int, batch: int, hidden: int) -> float:
    """Samples per second over all ranks."""
    from fastgen.utils.distributed.launch import spawn_local

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rate.txt")
        spawn_local(_worker, world, args=(steps, batch, hidden, world > 1, out))
        return float(Path(out).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=256, help="per-rank batch")
    parser.add_argument("--hidden", type=int, default=512, help="ToyMLP width (4 layers)")
    args = parser.parse_args()
    single = measure(1, args.steps, args.batch, args.hidden)
    double = measure(2, args.steps, args.batch, args.hidden)
    print(f"1 process: {single:.0f} samples/s  2-process DDP: {double:.0f} samples/s  "
          f"ratio: {double / single:.2f} (ideal 2.0, per-rank batch {args.batch}, {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
