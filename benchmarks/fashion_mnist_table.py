"""Every image method distilled from the shipped Fashion-MNIST teacher at the same CPU budget, scored by FID.

    python benchmarks/fashion_mnist_table.py                                   # all configured methods, 3 seeds, 15 min
    python benchmarks/fashion_mnist_table.py --methods DMD2 sCT --seeds 0 --minutes 2 --num_fid_samples 1000

Per (method, seed): the method's Fashion-MNIST config (fastgen/configs/experiments/FashionMNIST/) trained through the
demo's training stage (= train.py) with `trainer.seed=SEED`, `dataloader_train.seed=SEED` (the data order) and
`trainer.max_minutes=MINUTES` (`--clock`: wall or CPU time; stop after the iteration that reaches the budget), then
the EMA student's FID at 1 and 2 steps on the demo's seeded class-balanced noise, against the Fashion-MNIST
*test*-set statistics of the shipped feature network. Once per table: the teacher (Heun, --teacher_nfe
evaluations; cached under $FASTGEN_OUTPUT_ROOT keyed by everything its bits depend on, so tables of one seed each
run side by side sample it once), the floor (as many real *train* images, against the same test statistics) and the
start (the teacher's weights sampled as a 1- and 2-step student: where every run initialised from the teacher begins).
A progress line per run; at the end the Markdown table (--out) and its numbers as JSON beside it.

Rows with more than a config: KD trains on --kd_pairs (noise, teacher image) pairs, sampled once per table from the
teacher with the same Heun sampler and NFE as the teacher row (cached under $FASTGEN_OUTPUT_ROOT, reused by every
seed and later tables; the generation minutes are reported apart from KD's training minutes). TCM (stage 2) starts
from the checkpoint of this table's CM run (consistency training) of the same seed when there is one, else from the
teacher; its minutes are its own (the CM run's are in the CM row). MeanFlow samples with its own sampler
(x <- x - (t - r) u(x, t, r)) on the same time grid.

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
from dataclasses import dataclass
from datetime import datetime, timezone

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))



@dataclass(frozen=True)
class Method:
    """One table row: its Fashion-MNIST config, extra overrides, what it trains on, how it samples and, for a
    second stage, the rows whose same-seed checkpoint it starts from."""

    config: str  # file in fastgen/configs/experiments/FashionMNIST/
    overrides: tuple[str, ...] = ()
    data: str = "images"  # "images": Fashion-MNIST training images; "kd_pairs": the teacher's (noise, image) pairs
    sampler: str = "x0"  # "x0": the shared x0 student sampler; "method": the method's own generator_fn (MeanFlow)
    stage1: tuple[str, ...] = ()  # first of these rows with a run of the same seed in this table: its checkpoint


# row name (as in the reference) -> Method, in the reference's order (a stage-1 row comes before its stage 2)
METHODS = {
    "KD": Method("config_kd.py", data="kd_pairs"),
    "DMD2": Method("config_dmd2.py"),
    "DMD2+GAN": Method("config_dmd2_gan.py"),  # DMD2 paper's GAN on real images (the reference's DMD2 has a GAN)
    "f-distill": Method("config_f_distill.py"),
    "LADD": Method("config_ladd.py"),
    "SiD": Method("config_sid.py"),
    "CM": Method("config_cm.py", ("model.loss_config.use_cd=false",)),
    "CD": Method("config_cm.py"),
    "sCT": Method("config_scm.py"),
    "sCD": Method("config_scm.py", ("model.loss_config.use_cd=true",)),
    "TCM": Method("config_tcm.py", stage1=("CM",)),
    "MeanFlow": Method("config_mean_flow.py", sampler="method"),
}
# image methods of the list without a Fashion-MNIST config: the table lists them with the reason (none now)
NOT_CONFIGURED: dict[str, str] = {}
DEFAULT_KD_PAIRS = 10000
# one sampling grid for every student (all are EDM networks with the teacher's sigma range; MeanFlow steps along it
# with its average velocity): 1 step from sigma 80; 2 steps through the Karras midpoint of [0.002, 80] (sigma ~2.5)
T_LISTS = {1: (80.0, 0.0), 2: (80.0, 2.5, 0.0)}
CLOCK_WORDS = {"wall": "wall clock", "cpu": "CPU time of the run's process over its torch threads"}


def build_parser() -> argparse.ArgumentParser:
    from _args import benchmark_parser

    parser = benchmark_parser(__doc__)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), metavar="NAME",
                        help=f"rows to train (default all configured: {' '.join(METHODS)})")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="run seeds: trainer.seed and dataloader_train.seed (default 0 1 2)")
    parser.add_argument("--minutes", type=float, default=15.0, help="training minutes per run (default 15)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="how --minutes is counted (trainer.max_minutes_clock): 'wall' (default) or 'cpu' (the "
                             "process's CPU time over --num_threads: equal compute per run on a busy machine)")
    parser.add_argument("--max_iters", type=int, default=None,
                        help="also stop after this many iterations (default: only the time budget)")
    parser.add_argument("--num_fid_samples", type=int, default=5000,
                        help="samples per FID, also the floor's real images (default 5000)")
    parser.add_argument("--teacher_nfe", type=int, default=35,
                        help="teacher Heun network evaluations, for its FID and for KD's pairs (default 35)")
    parser.add_argument("--kd_pairs", type=int, default=DEFAULT_KD_PAIRS,
                        help=f"teacher (noise, image) pairs KD trains on, made once (default {DEFAULT_KD_PAIRS})")
    parser.add_argument("--fid_batch_size", type=int, default=250)
    parser.add_argument("--batch_size", type=int, default=None, help="training batch (default: each config's)")
    parser.add_argument("--max_data", type=int, default=None,
                        help="use only the first N training images (image rows; KD's data is --kd_pairs)")
    parser.add_argument("--data_root", default=None, help="Fashion-MNIST IDX folder (default: the demo's search)")
    parser.add_argument("--num_threads", type=int, default=2, help="torch CPU threads, pinned (default 2)")
    parser.add_argument("--eval_seed", type=int, default=0, help="seed of the evaluation noise (default 0)")
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "fashion_mnist_table.md"),
                        help="Markdown table to write (JSON beside it); default benchmarks/results/")
    parser.add_argument("--combine", nargs="+", metavar="JSON", default=None,
                        help="train nothing: merge the .json of earlier tables (same FID settings and machine; a row's "
                             "seeds under one budget; "
                             "e.g. one seed per process run side by side) into --out")
    parser.add_argument("--note", default="", help="a line put under the table's title (e.g. 'partial run')")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    from fastgen.cli import UsageError

    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the table records the command that made it
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        raise UsageError(f"--methods: unknown {unknown}; configured: {list(METHODS)} (not configured yet: "
                         f"{list(NOT_CONFIGURED)})")
    if args.minutes <= 0 or args.num_fid_samples < 2 or args.teacher_nfe < 1 or args.num_threads < 1 \
            or args.kd_pairs < 1:
        raise UsageError("--minutes must be > 0, --num_fid_samples >= 2, --teacher_nfe >= 1, --num_threads >= 1, "
                         "--kd_pairs >= 1")
    args.methods = [m for m in METHODS if m in args.methods]  # table order: a stage-1 row runs before its stage 2
    return args


def spread(values: list[float]) -> dict:
    """{median, min, max, values} of per-seed numbers."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": list(values)}


