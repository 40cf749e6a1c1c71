"""The end-to-end demo: Fashion-MNIST -> teacher -> DMD2 1-step student -> evaluation, in one command.

    python -m fastgen.demo [--run_name NAME] [--distill_iters N] [--num_fid_samples N] [--smoke] [- key=value ...]

Stages (each prints progress lines):
  1. data     Fashion-MNIST from $DATA_ROOT_DIR/fashion_mnist or Debian's /usr/share/datasets/fashion-mnist, else the
              official download, else an error saying how to get it.
  2. teacher  the shipped SFT teacher (sha256-verified; fastgen/assets/teachers/), or, when it is missing, a short
              SFT run of config_sft_teacher.py through the same Trainer (said loudly: the demo then shows less).
  3. distill  DMD2 (config_dmd2.py) through the Trainer for a fixed iteration budget; overrides after '-' apply here.
  4. eval     FID (Fashion-MNIST feature net, fastgen.metrics) of teacher samples at N network evaluations and of the
              1-step student, on identical seeded class-balanced inputs, with the sampling time per 1000 images.
  5. report   sample_grid.png (teacher left, student right, one class per row), metrics.json and report.md in the
              run folder $FASTGEN_OUTPUT_ROOT/fastgen/fashion_mnist/<run_name>/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from typing import Any

from loguru import logger

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "experiments",
                          "FashionMNIST")
TEACHER_CONFIG = os.path.join(CONFIG_DIR, "config_sft_teacher.py")
STUDENT_CONFIG = os.path.join(CONFIG_DIR, "config_dmd2.py")
# torch CPU threads unless --num_threads says otherwise: pinned, because the reduction order (and so every bit of
# training) depends on it, and torch's default is the machine's core count (benchmarks/demo_determinism.py)
DEFAULT_THREADS = 2
# environment variables that change which CPU kernels run (recorded in metrics.json when set)
KERNEL_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA",
                   "OPENBLAS_CORETYPE", "CUDA_VISIBLE_DEVICES")
FALLBACK_TEACHER_BATCH = 64  # batch of a teacher trained on the spot (no --batch_size): minutes, not hours, on a CPU
IMAGE_SHAPE = (1, 32, 32)
# the targets (reported, never asserted): student FID <= 2x (stretch 1.3x) the teacher's, <= 10 minutes of
# distillation, sampling >= 30x faster
TARGETS = {"fid_ratio_max": 2.0, "fid_ratio_stretch": 1.3, "distill_minutes_max": 10.0, "speedup_min": 30.0}
# the full demo vs the tiny end-to-end check used by the tests
PRESETS = {
    "full": dict(distill_iters=None, num_fid_samples=1000, teacher_nfe=35, fid_batch_size=250, grid_per_class=8,
                 max_data=None, batch_size=None, teacher_iters=1500, logging_iter=25, floor_samples=1000),
    "smoke": dict(distill_iters=6, num_fid_samples=40, teacher_nfe=3, fid_batch_size=20, grid_per_class=2,
                  max_data=256, batch_size=16, teacher_iters=4, logging_iter=2, floor_samples=40),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fastgen.demo",
        description="End-to-end demo: Fashion-MNIST -> shipped SFT teacher -> DMD2 1-step student -> FID, timing, "
                    "sample grid, metrics.json and report.md in $FASTGEN_OUTPUT_ROOT/fastgen/fashion_mnist/<run_name>/."
                    " Overrides for the DMD2 config follow a '-' (e.g. - model.net_optimizer.lr=5e-5).",
    )
    parser.add_argument("--run_name", default=None,
                        help="run folder name (default demo_<UTC time>); an existing run's checkpoints are resumed")
    parser.add_argument("--teacher", default=None,
                        help="teacher .safetensors with a .json manifest (default: the shipped one); trained by SFT "
                             "when missing")
    parser.add_argument("--teacher_iters", type=int, default=None,
                        help="SFT iterations when the teacher has to be trained (default 1500; smoke 4)")
    parser.add_argument("--distill_iters", type=int, default=None,
                        help="DMD2 iterations (default: config_dmd2.py's trainer.max_iter; smoke 6)")
    parser.add_argument("--batch_size", type=int, default=None, help="training batch size (default: the configs')")
    parser.add_argument("--num_fid_samples", type=int, default=None,
                        help="samples per FID, teacher and student alike (default 1000; smoke 40)")
    parser.add_argument("--teacher_nfe", type=int, default=None,
                        help="network evaluations of the teacher's Heun sampler (default 35 = 18 steps; smoke 3)")
    parser.add_argument("--fid_batch_size", type=int, default=None, help="sampling batch size (default 250)")
    parser.add_argument("--grid_per_class", type=int, default=None, help="grid columns per model (default 8)")
    parser.add_argument("--max_data", type=int, default=None, help="use only the first N training images")
    parser.add_argument("--data_root", default=None, help="directory with the Fashion-MNIST IDX files (default: auto)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the evaluation noise (training: trainer.seed)")
    parser.add_argument("--num_threads", type=int, default=DEFAULT_THREADS,
                        help=f"torch CPU threads (default {DEFAULT_THREADS}, pinned: training bits depend on the "
                             "thread count, so torch's per-machine default would make runs machine-dependent)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny end-to-end run (256 images, 6 DMD2 iterations, 40 FID samples): checks the "
                             "pipeline in well under a minute; its numbers mean nothing")
    parser.add_argument("--log_level", default="INFO", type=str.upper, choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="'-' then key=value overrides for the DMD2 config")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from fastgen.cli import UsageError

    args = build_parser().parse_args(argv)
    if args.opts and args.opts[0] != "-":
        raise UsageError(f"overrides must follow a '-' separator: ... - {' '.join(args.opts)}")
    args.opts = list(args.opts[1:])
    preset = PRESETS["smoke" if args.smoke else "full"]
    for key, value in preset.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    for key in ("num_fid_samples", "teacher_nfe", "fid_batch_size", "grid_per_class", "teacher_iters"):
        if getattr(args, key) < 1:
            raise UsageError(f"--{key} must be >= 1; got {getattr(args, key)}")
    if args.distill_iters is not None and args.distill_iters < 1:
        raise UsageError(f"--distill_iters must be >= 1; got {args.distill_iters}")
    args.run_name = args.run_name or "demo_" + datetime.now(timezone.utc).strftime("%Y%m%d_%H%M%S")
    return args


# --- stages ----------------------------------------------------------------------------------------------------------
def ensure_fashion_mnist(data_root: str | None) -> str:
    """Directory holding the Fashion-MNIST IDX files: given, $DATA_ROOT_DIR/fashion_mnist, Debian's package, else
    downloaded into $DATA_ROOT_DIR; a clear error when none works."""
    from fastgen.datasets.idx_loader import FashionMNISTLoader, locate_idx_root
    from fastgen.utils.env import data_root_dir

    try:
        return locate_idx_root(data_root, FashionMNISTLoader.dataset_name, FashionMNISTLoader.system_dirs,
                               FashionMNISTLoader.how_to_get)
    except FileNotFoundError as missing:
        if data_root is not None:
            raise
        logger.warning(f"{missing}; trying the official download into {data_root_dir()}")
        from fastgen.datasets.download import download_idx_dataset

        try:
            return download_idx_dataset("fashion_mnist", data_root_dir())
        except Exception as error:  # no network, bad mirror ...
            raise FileNotFoundError(
                f"Fashion-MNIST is not available and the download failed ({type(error).__name__}: {error}). Install "
                "it with `apt-get install dataset-fashion-mnist`, or run `python scripts/download_data.py --dataset "
                "fashion_mnist` on a machine with internet access and pass --data_root DIR"
            ) from error


def run_training_stage(config_path: str, overrides: list[str], log_level: str) -> Any:
    """Train through the same path as `python train.py --config=... - overrides`; returns the trained model."""
    from fastgen.cli import parse_args as parse_train_args
    from fastgen.cli import setup
    from fastgen.trainer import Trainer
    from fastgen.utils import instantiate
    from fastgen.utils.run_dir import release_run_lock

    args = parse_train_args(["--config", config_path, "--log_level", log_level, "-", *overrides])
    config = setup(args)
    logger.info(f"python train.py --config={os.path.relpath(config_path)} - {' '.join(overrides)}")
    model = instantiate(config.model_class, config=config.model)
    try:
        Trainer(config).run(model)
    finally:
        release_run_lock(config.log_config.save_path)
    return model, config


def data_overrides(args: argparse.Namespace, data_root: str) -> list[str]:
    overrides = [f"dataloader_train.root={data_root}"]
    if args.max_data is not None:
        overrides.append(f"dataloader_train.max_size={args.max_data}")
    if args.batch_size is not None:
        overrides.append(f"dataloader_train.batch_size={args.batch_size}")
    return overrides


def teacher_overrides(args: argparse.Namespace, data_root: str) -> list[str]:
    """Overrides of the SFT teacher config for a teacher trained on the spot: the run's iterations and data, and
    batch FALLBACK_TEACHER_BATCH unless --batch_size is given (the config's 256 is sized for a GPU: about 4 s per
    iteration on 2 CPU cores)."""
    overrides = [f"log_config.name={args.run_name}/teacher", f"trainer.max_iter={args.teacher_iters}",
                 f"trainer.logging_iter={args.logging_iter}", f"trainer.save_ckpt_iter={args.teacher_iters}",
                 *data_overrides(args, data_root)]
    if args.batch_size is None:
        overrides.append(f"dataloader_train.batch_size={FALLBACK_TEACHER_BATCH}")
    return overrides


def prepare_teacher(args: argparse.Namespace, data_root: str) -> tuple[str, dict[str, Any]]:
    """(weights path, info): the verified shipped/given teacher, or one trained now when the file is missing."""
    from fastgen.configs.experiments.FashionMNIST._common import shipped_teacher_path
    from fastgen.demo.teacher import export_teacher, verify_teacher
    from fastgen.utils.checkpointer import checkpoint_path

    path = args.teacher or shipped_teacher_path()
    if os.path.isfile(path):
        manifest = verify_teacher(path)
        logger.info(f"[teacher] using {path} (sha256 verified; {manifest.get('iterations')} SFT iterations; "
                    f"trained by: {manifest.get('command')})")
        return path, {"source": "shipped" if args.teacher is None else "given", "path": path, **manifest}
    logger.warning(f"[teacher] {path} not found: training a teacher now with SFT for {args.teacher_iters} iterations "
                   "(a short teacher gives a much worse FID than the shipped one; restore it with git or run "
                   "scripts/train_demo_teacher.sh)")
    overrides = teacher_overrides(args, data_root)
    _, config = run_training_stage(TEACHER_CONFIG, overrides, args.log_level)
    out = os.path.join(config.log_config.save_path, "teacher_ema.safetensors")
    ckpt = checkpoint_path(config.trainer.checkpointer.save_dir, args.teacher_iters)
    command = f"python train.py --config={os.path.relpath(TEACHER_CONFIG)} - {' '.join(overrides)}"
    manifest = export_teacher(ckpt, out, ema_name="ema", command=command)
    return out, {"source": "trained in this run", "path": out, **manifest}


def distill(args: argparse.Namespace, data_root: str, teacher_path: str) -> tuple[Any, Any, float]:
    """DMD2 through the Trainer; returns (model, config, seconds)."""
    overrides = [f"log_config.name={args.run_name}/dmd2", f"model.pretrained_model_path={teacher_path}",
                 f"trainer.logging_iter={args.logging_iter}", *data_overrides(args, data_root)]
    if args.distill_iters is not None:
        overrides.append(f"trainer.max_iter={args.distill_iters}")
    overrides += args.opts
    tic = time.perf_counter()
    model, config = run_training_stage(STUDENT_CONFIG, overrides, args.log_level)
    return model, config, time.perf_counter() - tic


def evaluate(args: argparse.Namespace, teacher_net: Any, student_net: Any, student_steps: int, data_root: str,
             run_dir: str) -> dict[str, Any]:
    """FID + sampling time of teacher (args.teacher_nfe evaluations) and student (1 step), the real-data floor, grid."""
    from fastgen.demo.evaluate import (
        comparison_grid,
        grid_images,
        real_data_fid,
        student_sampler,
        teacher_sampler,
        timed_fid,
    )
    from fastgen.metrics import load_feature_extractor, load_stats
    from fastgen.metrics.feature_net import reference_stats_path

    feature_net = load_feature_extractor("fmnist")
    ref = load_stats(str(reference_stats_path("train")))
    teacher_fn = teacher_sampler(teacher_net, args.teacher_nfe)
    student_fn = student_sampler(student_net, steps=student_steps, seed=args.seed)
    common = dict(feature_net=feature_net, ref_stats=ref, num_samples=args.num_fid_samples,
                  batch_size=args.fid_batch_size, shape=IMAGE_SHAPE, seed=args.seed)
    student = timed_fid(f"student ({student_steps} step)", student_fn, **common)
    logger.info(f"[eval] student FID {student['fid']:.2f} ({student['seconds_per_1000_images']:.2f} s / 1000 images)")
    teacher = timed_fid(f"teacher ({args.teacher_nfe} NFE)", teacher_fn, **common)
    logger.info(f"[eval] teacher FID {teacher['fid']:.2f} ({teacher['seconds_per_1000_images']:.2f} s / 1000 images)")
    floor = real_data_fid(feature_net, ref, min(args.floor_samples, 10000), root=data_root)
    logger.info(f"[eval] real test images vs the train reference (floor at this sample count): FID {floor:.2f}")
    grid_path = os.path.join(run_dir, "sample_grid.png")
    comparison_grid(grid_images(teacher_fn, args.grid_per_class, IMAGE_SHAPE, args.seed),
                    grid_images(student_fn, args.grid_per_class, IMAGE_SHAPE, args.seed), args.grid_per_class,
                    grid_path, titles=(f"teacher, {args.teacher_nfe} NFE", f"student, {student_steps} NFE"))
    logger.info(f"[eval] wrote {grid_path}")
    return {"teacher": teacher, "student": student, "real_data_floor_fid": floor,
            "feature_net": {"name": feature_net.name, "sha256": feature_net.weights_sha256},
            "reference_stats": str(reference_stats_path("train")), "grid": grid_path}


def summarize(args: argparse.Namespace, evaluation: dict, teacher_info: dict, distill_seconds: float,
              distill_config: Any, timings: dict, load_start: tuple, run_dir: str) -> dict[str, Any]:
    import torch

    teacher, student = evaluation["teacher"], evaluation["student"]
    ratio = student["fid"] / max(teacher["fid"], 1e-12)
    speedup = teacher["seconds_per_1000_images"] / max(student["seconds_per_1000_images"], 1e-12)
    distill_minutes = distill_seconds / 60.0
    iterations = int(distill_config.trainer.max_iter)
    freq = int(distill_config.model.student_update_freq)
    return {
        "smoke": bool(args.smoke),
        "run_dir": run_dir,
        "teacher": {**teacher, "nfe": args.teacher_nfe, "sampler": "heun",
                    "weights": teacher_info.get("path"), "sha256": teacher_info.get("sha256"),
                    "source": teacher_info.get("source"), "sft_iterations": teacher_info.get("iterations"),
                    "command": teacher_info.get("command")},
        "student": {**student, "nfe": 1, "method": dmd2_variant(distill_config.model), "distill_iterations": iterations,
                    "generator_updates": iterations // freq, "distill_seconds": distill_seconds,
                    "batch_size": int(distill_config.dataloader_train.batch_size)},
        "fid_ratio_student_over_teacher": ratio,
        "sampling_speedup": speedup,
        "real_data_floor_fid": evaluation["real_data_floor_fid"],
        "num_fid_samples": args.num_fid_samples,
        "feature_net": evaluation["feature_net"],
        "reference_stats": evaluation["reference_stats"],
        "targets": {**TARGETS, "met": {
            "fid_ratio": ratio <= TARGETS["fid_ratio_max"], "fid_ratio_stretch": ratio <= TARGETS["fid_ratio_stretch"],
            "distill_minutes": distill_minutes <= TARGETS["distill_minutes_max"],
            "speedup": speedup >= TARGETS["speedup_min"]}},
        "timings_seconds": timings,
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_model": cpu_model(),
                    "kernel_env": {k: os.environ[k] for k in KERNEL_ENV_VARS if k in os.environ},
                    "device": _device_name(),
                    "platform": platform.platform(), "torch": torch.__version__,
                    "load_average_start": list(load_start), "load_average_end": list(_load_average())},
        "command": "python -m fastgen.demo " + " ".join(sys.argv[1:]),
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def dmd2_variant(model_config: Any) -> str:
    """What the distilled student is, as metrics.json names it: DMD2 with or without its GAN term (and where the
    discriminator reads its features), so overrides like model.gan_loss_weight_gen=0 are visible in the report."""
    from fastgen.methods.distribution_matching.dmd2 import resolve_disc_loss_weight

    weight = float(model_config.gan_loss_weight_gen)
    if weight <= 0:
        return "DMD2 (no GAN)"
    source = model_config.gan_feature_source
    critic = resolve_disc_loss_weight(getattr(model_config, "gan_loss_weight_disc", None), source)
    return f"DMD2 (GAN on real data, weight {weight:g}, critic weight {critic:g}, {source} features)"


def _device_name() -> str:
    import torch

    return f"cuda ({torch.cuda.get_device_name()})" if torch.cuda.is_available() else "cpu"


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo, else platform.processor())."""
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _load_average() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


