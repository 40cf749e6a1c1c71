"""Training-step time and peak memory of each speed/memory switch, alone and all together, against eager today.

Methods: SFT, DMD2 (generator and critic steps timed apart), CM and sCT, on the EDM CIFAR-10 net (55.7M params,
`--size cifar`) or a tiny one (`--size tiny`), batch 8, random CIFAR-shaped data. Each (method, variant) runs in
its own subprocess so its peak RSS is its own; it reports the median of `--steps` steps after `--warmup` steps
(a compiled variant compiles during warm-up). Ratios are against the `eager` row of the same method, measured in
the same run.

Variants (model-config switches, fastgen/methods/README.md "Speed and memory switches"):
  eager          today's defaults before the switches: per-tensor optimizer steps (fused=False), all switches off
  fused_optim    fused Adam/AdamW kernel (the new default, fused=None; RAdam has none, so CM/sCT are unchanged)
  channels_last  model.channels_last=True
  act_ckpt       model.activation_checkpointing=True
  bf16_teacher   model.teacher_precision=bfloat16 (methods with a teacher)
  compile        model.compile.networks=<every trained network and the teacher>, whole networks (`--backend`)
  compile_blocks the same networks compiled block by block (model.compile.per_block=True: what FSDP2 runs use)
  all            all of the above together (compile: whole networks)

    .venv/bin/python benchmarks/bench_speed.py [--size cifar|tiny] [--methods sft,dmd2,cm,sct]
        [--variants eager,...,all] [--steps 8] [--warmup 2] [--batch 8] [--threads 2] [--device cpu]
        [--backend inductor]   (aot_eager: a quick check of the compiled paths, no code generation)
        [--profile]            (where a step's time goes instead: see below)

--profile answers "how much faster could this step get?": per (method, variant) the share of the step's CPU time
in each kind of kernel (convolution, matmul, attention, normalisation, optimizer, the rest) from torch.profiler,
the step's floating-point work (torch.utils.flop_counter, forward and backward), and the rate the convolution and
matmul kernels reach against the CPU's fp32 FMA peak (cores x 32 flop/cycle x clock on AVX2: an upper bound). A
step whose time is mostly GEMM-like kernels near that peak cannot get much faster by anything above the kernels.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = {"sft": "config_sft", "dmd2": "config_dmd2", "cm": "config_cm", "sct": "config_scm"}
VARIANTS = ("eager", "fused_optim", "channels_last", "act_ckpt", "bf16_teacher", "compile", "compile_blocks", "all")
SIZES = {  # net overrides; discriminator (all_res, in_channels)
    "cifar": ({}, ([32, 16, 8], 256)),
    "tiny": ({"model_channels": 16, "channel_mult": [1, 2], "num_blocks": 1, "img_resolution": 32},
             ([32, 16], [16, 32])),
}


def switches(variant: str, has_teacher: bool) -> dict:
    """Model-config fields for a variant (eager today: per-tensor optimizer steps, every switch off)."""
    on = {
        "fused_optim": {"fused": None},
        "channels_last": {"channels_last": True},
        "act_ckpt": {"activation_checkpointing": True},
        "bf16_teacher": {"teacher_precision": "bfloat16"} if has_teacher else {},
        "compile": {"compile": "whole"},
        "compile_blocks": {"compile": "blocks"},
    }
    chosen = {"fused": False}
    for name in ([n for n in on if n != "compile_blocks"] if variant == "all" else [variant] if variant != "eager" else []):
        chosen.update(on[name])
    return chosen


def build(method: str, variant: str, size: str, device: str, backend: str = "inductor"):
    import importlib

    import torch

    from fastgen.configs.config import CompileConfig
    from fastgen.utils import instantiate

    config = importlib.import_module(f"fastgen.configs.methods.{METHODS[method]}").create_config()
    m = config.model
    net_overrides, (all_res, in_channels) = SIZES[size]
    for key, value in net_overrides.items():
        setattr(m.net, key, value)
    if method == "dmd2":
        m.discriminator.all_res, m.discriminator.in_channels = all_res, in_channels
        m.discriminator.feature_indices = list(range(len(all_res)))
        m.student_update_freq = 2  # generator and critic steps alternate: both timed
    m.input_shape, m.device = [3, 32, 32], device
    chosen = switches(variant, has_teacher=method == "dmd2")
    for name in ("net_optimizer", "fake_score_optimizer", "discriminator_optimizer"):
        if getattr(m, name, None) is not None:
            getattr(m, name).fused = chosen["fused"]
    for key in ("channels_last", "activation_checkpointing", "teacher_precision"):
        if key in chosen:
            setattr(m, key, chosen[key])
    if chosen.get("compile"):
        nets = ["net", "fake_score", "discriminator", "teacher"] if method == "dmd2" else ["net"]
        m.compile = CompileConfig(networks=nets, dynamic=False, backend=backend, per_block=chosen["compile"] == "blocks")
    torch.manual_seed(0)
    model = instantiate(config.model_class, config=m)
    model.on_train_begin()
    model.init_optimizers()
    return model


def child(args) -> None:
    """One (method, variant): warm-up, then per-step times; prints one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    model = build(args.method, args.variant, args.size, args.device, args.backend)
    g = torch.Generator().manual_seed(0)
    data = {"real": (torch.rand(args.batch, 3, 32, 32, generator=g) * 2 - 1).to(model.device),
            "condition": torch.eye(10)[torch.arange(args.batch) % 10].to(model.device)}
    data["neg_condition"] = torch.zeros_like(data["condition"])
    cuda = model.device.type == "cuda"

    def step(iteration):
        start = time.perf_counter()
        loss_map, _ = model.single_train_step(data, iteration)
        loss_map["total_loss"].backward()
        model.optimizers_schedulers_step(iteration)
        model.optimizers_zero_grad(iteration)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    kinds = ["critic", "generator"] if args.method == "dmd2" else ["step"]  # freq 2: odd = critic, even = G
    iteration = 0
    for _ in range(args.warmup * len(kinds)):
        iteration += 1
        step(iteration)
    if args.profile:  # both DMD2 step kinds alternate inside the profiled steps: one profile of the pair
        print(json.dumps(profile_steps(step, iteration + 1, args.steps * len(kinds), args.threads, len(kinds))))
        return
    times = {kind: [] for kind in kinds}
    for _ in range(args.steps * len(kinds)):
        iteration += 1
        times[kinds[iteration % len(kinds)] if len(kinds) > 1 else "step"].append(step(iteration))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if cuda:
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps({"times": {k: statistics.median(v) for k, v in times.items()}, "peak_mb": peak_mb}))