def method_overrides(args, method: str, data_root: str, kd_pairs_path: str | None, init_ckpt: str | None) -> list:
    """The run's data (images or KD pairs), stage-1 checkpoint (if any) and the row's own overrides."""
    from fastgen.demo.pipeline import data_overrides

    spec = METHODS[method]
    if spec.data == "kd_pairs":
        data = [f"dataloader_train.path={kd_pairs_path}"]
        if args.batch_size is not None:
            data.append(f"dataloader_train.batch_size={args.batch_size}")
    else:
        data = data_overrides(args, data_root)
    init = [f"trainer.checkpointer.pretrained_ckpt_path={init_ckpt}"] if init_ckpt else []
    return [*data, *init, *spec.overrides]


def train_one(args, method: str, seed: int, extra: list) -> tuple:
    """(model, config, wall minutes, CPU minutes over the thread count) of one run of `method` with trainer.seed=seed
    under the table's budget."""
    from fastgen.demo.pipeline import CONFIG_DIR, run_training_stage

    max_iter = args.max_iters if args.max_iters is not None else 10**7
    # a table seed is the whole run's randomness: the trainer's streams and the data order (the loaders keep their own
    # shuffle seed, so trainer.seed alone would give KD, whose only randomness is the order, identical runs)
    overrides = [f"log_config.name=fashion_mnist_table/{method}_seed{seed}", f"trainer.seed={seed}",
                 f"dataloader_train.seed={seed}",
                 f"trainer.max_minutes={args.minutes}", f"trainer.max_minutes_clock={args.clock}",
                 f"trainer.max_iter={max_iter}",
                 f"trainer.save_ckpt_iter={max_iter}", "trainer.logging_iter=100", "trainer.resume=false", *extra]
    tic, cpu_tic = time.perf_counter(), time.process_time()
    model, config = run_training_stage(os.path.join(CONFIG_DIR, METHODS[method].config), overrides, "WARNING")
    return (model, config, (time.perf_counter() - tic) / 60.0,
            (time.process_time() - cpu_tic) / 60.0 / args.num_threads)