def write_report(metrics: dict[str, Any], path: str) -> str:
    """A short Markdown report of metrics.json."""
    t, s = metrics["teacher"], metrics["student"]
    met = metrics["targets"]["met"]
    yes = {True: "yes", False: "no"}
    timings = metrics["timings_seconds"]
    lines = [
        "# fastgen demo: Fashion-MNIST teacher -> DMD2 1-step student",
        "",
        *(["**Smoke run: tiny data and sample counts, the numbers are meaningless.**", ""] if metrics["smoke"] else []),
        "![teacher (left) vs student (right), one class per row](sample_grid.png)",
        "",
        f"| model | NFE | FID ({metrics['num_fid_samples']} samples) | s / 1000 images |",
        "|---|---|---|---|",
        f"| teacher (SFT, Heun) | {t['nfe']} | {t['fid']:.2f} | {t['seconds_per_1000_images']:.2f} |",
        f"| student (DMD2) | 1 | {s['fid']:.2f} | {s['seconds_per_1000_images']:.2f} |",
        f"| real test images (floor) | - | {metrics['real_data_floor_fid']:.2f} | - |",
        "",
        f"- Student / teacher FID: **{metrics['fid_ratio_student_over_teacher']:.2f}x** (target <= "
        f"{metrics['targets']['fid_ratio_max']}x: {yes[met['fid_ratio']]}; stretch <= "
        f"{metrics['targets']['fid_ratio_stretch']}x: {yes[met['fid_ratio_stretch']]}).",
        f"- Sampling speed-up: **{metrics['sampling_speedup']:.1f}x** (target >= {metrics['targets']['speedup_min']}x: "
        f"{yes[met['speedup']]}).",
        f"- Distillation: {s['distill_iterations']} DMD2 iterations ({s['generator_updates']} generator updates, "
        f"batch {s['batch_size']}) in {s['distill_seconds'] / 60:.1f} min (target <= "
        f"{metrics['targets']['distill_minutes_max']:.0f} min: {yes[met['distill_minutes']]}).",
        f"- Teacher: {t['source']} `{os.path.basename(str(t['weights']))}` ({t['sft_iterations']} SFT iterations; "
        f"sha256 `{str(t['sha256'])[:12]}...`), trained by `{t['command']}`.",
        f"- FID features: {metrics['feature_net']['name']} (sha256 `{metrics['feature_net']['sha256'][:12]}...`) "
        "against Fashion-MNIST train statistics; comparable only with FIDs from the same feature network.",
        "- Wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + ".",
        f"- Machine: {metrics['machine']['cpu_model']}, {metrics['machine']['cpu_count']} CPUs, "
        f"{metrics['machine']['torch_threads']} torch threads, kernels {metrics['machine']['cpu_capability']}, "
        f"{metrics['machine']['device']}; load average at start {metrics['machine']['load_average_start'][0]:.1f}. "
        "The same seed gives the same bits only with the same thread count, kernel ISA and device.",
        "",
        f"Command: `{metrics['command']}`",
        "",
    ]
    with open(path, "w") as file:
        file.write("\n".join(lines))
    return path