# profiler op name fragments -> kernel kind (first match wins; self times, so a kernel is counted once)
KINDS = (("convolution", ("convolution", "conv2d", "conv_")), ("matmul", ("addmm", "::mm", "bmm", "linear")),
         ("attention", ("attention", "sdpa")), ("normalisation", ("group_norm", "layer_norm", "batch_norm")),
         ("optimizer", ("adam", "_foreach_", "optimizer")))


def kernel_kind(name: str) -> str:
    return next((kind for kind, parts in KINDS if any(p in name.lower() for p in parts)), "other")


def profile_steps(step, first_iteration: int, steps: int, threads: int, cycle: int = 1) -> dict:
    """Kernel-kind shares of `steps` steps' self CPU time, the flops of one step and the GEMM-like kernels' rate.
    `cycle`: steps of different kinds that alternate (DMD2's critic and generator steps: 2); flops are their mean."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        for i in range(cycle):
            step(first_iteration + i)
    flops = counter.get_total_flops() / cycle
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        seconds = [step(first_iteration + cycle + i) for i in range(steps)]
    shares: dict[str, float] = {}
    for event in prof.key_averages():
        shares[kernel_kind(event.key)] = shares.get(kernel_kind(event.key), 0.0) + event.self_cpu_time_total
    total = sum(shares.values())
    gemm_s = (shares.get("convolution", 0.0) + shares.get("matmul", 0.0)) / 1e6 / steps
    mhz = max((float(line.split(":")[1]) for line in open("/proc/cpuinfo") if line.startswith("cpu MHz")),
              default=float("nan"))
    return {"shares": {k: v / total for k, v in sorted(shares.items(), key=lambda kv: -kv[1])},
            "gflop": flops / 1e9, "step_s": statistics.mean(seconds), "gemm_gflops": flops / 1e9 / gemm_s,
            "peak_gflops": threads * 32 * mhz / 1e3, "torch": torch.__version__}


def run_variant(args, method: str, variant: str) -> dict | None:
    cmd = [sys.executable, os.path.abspath(__file__), "--_child", "--method", method, "--variant", variant,
           "--size", args.size, "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch", str(args.batch),
           "--threads", str(args.threads), "--device", args.device, "--backend", args.backend] \
        + (["--profile"] if args.profile else [])
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": ROOT}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        errors = [line for line in proc.stderr.splitlines() if "Error" in line][-2:]
        print(f"  {method}/{variant} failed: {errors or proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="cifar")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma list of " + ", ".join(METHODS))
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma list of " + ", ".join(VARIANTS))
    parser.add_argument("--steps", type=int, default=8, help="timed steps per variant (each kind for DMD2)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", default="inductor", help="torch.compile backend of the compile variants")
    parser.add_argument("--profile", action="store_true", help="kernel shares and flop rates instead of the table")
    parser.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        child(args)
        return
    methods, variants = args.methods.split(","), args.variants.split(",")
    bad = [m for m in methods if m not in METHODS] + [v for v in variants if v not in VARIANTS]
    if bad:
        parser.error(f"unknown method/variant {bad}; methods: {list(METHODS)}, variants: {list(VARIANTS)}")
    if args.profile:
        print_profiles(args, methods, variants)
        return
    if "eager" not in variants:
        variants = ["eager", *variants]
    print(f"size {args.size}, batch {args.batch}, {args.threads} threads, device {args.device}, compile backend "
          f"{args.backend}, median of "
          f"{args.steps} steps after {args.warmup} warm-up; load average at start {os.getloadavg()[0]:.1f}")
    print("| method | step | variant | step s | x eager | peak MB | x eager |")
    print("|---|---|---|---|---|---|---|")
    for method in methods:
        # bf16_teacher only where there is a teacher (DMD2 here; CM/sCT are consistency *training*)
        results = {v: run_variant(args, method, v) for v in variants if v != "bf16_teacher" or method == "dmd2"}
        base = results["eager"]
        for variant, res in results.items():
            if res is None or base is None:
                continue
            for kind, seconds in res["times"].items():
                print(f"| {method} | {kind} | {variant} | {seconds:.3f} | {seconds / base['times'][kind]:.2f} | "
                      f"{res['peak_mb']:.0f} | {res['peak_mb'] / base['peak_mb']:.2f} |", flush=True)
    print(f"load average at end {os.getloadavg()[0]:.1f}")


def print_profiles(args, methods: list, variants: list) -> None:
    print(f"size {args.size}, batch {args.batch}, {args.threads} threads, profile of {args.steps} steps after "
          f"{args.warmup} warm-up; load average at start {os.getloadavg()[0]:.1f}")
    print("| method | variant | step s | GFLOP/step | conv+matmul GFLOP/s | fp32 FMA peak GFLOP/s | self CPU time by "
          "kernel kind |")
    print("|---|---|---|---|---|---|---|")
    for method in methods:
        for variant in variants:
            res = run_variant(args, method, variant)
            if res is None:
                continue
            shares = ", ".join(f"{k} {v:.0%}" for k, v in res["shares"].items())
            print(f"| {method} | {variant} | {res['step_s']:.3f} | {res['gflop']:.1f} | {res['gemm_gflops']:.0f} | "
                  f"{res['peak_gflops']:.0f} | {shares} |", flush=True)


if __name__ == "__main__":
    main()