def make_kd_pairs(args) -> dict:
    """KD's pair file for this table (the teacher's sampler at --teacher_nfe on seeded noise), made unless cached."""
    from fastgen.configs.experiments.FashionMNIST._kd_pairs import NOISE_SEED, default_pairs_path, generate_pairs

    path = default_pairs_path(args.kd_pairs, args.teacher_nfe, NOISE_SEED)
    info = {"path": path, "count": args.kd_pairs, "nfe": args.teacher_nfe, "noise_seed": NOISE_SEED}
    if os.path.exists(path):
        print(f"[table] KD pairs: reusing {path} ({args.kd_pairs} pairs, {args.teacher_nfe} NFE)", flush=True)
        return {**info, "minutes": None, "reused": True}
    tic = time.perf_counter()
    generate_pairs(path, args.kd_pairs, args.teacher_nfe, NOISE_SEED)
    minutes = (time.perf_counter() - tic) / 60.0
    print(f"[table] KD pairs: {args.kd_pairs} teacher samples ({args.teacher_nfe} NFE Heun) in {minutes:.1f} min "
          f"-> {path}", flush=True)
    return {**info, "minutes": minutes, "reused": False}


def teacher_fid_cache_path(args, feature_net_sha256: str) -> str:
    """$FASTGEN_OUTPUT_ROOT/fastgen/fashion_mnist/table_teacher_fid/<key>.json: the key holds everything the teacher's
    FID bits depend on - the teacher's, feature network's and test statistics' sha256, the NFE, the sample count,
    the evaluation seed, the FID batch, the torch thread count and the CPU's kernel ISA - so a cached number is
    exactly what this run would compute (--combine compares teachers for equality)."""
    import hashlib

    import torch

    from fastgen.configs.experiments.FashionMNIST._common import shipped_teacher_path
    from fastgen.metrics import sha256_of_file
    from fastgen.metrics.feature_net import reference_stats_path
    from fastgen.utils.env import output_root

    files = (shipped_teacher_path(), str(reference_stats_path("test")))
    parts = [sha256_of_file(path)[:12] for path in files] + [feature_net_sha256[:12],
        args.teacher_nfe, args.num_fid_samples, args.eval_seed, args.fid_batch_size, args.num_threads,
        torch.backends.cpu.get_cpu_capability(), torch.__version__]
    key = hashlib.sha256(repr(parts).encode()).hexdigest()[:16]
    return os.path.join(output_root(), "fastgen", "fashion_mnist", "table_teacher_fid",
                        f"nfe{args.teacher_nfe}_n{args.num_fid_samples}_{key}.json")