def main(argv: list[str] | None = None) -> int:
    import torch

    from fastgen.utils.logging import setup_logging

    args = parse_args(argv)
    setup_logging(args.log_level)
    if args.num_threads < 1:
        from fastgen.cli import UsageError

        raise UsageError(f"--num_threads must be >= 1; got {args.num_threads}")
    torch.set_num_threads(args.num_threads)
    load_start = _load_average()
    started = time.perf_counter()
    timings: dict[str, float] = {}

    logger.info(f"[demo] run {args.run_name}{' (smoke)' if args.smoke else ''}: data -> teacher -> DMD2 -> eval")
    tic = time.perf_counter()
    data_root = ensure_fashion_mnist(args.data_root)
    timings["data"] = time.perf_counter() - tic
    logger.info(f"[data] Fashion-MNIST from {data_root}")

    tic = time.perf_counter()
    teacher_path, teacher_info = prepare_teacher(args, data_root)
    timings["teacher"] = time.perf_counter() - tic

    logger.info("[distill] DMD2 1-step student from the teacher")
    model, config, distill_seconds = distill(args, data_root, teacher_path)
    timings["distill"] = distill_seconds
    run_dir = os.path.dirname(config.log_config.save_path)

    tic = time.perf_counter()
    from fastgen.demo.teacher import load_teacher_net

    teacher_net = load_teacher_net(teacher_path, config.model.net).to(model.device)
    student_net = model.net_inference
    evaluation = evaluate(args, teacher_net, student_net, int(config.model.student_sample_steps), data_root, run_dir)
    timings["eval"] = time.perf_counter() - tic
    timings["total"] = time.perf_counter() - started

    metrics = summarize(args, evaluation, teacher_info, distill_seconds, config, timings, load_start, run_dir)
    metrics_path = os.path.join(run_dir, "metrics.json")
    with open(metrics_path, "w") as file:
        json.dump(metrics, file, indent=2, sort_keys=True)
        file.write("\n")
    report_path = write_report(metrics, os.path.join(run_dir, "report.md"))
    logger.info(f"[demo] teacher FID {metrics['teacher']['fid']:.2f} ({args.teacher_nfe} NFE) | student FID "
                f"{metrics['student']['fid']:.2f} (1 NFE) | ratio {metrics['fid_ratio_student_over_teacher']:.2f}x | "
                f"sampling {metrics['sampling_speedup']:.1f}x faster | total {timings['total'] / 60:.1f} min")
    logger.info(f"[demo] wrote {evaluation['grid']}, {metrics_path}, {report_path}")
    return 0
