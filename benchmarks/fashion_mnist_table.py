"""Every image method distilled from the shipped Fashion-MNIST teacher at the same CPU budget, scored by FID.

    python benchmarks/fashion_mnist_table.py                                   # all configured methods, 3 seeds, 15 min
    python benchmarks/fashion_mnist_table.py --methods DMD2 sCT --seeds 0 --minutes 2 --num_fid_samples 1000

Per (method, seed): the method's Fashion-MNIST config (fastgen/configs/experiments/FashionMNIST/) trained through the
demo's training stage (= train.py) with `trainer.seed=SEED` and `trainer.max_minutes=MINUTES` (stop after the
iteration that reaches the budget), then the EMA student's FID at 1 and 2 steps on the demo's seeded class-balanced
noise, against the Fashion-MNIST *test*-set statistics of the shipped feature network. Once per table: the teacher
(Heun, --teacher_nfe evaluations) and the floor (as many real *train* images, against the same test statistics).
A progress line per run; at the end the Markdown table (--out) and its numbers as JSON beside it.

Torch threads are pinned (--num_threads, default 2) and recorded with the CPU's kernel ISA: training bits depend on
both (benchmarks/demo_determinism.py), so tables from different machines differ by more than seed noise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time
from datetime import datetime, timezone

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# row name (as in the reference) -> (config file in configs/experiments/FashionMNIST/, extra overrides)
METHODS = {
    "DMD2": ("config_dmd2.py", []),
    "SiD": ("config_sid.py", []),
    "CD": ("config_cm.py", []),
    "sCT": ("config_scm.py", []),
    "sCD": ("config_scm.py", ["model.loss_config.use_cd=true"]),
}
# methods of the list without a Fashion-MNIST config yet: the table lists them with the reason
NOT_CONFIGURED = {
    "KD": "needs a teacher-generated (noise, image) pair set (KD's data) made first",
    "f-distill": "no Fashion-MNIST config yet (needs a discriminator head on the teacher's features)",
    "LADD": "no Fashion-MNIST config yet (needs a discriminator head on the teacher's features)",
    "CM": "consistency training from data: covered by sCT; no discrete-CT Fashion-MNIST config yet",
    "TCM": "no Fashion-MNIST config yet (needs a stage-1 CM checkpoint)",
    "MeanFlow": "no Fashion-MNIST config yet (needs an r-conditioned flow network; the teacher is an EDM x0 net)",
}
# one sampling grid for every student (all are EDM x0 networks with the teacher's sigma range): 1 step from
# sigma 80; 2 steps through the Karras midpoint of [0.002, 80] (sigma ~2.5)
T_LISTS = {1: (80.0, 0.0), 2: (80.0, 2.5, 0.0)}


def build_parser() -> argparse.ArgumentParser:
    from _args import benchmark_parser

    parser = benchmark_parser(__doc__)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), metavar="NAME",
                        help=f"rows to train (default all configured: {' '.join(METHODS)})")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="trainer.seed values (default 0 1 2)")
    parser.add_argument("--minutes", type=float, default=15.0, help="training minutes per run (default 15)")
    parser.add_argument("--max_iters", type=int, default=None,
                        help="also stop after this many iterations (default: only the time budget)")
    parser.add_argument("--num_fid_samples", type=int, default=5000,
                        help="samples per FID, also the floor's real images (default 5000)")
    parser.add_argument("--teacher_nfe", type=int, default=35, help="teacher Heun network evaluations (default 35)")
    parser.add_argument("--fid_batch_size", type=int, default=250)
    parser.add_argument("--batch_size", type=int, default=None, help="training batch (default: each config's)")
    parser.add_argument("--max_data", type=int, default=None, help="use only the first N training images")
    parser.add_argument("--data_root", default=None, help="Fashion-MNIST IDX folder (default: the demo's search)")
    parser.add_argument("--num_threads", type=int, default=2, help="torch CPU threads, pinned (default 2)")
    parser.add_argument("--eval_seed", type=int, default=0, help="seed of the evaluation noise (default 0)")
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "fashion_mnist_table.md"),
                        help="Markdown table to write (JSON beside it); default benchmarks/results/")
    parser.add_argument("--note", default="", help="a line put under the table's title (e.g. 'partial run')")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    from fastgen.cli import UsageError

    args = build_parser().parse_args(argv)
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        raise UsageError(f"--methods: unknown {unknown}; configured: {list(METHODS)} (not configured yet: "
                         f"{list(NOT_CONFIGURED)})")
    if args.minutes <= 0 or args.num_fid_samples < 2 or args.teacher_nfe < 1 or args.num_threads < 1:
        raise UsageError("--minutes must be > 0, --num_fid_samples >= 2, --teacher_nfe >= 1, --num_threads >= 1")
    return args


def spread(values: list[float]) -> dict:
    """{median, min, max, values} of per-seed numbers."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": list(values)}