def cached_teacher_fid(args, feature_net_sha256: str, compute) -> float:
    """The teacher's FID from the cache when this exact setup computed it before, else `compute()` (and cached):
    one table per seed, run side by side, then pays for the teacher's 35-NFE samples once."""
    from fastgen.cli import UsageError

    path = teacher_fid_cache_path(args, feature_net_sha256)
    if os.path.exists(path):
        try:
            with open(path) as file:
                fid = float(json.load(file)["fid"])
        except (ValueError, KeyError, TypeError) as error:
            raise UsageError(f"teacher FID cache {path} is unreadable ({error!r}); delete it and the table samples "
                             "the teacher again") from error
        print(f"[table] teacher FID: reusing {path}", flush=True)
        return fid
    fid = compute()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp_path = f"{path}.tmp{os.getpid()}"
    with open(tmp_path, "w") as file:
        json.dump({"fid": fid}, file)
    os.replace(tmp_path, path)
    return fid


def stage1_checkpoint(method: str, seed: int, checkpoints: dict) -> tuple[str | None, str]:
    """(checkpoint path or None, what the run starts from) for `method`: its first stage-1 row run at this seed."""
    for source in METHODS[method].stage1:
        if (source, seed) in checkpoints:
            iteration, path = checkpoints[(source, seed)]
            return path, f"{source} seed {seed} checkpoint (iteration {iteration})"
    return None, "teacher"


def sampler_for(method: str, model, steps: int, seed: int):
    """(noise, condition) -> images of the trained EMA student at `steps` steps on the table's time grid."""
    from fastgen.demo.evaluate import student_sampler

    net = model.net_inference
    if METHODS[method].sampler == "x0":
        return student_sampler(net, steps=steps, seed=seed, t_list=T_LISTS[steps])
    import torch

    device = next(net.parameters()).device

    @torch.no_grad()
    def sample(noise, condition):
        return model.generator_fn(net, noise.to(device), condition.to(device), student_sample_steps=steps,
                                  t_list=T_LISTS[steps]).cpu()

    return sample


def fid_of(sample_fn, args, common) -> float:
    from fastgen.demo.evaluate import timed_fid

    return timed_fid("table", sample_fn, num_samples=args.num_fid_samples, batch_size=args.fid_batch_size,
                     seed=args.eval_seed, **common)["fid"]


def run_table(args, on_run=None) -> dict:
    """Train and score every (method, seed); `on_run(result)` after each run but the last gets the table so far."""
    import torch
    from loguru import logger

    from fastgen.demo.evaluate import real_data_fid, teacher_sampler
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
    teacher_fid = cached_teacher_fid(
        args, feature_net.weights_sha256, lambda: fid_of(teacher_sampler(load_teacher_net(), args.teacher_nfe), args, common))
    floor = real_data_fid(feature_net, common["ref_stats"], args.num_fid_samples, root=data_root, split="train")
    print(f"[table] teacher ({args.teacher_nfe} NFE) FID {teacher_fid:.2f} | floor ({args.num_fid_samples} real "
          f"train images) FID {floor:.2f}", flush=True)
    start = start_fids(args, common, load_teacher_net())
    print(f"[table] start (the teacher's weights as a 1-/2-step student) FID {start['fid_1step']:.2f} / "
          f"{start['fid_2step']:.2f}", flush=True)

    kd_pairs = make_kd_pairs(args) if any(METHODS[m].data == "kd_pairs" for m in args.methods) else None
    runs, total, checkpoints = [], len(args.methods) * len(args.seeds), {}
    runs_started = time.perf_counter()
    for method in args.methods:
        for seed in args.seeds:
            init_ckpt, init = stage1_checkpoint(method, seed, checkpoints)
            extra = method_overrides(args, method, data_root, kd_pairs and kd_pairs["path"], init_ckpt)
            run_started = time.time()
            model, config, minutes, cpu_minutes = train_one(args, method, seed, extra)
            last = last_checkpoint(config, since=run_started)
            if last is not None:
                checkpoints[(method, seed)] = last
            fids = {steps: fid_of(sampler_for(method, model, steps, args.eval_seed), args, common) for steps in (1, 2)}
            runs.append({"method": method, "seed": seed, "iterations": last[0] if last else 0, "minutes": minutes,
                         "cpu_minutes": cpu_minutes, "fid_1step": fids[1], "fid_2step": fids[2], "init": init,
                         "budget": budget_of(vars(args))})
            done = len(runs)
            eta = (time.perf_counter() - runs_started) / done * (total - done) / 60.0
            print(f"[table] run {done}/{total}: {method} seed {seed}: {runs[-1]['iterations']} iterations in "
                  f"{minutes:.1f} min ({cpu_minutes:.1f} CPU min per thread) | FID 1 step {fids[1]:.2f}, 2 steps "
                  f"{fids[2]:.2f} | ETA {eta:.0f} min", flush=True)
            if on_run is not None and done < total:  # the table so far: hours of runs are never lost to a late crash
                on_run(table_result(args, teacher_fid, floor, runs, kd_pairs, start))
    return table_result(args, teacher_fid, floor, runs, kd_pairs, start)


