"""LoRA DMD2 peak memory over full DMD2 on a diffusers SD1.5 UNet (random weights, nothing downloaded).

Full DMD2 holds the student, a frozen teacher and a trained fake score, each a full copy, plus gradients and Adam
states of the two trained ones; LoRA DMD2 (model.lora) holds one frozen base shared by all three, with a student
adapter and a fake-score adapter. Each measurement runs in a fresh process: imports and the batch first, then the
peak-RSS counter is reset (Linux /proc/self/clear_refs) and the model is built and trained for a few iterations
(critic and generator steps alternate, so every optimizer holds its state); peak RSS minus the RSS before the
build is the method's memory. A warm-up build + 2 iterations before the reset keeps lazy imports and torch's
one-time set-up out of the peak (its memory is returned to the OS with malloc_trim first). RSS also counts the
allocator's fragmentation; the primary number is exact: a second, profiled run (torch.profiler, profile_memory)
gives the peak of the bytes the torch CPU allocator holds (parameters, gradients, optimizer states, activations). The two variants alternate; medians of --repeats runs are compared. Target: <= 0.6.

    .venv/bin/python benchmarks/bench_lora.py [--size tiny|mid] [--repeats 5] [--steps 4] [--rank 8]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# UNet overrides per size (the rest of fastgen/networks/hf/tiny.py's SD1.5 config stays), latent side
SIZES = {
    "tiny": ({}, 8),
    "mid": ({"block_out_channels": [64, 128], "cross_attention_dim": 64, "attention_head_dim": 8,
             "norm_num_groups": 32, "sample_size": 32}, 32),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny", help="UNet size (default tiny)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per variant (default 5)")
    parser.add_argument("--steps", type=int, default=4, help="training iterations per run (default 4)")
    parser.add_argument("--batch", type=int, default=2, help="batch size (default 2)")
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank (default 8)")
    parser.add_argument("--child", choices=("full", "lora"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def rss_kib(field: str) -> int:
    with open("/proc/self/status") as file:
        for line in file:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def child(args: argparse.Namespace) -> None:
    """One measurement in this process; prints {"peak_mib": ..., "params": ...} as JSON."""
    sys.path.insert(0, ROOT)
    import torch

    from fastgen.configs.config import LoRAConfig
    from fastgen.configs.methods import config_dmd2
    from fastgen.configs.net import SD15Config
    from fastgen.methods import DMD2Model
    from fastgen.networks.hf.tiny import tiny_components

    torch.set_num_threads(1)
    unet, side = SIZES[args.size]
    config = config_dmd2.create_config()
    m = config.model
    m.net = SD15Config
    components = tiny_components("sd15")
    components["unet"].update(unet)
    m.net.load_pretrained, m.net.component_configs = False, components
    m.device, m.enable_preprocessors, m.discriminator, m.gan_loss_weight_gen = "cpu", False, None, 0.0
    m.input_shape, m.student_update_freq = [4, side, side], 2
    m.sample_t_cfg.time_dist_type, m.sample_t_cfg.min_t, m.sample_t_cfg.max_t = "uniform", 0.02, 0.98
    if args.child == "lora":
        m.lora = LoRAConfig(rank=args.rank)
    dim = components["unet"]["cross_attention_dim"]
    gen = torch.Generator().manual_seed(0)
    data = {"real": torch.randn(args.batch, 4, side, side, generator=gen),
            "condition": {"prompt_embeds": torch.randn(args.batch, 16, dim, generator=gen)},
            "neg_condition": {"prompt_embeds": torch.randn(args.batch, 16, dim, generator=gen)}}
    def run(steps: int) -> int:
        torch.manual_seed(0)
        model = DMD2Model(m)
        model.on_train_begin()
        model.init_optimizers()
        for it in range(1, steps + 1):
            model.optimizers_zero_grad(it)
            model.single_train_step(data, it)[0]["total_loss"].backward()
            model.optimizers_schedulers_step(it)
        return sum(p.numel() for opt in model.optimizers.values() for g in opt.param_groups for p in g["params"])

    # warm-up: the lazy imports of diffusers / peft and torch's first-kernel set-up happen here, not in the peak;
    # then the freed memory goes back to the OS so the measured run cannot reuse it unseen
    run(2)
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as file:
        file.write("5")  # reset the peak RSS (VmHWM) to the current RSS
    before = rss_kib("VmRSS")
    trained = run(args.steps)
    rss_peak = (rss_kib("VmHWM") - before) / 1024
    gc.collect()
    print(json.dumps({"peak_mib": tensor_peak_mib(lambda: run(args.steps)), "rss_peak_mib": rss_peak,
                      "trained_params": trained}))


def tensor_peak_mib(fn) -> float:
    """Peak of the bytes held by the torch CPU allocator while fn() runs (model built inside): the profiler's
    allocation / free records in time order, each counted once at the innermost op that made it."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    records = sorted((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events() if e.self_cpu_memory_usage)
    held = peak = 0
    for _, nbytes in records:
        held += nbytes
        peak = max(peak, held)
    return peak / 2**20


def measure(args: argparse.Namespace, variant: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), f"--child={variant}", f"--size={args.size}",
           f"--steps={args.steps}", f"--batch={args.batch}", f"--rank={args.rank}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{variant} run failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        child(args)
        return
    runs = {"full": [], "lora": []}
    for _ in range(args.repeats):
        for variant in ("full", "lora"):
            runs[variant].append(measure(args, variant))
    print(f"DMD2 on an SD1.5 UNet ({args.size}, batch {args.batch}, {args.steps} iterations, LoRA rank {args.rank}), "
          f"median of {args.repeats} fresh processes:")
    for key, what in (("peak_mib", "peak torch CPU allocation (profiler)"), ("rss_peak_mib", "peak RSS growth")):
        peak = {v: statistics.median(r[key] for r in runs[v]) for v in runs}
        print(f"  {what}:")
        for v in ("full", "lora"):
            spread = ", ".join(f"{r[key]:.1f}" for r in runs[v])
            print(f"    {v:4s}: {peak[v]:8.1f} MiB  trained parameters {runs[v][0]['trained_params']:>10,}  "
                  f"(runs: {spread})")
        print(f"    LoRA / full: {peak['lora'] / peak['full']:.3f} (target <= 0.6)")


if __name__ == "__main__":
    main()