def train_one(args, method: str, seed: int, data_root: str) -> tuple:
    """(model, config, minutes) of one run of `method` with trainer.seed=seed under the table's budget."""
    from fastgen.demo.pipeline import CONFIG_DIR, data_overrides, run_training_stage

    config_file, extra = METHODS[method]
    max_iter = args.max_iters if args.max_iters is not None else 10**7
    overrides = [f"log_config.name=fashion_mnist_table/{method}_seed{seed}", f"trainer.seed={seed}",
                 f"trainer.max_minutes={args.minutes}", f"trainer.max_iter={max_iter}",
                 f"trainer.save_ckpt_iter={max_iter}", "trainer.logging_iter=100", "trainer.resume=false",
                 *data_overrides(args, data_root), *extra]
    tic = time.perf_counter()
    model, config = run_training_stage(os.path.join(CONFIG_DIR, config_file), overrides, "WARNING")
    return model, config, (time.perf_counter() - tic) / 60.0


def fid_of(sample_fn, args, common) -> float:
    from fastgen.demo.evaluate import timed_fid

    return timed_fid("table", sample_fn, num_samples=args.num_fid_samples, batch_size=args.fid_batch_size,
                     seed=args.eval_seed, **common)["fid"]


def run_table(args) -> dict:
    import torch
    from loguru import logger

    from fastgen.demo.evaluate import real_data_fid, student_sampler, teacher_sampler
    from fastgen.demo.pipeline import IMAGE_SHAPE, ensure_fashion_mnist
    from fastgen.demo.teacher import load_teacher_net
    from fastgen.metrics import load_feature_extractor, load_stats
    from fastgen.metrics.feature_net import reference_stats_path

    torch.set_num_threads(args.num_threads)
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    data_root = ensure_fashion_mnist(args.data_root)
    feature_net = load_feature_extractor("fmnist")
    common = dict(feature_net=feature_net, ref_stats=load_stats(str(reference_stats_path("test"))),
                  shape=IMAGE_SHAPE)
    started = time.perf_counter()
    teacher_fid = fid_of(teacher_sampler(load_teacher_net(), args.teacher_nfe), args, common)
    floor = real_data_fid(feature_net, common["ref_stats"], args.num_fid_samples, root=data_root, split="train")
    print(f"[table] teacher ({args.teacher_nfe} NFE) FID {teacher_fid:.2f} | floor ({args.num_fid_samples} real "
          f"train images) FID {floor:.2f}", flush=True)

    runs, total = [], len(args.methods) * len(args.seeds)
    for method in args.methods:
        for seed in args.seeds:
            model, config, minutes = train_one(args, method, seed, data_root)
            net = model.net_inference
            fids = {steps: fid_of(student_sampler(net, steps=steps, seed=args.eval_seed, t_list=T_LISTS[steps]),
                                  args, common) for steps in (1, 2)}
            runs.append({"method": method, "seed": seed, "iterations": int(model_iterations(config)),
                         "minutes": minutes, "fid_1step": fids[1], "fid_2step": fids[2]})
            done = len(runs)
            eta = (time.perf_counter() - started) / done * (total - done) / 60.0
            print(f"[table] run {done}/{total}: {method} seed {seed}: {runs[-1]['iterations']} iterations in "
                  f"{minutes:.1f} min | FID 1 step {fids[1]:.2f}, 2 steps {fids[2]:.2f} | ETA {eta:.0f} min",
                  flush=True)
    rows = {}
    for method in args.methods:
        mine = [r for r in runs if r["method"] == method]
        rows[method] = {"fid_1step": spread([r["fid_1step"] for r in mine]),
                        "fid_2step": spread([r["fid_2step"] for r in mine]),
                        "minutes": spread([r["minutes"] for r in mine]),
                        "iterations": spread([r["iterations"] for r in mine]), "seeds": [r["seed"] for r in mine]}
    return {"teacher": {"fid": teacher_fid, "nfe": args.teacher_nfe}, "floor": floor, "rows": rows, "runs": runs,
            "not_configured": {m: why for m, why in NOT_CONFIGURED.items()},
            "settings": {"minutes": args.minutes, "max_iters": args.max_iters, "num_fid_samples": args.num_fid_samples,
                         "seeds": args.seeds, "eval_seed": args.eval_seed, "t_lists": {str(k): v for k, v in
                                                                                         T_LISTS.items()}},
            "machine": machine_info(), "command": "python benchmarks/fashion_mnist_table.py " + shlex.join(sys.argv[1:]),
            "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def model_iterations(config) -> int:
    """Iterations the run trained: the last checkpoint's number (the time budget may end it before max_iter)."""
    from fastgen.utils.checkpointer import Checkpointer

    found = Checkpointer(config.trainer.checkpointer.save_dir).list_checkpoints()
    return found[-1][0] if found else 0


def machine_info() -> dict:
    import torch

    from fastgen.demo.pipeline import cpu_model

    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    return {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "platform": platform.platform(),
            "processor": cpu_model(), "torch": torch.__version__, "load_average_end": load}


def render(result: dict, note: str = "") -> str:
    """The Markdown table: `teacher`, then one row per method (first number = 1-step FID median), then the floor."""
    s, m = result["settings"], result["machine"]
    lines = ["# Fashion-MNIST: every method distilled from the shipped teacher at equal CPU time", ""]
    if note:
        lines += [f"**{note}**", ""]
    lines += [f"FID ({s['num_fid_samples']} samples, shipped `fmnist-lenet` features, against the test-set "
              f"statistics); {s['minutes']:g} training minutes per run"
              + (f" or {s['max_iters']} iterations" if s["max_iters"] else "") + f"; seeds {s['seeds']}; "
              f"median [min, max] over seeds.", "",
              "| method | FID 1 step (median) | FID 2 steps (median) | 1-step range | 2-step range | iterations "
              "| train minutes |", "|---|---|---|---|---|---|---|",
              f"| teacher | {result['teacher']['fid']:.2f} ({result['teacher']['nfe']} NFE Heun) | - | - | - | - | - |"]
    for name, row in result["rows"].items():
        one, two = row["fid_1step"], row["fid_2step"]
        lines.append(f"| {name} | {one['median']:.2f} | {two['median']:.2f} | [{one['min']:.2f}, {one['max']:.2f}] "
                     f"| [{two['min']:.2f}, {two['max']:.2f}] | {row['iterations']['median']:.0f} "
                     f"| {row['minutes']['median']:.1f} |")
    lines.append(f"| floor (real train images) | {result['floor']:.2f} | - | - | - | - | - |")
    lines += ["", "Not run here: " + "; ".join(f"{k}: {v}" for k, v in result["not_configured"].items()) + ".", "",
              f"Machine: {m['processor']}, {m['cpu_count']} CPUs, {m['torch_threads']} torch threads, kernels "
              f"{m['cpu_capability']}, torch {m['torch']}; load average at the end {m['load_average_end']:.1f}. "
              f"Finished {result['finished_utc']}.", "", f"Command: `{result['command']}`", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    result = run_table(args)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as file:
        file.write(render(result, args.note))
    json_path = os.path.splitext(args.out)[0] + ".json"
    with open(json_path, "w") as file:
        json.dump(result, file, indent=2)
        file.write("\n")
    print(f"[table] wrote {args.out} and {json_path}", flush=True)
    return 0


if __name__ == "__main__":
    from fastgen.cli import run_cli

    sys.exit(run_cli(main))