BUDGET_KEYS = ("minutes", "clock", "max_iters")


def budget_of(settings: dict) -> dict:
    """A run's training budget: its minutes, how they are counted and the iteration cap (None: time only)."""
    return {key: settings.get(key, "wall" if key == "clock" else None) for key in BUDGET_KEYS}


def budget_text(budget: dict) -> str:
    """'33 CPU min', '1000 CPU min or 2400 it', '15 wall min'."""
    text = f"{budget['minutes']:g} {'CPU' if budget['clock'] == 'cpu' else 'wall'} min"
    return text + (f" or {budget['max_iters']} it" if budget["max_iters"] else "")


def rows_of(runs: list) -> dict:
    """Per method (table order) with at least one run: median and range over its seeds of every number, and the
    budget its runs shared (a row's seeds must share one; rows may differ, the table shows each row's)."""
    from fastgen.cli import UsageError

    rows = {}
    for method in METHODS:
        mine = [r for r in runs if r["method"] == method]
        if mine:
            budgets = [r["budget"] for r in mine]
            if any(b != budgets[0] for b in budgets):
                raise UsageError(f"{method}: its seeds ran under different budgets "
                                 f"{sorted({budget_text(b) for b in budgets})}; a row's seeds must share one")
            rows[method] = {key: spread([r[key] for r in mine])
                            for key in ("fid_1step", "fid_2step", "minutes", "cpu_minutes", "iterations")}
            rows[method]["seeds"] = [r["seed"] for r in mine]
            rows[method]["budget"] = budgets[0]
    return rows


def start_fids(args, common, teacher) -> dict:
    """FID of the teacher's own weights sampled as a 1- and 2-step student on the table's grid: where every student
    that is initialised from the teacher starts (its iteration 0), so a row shows how far its training moved."""
    from fastgen.demo.evaluate import student_sampler

    return {f"fid_{steps}step": fid_of(student_sampler(teacher, steps=steps, seed=args.eval_seed, t_list=T_LISTS[steps]),
                                       args, common) for steps in (1, 2)}


