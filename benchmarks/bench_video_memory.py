"""Activation checkpointing of a Wan video transformer's blocks: peak memory and step time of one forward+backward
with checkpointing over without, next to the wrapper's overhead over bare diffusers, on a mid-size Wan that fits a
CPU (random weights from component configs: 6 blocks, inner dim 384, latents [B, 16, 3, 32, 32] = 768 tokens per
video; the same network as `bench_hf_wrapper.py --families wan --sizes mid`). Nothing is downloaded.

    python benchmarks/bench_video_memory.py [--repeats 5] [--batch 1] [--threads 1] [--device cpu]

What is measured (all in one run, variants interleaved so load changes hit them alike):
  * memory: the peak of the bytes the torch CPU allocator holds during forward+backward above what it held before
    (weights and inputs excluded; activations, gradients and, with checkpointing, one block's recomputation
    included), from torch.profiler's allocation records (as bench_lora.py); on CUDA, max_memory_allocated over
    the memory allocated before the step. The allocation sequence is deterministic, so each variant is profiled once.
  * time: forward+backward, median over --repeats of the per-repeat ratio (checkpointed / plain), ABBA order;
    on CPU the process CPU time (the shared machine's load stretches wall time far more than the work), on CUDA
    wall time.
  * wrapper: HFNetwork over the bare diffusers WanTransformer3DModel on pre-packed inputs (bench_hf_wrapper.measure),
    median time ratio over --repeats.
Targets: memory <= 0.6, time <= 1.4, wrapper <= 1.03. The load average is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per variant (medians are printed)")
    parser.add_argument("--batch", type=int, default=1, help="videos per step")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip_wrapper", action="store_true", help="only the checkpointing ratios")
    return parser.parse_args(argv)


def step(net, x, t, cond) -> None:
    """One training-like pass: output and a tapped block's features (what the discriminators read), backward."""
    net.zero_grad(set_to_none=True)
    out, (feat,) = net(x, t, cond, feature_indices={3})
    (out.square().mean() + feat.square().mean()).backward()


def peak_bytes(fn, device: str) -> int:
    """Peak allocator bytes above the level before fn() (see the module docstring)."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    from bench_lora import tensor_peak_mib

    return int(tensor_peak_mib(fn) * 2**20)


def step_clock(device: str):
    """CPU: the process's CPU time (a loaded shared machine stretches wall time far more than the work; torch runs
    one thread here and CPU autograd runs in the calling thread); CUDA: wall time."""
    return time.perf_counter if device.startswith("cuda") else time.process_time


def timed(fn, device: str) -> float:
    import torch

    clock = step_clock(device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = clock()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return clock() - start


def main(argv=None) -> None:
    args = parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import torch
    from bench_hf_wrapper import bench_inputs, build_net, measure

    torch.set_num_threads(args.threads)
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}; torch threads {args.threads}; "
          f"device {args.device}", flush=True)
    nets = {"plain": build_net("wan", "mid", args.device), "ckpt": build_net("wan", "mid", args.device)}
    wrapped = nets["ckpt"].enable_activation_checkpointing()
    x, t, cond = bench_inputs(nets["plain"], "wan", "mid", args.device, args.batch)
    tokens = x.shape[0] * x.shape[2] * x.shape[3] * x.shape[4] // 4
    params = sum(p.numel() for p in nets["plain"].parameters()) / 1e6
    print(f"Wan mid: {params:.2f}M parameters, {len(nets['plain'].denoiser.blocks)} blocks ({wrapped} checkpointed), "
          f"latents {list(x.shape)} = {tokens} tokens", flush=True)

    runs = {name: (lambda net=net: step(net, x, t, cond)) for name, net in nets.items()}
    for fn in runs.values():  # warm-up: first-call kernel set-up stays out of the numbers
        fn()
    peaks = {name: peak_bytes(fn, args.device) for name, fn in runs.items()}
    times = {name: [] for name in runs}
    for i in range(args.repeats):  # ABBA order
        for name in (list(runs) if i % 2 == 0 else list(runs)[::-1]):
            times[name].append(timed(runs[name], args.device))
    time_ratio = statistics.median(c / p for c, p in zip(times["ckpt"], times["plain"]))

    clock = "wall" if args.device.startswith("cuda") else "process CPU"
    print(f"{'variant':<8} {'peak MiB':>9} {'step s (median, ' + clock + ')':>28}")
    for name in runs:
        print(f"{name:<8} {peaks[name] / 2**20:>9.1f} {statistics.median(times[name]):>28.3f}")
    print(f"activation checkpointing / plain: memory {peaks['ckpt'] / peaks['plain']:.3f} (target <= 0.6), "
          f"time {time_ratio:.3f} (target <= 1.4; median of {args.repeats})", flush=True)
    if not args.skip_wrapper:
        del nets, runs
        row = measure("wan", "mid", args.repeats, 1, args.device, args.batch, clock=step_clock(args.device))
        print(f"HFNetwork / bare diffusers (same Wan, forward+backward): time {row['time']:.3f} (target <= 1.03; "
              f"median of {args.repeats}), saved-activation memory {row['saved_mem']:.3f}")
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
