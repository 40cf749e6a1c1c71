"""torch.compile: compiled vs eager under DDP and FSDP2, and the compile cache on a resumed run.

`dist` (default part 1): tests/test_compile_dist.py's 2-process gloo comparison (toy KD ToyMLP student with EMA,
2 iterations under DDP and under FSDP2, compiled vs eager) with `--backend` (default inductor, which the test
skips for time): per run its wall time, the graphs TorchDynamo compiled, the max |weight difference| to the eager
run (student and EMA), and whether the saved checkpoint keys equal the eager run's.

`cache` (part 2): one process trains the same toy KD student compiled with inductor for 2 iterations and saves a
checkpoint; a new process resumes it to 4 iterations in the same run folder; a third starts a fresh run folder
(empty cache). For each: wall time of the first training step (compile included) and inductor's FX-graph /
AOT-autograd cache hits and misses. The trainer points TORCHINDUCTOR_CACHE_DIR at `<run>/compile_cache/`.

    .venv/bin/python benchmarks/bench_compile.py [--parts dist,cache] [--backend inductor] [--out DIR]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from _args import benchmark_parser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]


def run_dist(out_dir: str, backend: str) -> None:
    import torch
    from test_compile_dist import RUNS, compile_worker
    from test_ddp import make_pairs

    from fastgen.utils.distributed.launch import spawn_local

    pairs = make_pairs(os.path.join(out_dir, "pairs.safetensors"))
    spawn_local(compile_worker, 2, args=(out_dir, pairs, backend))
    print(f"\n## DDP / FSDP2, 2 gloo processes, backend {backend} (rank 0; both ranks checked equal by the test)\n")
    print("| parallel | run | wall s (whole run) | graphs | max abs diff net / ema vs eager | keys == eager |")
    print("|---|---|---|---|---|---|")
    got = torch.load(os.path.join(out_dir, "compile_rank0.pt"), weights_only=False)
    for parallel, compiled in RUNS:
        run = got[f"{parallel}_{'compiled' if compiled else 'eager'}"]
        eager = got[f"{parallel}_eager"]
        diffs = [max((run["weights"][net][k] - eager["weights"][net][k]).abs().max().item()
                     for k in eager["weights"][net]) for net in ("net", "ema")]
        print(f"| {parallel} | {'compiled' if compiled else 'eager'} | {run['seconds']:.1f} | {run['graphs']} | "
              f"{diffs[0]:.2e} / {diffs[1]:.2e} | {run['keys'] == eager['keys']} |")


def cache_child(out_dir: str, name: str, max_iter: int) -> None:
    """One training run (compiled, inductor) that reports its first step's time and the cache counters."""
    from test_ddp import toy_kd_config
    from torch._dynamo.utils import counters

    from fastgen.callbacks.callback import Callback
    from fastgen.configs.config import CompileConfig
    from fastgen.trainer import Trainer
    from fastgen.utils import instantiate

    times = []

    class FirstStep(Callback):
        def on_training_step_begin(self, *args, **kwargs):
            times.append(time.perf_counter())

        def on_training_step_end(self, *args, **kwargs):
            times.append(time.perf_counter())

    os.environ["FASTGEN_OUTPUT_ROOT"] = out_dir
    config = toy_kd_config(out_dir, os.path.join(out_dir, "pairs.safetensors"), 8, max_iter, save_ckpt_iter=2,
                           name=name)
    config.model.compile = CompileConfig(networks=["net"], dynamic=False)
    config.trainer.callbacks["first_step"] = FirstStep()
    Trainer(config).run(instantiate(config.model_class, config=config.model))
    keys = ("fxgraph_cache_hit", "fxgraph_cache_miss", "autograd_cache_hit", "autograd_cache_miss")
    found = {k: counters["inductor"].get(k, 0) + counters["aot_autograd"].get(k, 0) for k in keys}
    print(json.dumps({"first_step_s": times[1] - times[0], "steps": len(times) // 2, "cache_dir": os.environ.get("TORCHINDUCTOR_CACHE_DIR"),
                      **found}))


def run_cache(out_dir: str) -> None:
    from test_ddp import make_pairs

    make_pairs(os.path.join(out_dir, "pairs.safetensors"))
    print("\n## Compile cache: first training step of a fresh run, its resumed run, and a second fresh run\n")
    print("| run | iterations | first step s | FX graph cache hit / miss | AOT autograd cache hit / miss | cache dir |")
    print("|---|---|---|---|---|---|")
    for label, name, max_iter in [("fresh", "cached", 2), ("resumed (same run folder)", "cached", 4),
                                  ("fresh (new run folder)", "other", 2)]:
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        env.pop("TORCHINDUCTOR_CACHE_DIR", None)
        proc = subprocess.run([sys.executable, __file__, "--child", out_dir, name, str(max_iter)], env=env,
                              capture_output=True, text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"| {label} | {max_iter - r['steps']}->{max_iter} | {r['first_step_s']:.1f} | "
              f"{r['fxgraph_cache_hit']} / {r['fxgraph_cache_miss']} | {r['autograd_cache_hit']} / "
              f"{r['autograd_cache_miss']} | {os.path.relpath(r['cache_dir'], out_dir)} |")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        cache_child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = benchmark_parser(__doc__)
    parser.add_argument("--parts", default="dist,cache", help="dist, cache or both (comma-separated)")
    parser.add_argument("--backend", default="inductor", help="torch.compile backend for the dist part")
    parser.add_argument("--out", default=None, help="working folder (default: a new temporary one)")
    args = parser.parse_args()
    out_dir = args.out or tempfile.mkdtemp(prefix="bench_compile_")
    os.makedirs(out_dir, exist_ok=True)
    print(f"bench_compile: out {out_dir}, load average at start {os.getloadavg()[0]:.1f}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    parts = args.parts.split(",")
    if "dist" in parts:
        run_dist(os.path.join(out_dir, "dist"), args.backend)
    if "cache" in parts:
        os.makedirs(os.path.join(out_dir, "cache"), exist_ok=True)
        run_cache(os.path.join(out_dir, "cache"))


if __name__ == "__main__":
    main()