def table_result(args, teacher_fid: float, floor: float, runs: list, kd_pairs: dict | None,
                 start: dict | None = None) -> dict:
    """The table's numbers from the runs done so far (rows of methods without a run yet are left out)."""
    return {"teacher": {"fid": teacher_fid, "nfe": args.teacher_nfe}, "start": start, "floor": floor,
            "rows": rows_of(runs),
            "runs": list(runs),
            "kd_pairs": kd_pairs, "not_configured": {m: why for m, why in NOT_CONFIGURED.items()},
            "complete": len(runs) == len(args.methods) * len(args.seeds),
            "settings": {"methods": args.methods, "minutes": args.minutes, "clock": args.clock,
                         "max_iters": args.max_iters, "num_fid_samples": args.num_fid_samples,
                         "seeds": args.seeds, "eval_seed": args.eval_seed, "kd_pairs": args.kd_pairs,
                         "t_lists": {str(k): v for k, v in T_LISTS.items()}},
            "machine": machine_info(), "command": "python benchmarks/fashion_mnist_table.py " + shlex.join(args.argv),
            "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def last_checkpoint(config, since: float = 0.0) -> tuple[int, str] | None:
    """(iteration, path) of the run's last checkpoint: its number is the iterations trained (the time budget may
    end the run before max_iter), its file a second stage's starting point. Only files written at or after `since`
    (the run's start) count: runs use trainer.resume=false in a reused folder, where an earlier, longer table run
    may have left higher-numbered checkpoints."""
    from fastgen.utils.checkpointer import Checkpointer

    found = [(it, path) for it, path in Checkpointer(config.trainer.checkpointer.save_dir).list_checkpoints()
             if os.path.getmtime(path) >= since - 1.0]
    return found[-1] if found else None


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
    """The Markdown table: `teacher`, the start, then one row per method (first number = 1-step FID median), then the floor."""
    s, m = result["settings"], result["machine"]
    lines = ["# Fashion-MNIST: every method distilled from the shipped teacher at equal CPU time", ""]
    if note:
        lines += [f"**{note}**", ""]
    if not result.get("complete", True):
        lines += [f"**IN PROGRESS: {len(result['runs'])} of {len(s['seeds']) * len(s['methods'])} runs "
                  "done; rewritten after each run.**", ""]
    # a row's budget; tables written before runs recorded theirs have the one of their settings
    row_budgets = {name: row.get("budget") or budget_of(s) for name, row in result["rows"].items()}
    budgets = {budget_text(b) for b in row_budgets.values()}
    clocks = sorted({b["clock"] for b in row_budgets.values()}) or [s.get("clock") or "wall"]
    clock_line = "; ".join(f"{'CPU' if c == 'cpu' else 'wall'} min = {CLOCK_WORDS[c]}" for c in clocks)
    budget_line = ("training budget per run: the `budget` column (rows differ)" if len(budgets) > 1
                   else f"training budget per run: {next(iter(budgets))}" if budgets else "no run yet")
    lines += [f"FID ({s['num_fid_samples']} samples, shipped `fmnist-lenet` features, against the test-set "
              f"statistics); {budget_line} ({clock_line}); "
              f"seeds {s['seeds']} (each row's in its `seeds` column); median [min, max] over a row's seeds.", "",
              "| method | FID 1 step (median) | FID 2 steps (median) | 1-step range | 2-step range | seeds | budget | "
              "iterations | train minutes: wall / CPU per thread |", "|---|---|---|---|---|---|---|---|---|",
              f"| teacher | {result['teacher']['fid']:.2f} ({result['teacher']['nfe']} NFE Heun) | - | - | - | - | - | - "
              "| - |"]
    start = result.get("start")  # tables written before it was measured have none
    if start:
        lines.append(f"| start: the teacher's weights as the student (iteration 0) | {start['fid_1step']:.2f} "
                     f"| {start['fid_2step']:.2f} | - | - | - | - | 0 | - |")
    for name, row in result["rows"].items():
        one, two = row["fid_1step"], row["fid_2step"]
        lines.append(f"| {name} | {one['median']:.2f} | {two['median']:.2f} | [{one['min']:.2f}, {one['max']:.2f}] "
                     f"| [{two['min']:.2f}, {two['max']:.2f}] | {', '.join(map(str, row['seeds']))} "
                     f"| {budget_text(row_budgets[name])} "
                     f"| {row['iterations']['median']:.0f} "
                     f"| {row['minutes']['median']:.1f} / {row['cpu_minutes']['median']:.1f} |")
    lines.append(f"| floor (real train images) | {result['floor']:.2f} | - | - | - | - | - | - | - |")
    lines += [""] + [f"- {note}" for note in row_notes(result)]
    if result["not_configured"]:
        lines += ["", "Not run here: " + "; ".join(f"{k}: {v}" for k, v in result["not_configured"].items()) + "."]
    lines += ["", f"Machine: {m['processor']}, {m['cpu_count']} CPUs, {m['torch_threads']} torch threads, kernels "
              f"{m['cpu_capability']}, torch {m['torch']}; load average at the end {m['load_average_end']:.1f}. "
              f"Finished {result['finished_utc']}.", "", f"Command: `{result['command']}`", ""]
    return "\n".join(lines)


def row_notes(result: dict) -> list[str]:
    """What the numbers of the rows with more than a config include and exclude (KD's pairs, TCM's stage 1)."""
    notes = []
    pairs = result.get("kd_pairs")
    if pairs and "KD" in result["rows"]:
        made = ("reused from an earlier run (not timed here)" if pairs["reused"]
                else f"made once in {pairs['minutes']:.1f} min, not in KD's train minutes")
        notes.append(f"KD trains on {pairs['count']} (noise, teacher image) pairs of the teacher's {pairs['nfe']}-NFE "
                     f"Heun sampler, {made}.")
    for method in result["rows"]:
        if METHODS[method].stage1:
            starts = sorted({r["init"] for r in result["runs"] if r["method"] == method})
            notes.append(f"{method} starts from: {'; '.join(starts)} (a stage-1 run's minutes are in its own row, "
                         "not in this one's).")
        if METHODS[method].sampler == "method":
            notes.append(f"{method} samples with its own sampler on the same time grid.")
    return notes


def write_table(result: dict, out: str, note: str = "") -> str:
    """The Markdown table at `out` and its numbers as JSON beside it; returns the JSON's path."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as file:
        file.write(render(result, note))
    json_path = os.path.splitext(out)[0] + ".json"
    with open(json_path, "w") as file:
        json.dump(result, file, indent=2)
        file.write("\n")
    return json_path


# settings that must agree for runs of separate invocations to share one table (seeds, methods and, between rows,
# the budget may differ: each run records its own, and a row's seeds must share one)
SHARED_SETTINGS = ("num_fid_samples", "eval_seed", "kd_pairs", "t_lists")
SAME_MACHINE = ("processor", "cpu_count", "torch_threads", "cpu_capability", "torch")


def combine(results: list[dict]) -> dict:
    """One table from the JSON of several invocations (e.g. seeds run side by side, one thread each): they must share
    the FID setup and the machine (so their teacher and floor FIDs are the same numbers); a row's seeds must share a
    budget. Runs of tables written before runs recorded their budget get their table's."""
    from fastgen.cli import UsageError

    first = results[0]
    start = next((r["start"] for r in results if r.get("start")), None)  # older tables have none
    for other in results[1:]:
        differ = [k for k in SHARED_SETTINGS if other["settings"].get(k) != first["settings"].get(k)]
        differ += [f"machine {k}" for k in SAME_MACHINE if other["machine"][k] != first["machine"][k]]
        differ += [k for k in ("teacher", "floor") if other[k] != first[k]]
        differ += ["start"] * bool(other.get("start") and other["start"] != start)
        if differ:
            raise UsageError(f"--combine: the tables differ in {differ}; combine only runs of the same FID "
                             "settings and machine")
    runs = [{"budget": budget_of(result["settings"]), **run} for result in results for run in result["runs"]]
    keys = [(r["method"], r["seed"]) for r in runs]
    if len(set(keys)) != len(keys):
        raise UsageError(f"--combine: a (method, seed) appears twice: {sorted(k for k in set(keys) if keys.count(k) > 1)}")
    kd_pairs = next((r["kd_pairs"] for r in results if r.get("kd_pairs")), None)
    methods = [m for m in METHODS if any(r["method"] == m for r in runs)]
    seeds = sorted({r["seed"] for r in runs})
    return {**first, "start": start, "rows": rows_of(runs), "runs": runs, "kd_pairs": kd_pairs,
            # every source table finished (rows with fewer seeds show it in their `seeds` column)
            "complete": all(r.get("complete", True) for r in results),
            "settings": {**first["settings"], "methods": methods, "seeds": seeds,
                         **{key: (first["settings"].get(key) if all(r["budget"] == runs[0]["budget"] for r in runs)
                                  else None) for key in BUDGET_KEYS}},
            "command": " ; ".join(r["command"] for r in results),
            "finished_utc": max(r["finished_utc"] for r in results)}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.combine:
        results = []
        for path in args.combine:
            with open(path) as file:
                results.append(json.load(file))
        json_path = write_table(combine(results), args.out, args.note)
        print(f"[table] combined {len(results)} tables into {args.out} and {json_path}", flush=True)
        return 0
    result = run_table(args, on_run=lambda partial: write_table(partial, args.out, args.note))
    json_path = write_table(result, args.out, args.note)
    print(f"[table] wrote {args.out} and {json_path}", flush=True)
    return 0


if __name__ == "__main__":
    from fastgen.cli import run_cli

    sys.exit(run_cli(main))
