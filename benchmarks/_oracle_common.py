"""What the exact-oracle benchmarks share: train a Toy config with the real Trainer on ring8, draw 1-step samples
with fixed seeds, score them against the known mixture (sliced Wasserstein, mode coverage), print the table.

Used by oracle_consistency.py, oracle_distribution_matching.py and oracle.py (run from the repo or benchmarks/).
"""

from __future__ import annotations

import os
import sys
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from fastgen.utils.gmm import make_gmm, mode_coverage, sliced_wasserstein  # noqa: E402

NUM_EVAL = 2000


def one_step_samples(model, n: int = NUM_EVAL, seed: int = 5, net=None, steps: int = 1, t_list=None):
    """`steps`-step samples of the student (default its inference network) from fixed noise."""
    noise = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed)).to(model.device)
    net = model.net_inference if net is None else net
    return model.generator_fn(net, noise, student_sample_steps=steps, t_list=t_list).cpu()


def swd_to_data(samples: torch.Tensor, seed: int = 11) -> float:
    """Sliced Wasserstein distance of `samples` to NUM_EVAL fresh ring8 samples (fixed seeds)."""
    data, _ = make_gmm("ring8").sample(NUM_EVAL, torch.Generator().manual_seed(seed))
    return sliced_wasserstein(samples, data, generator=torch.Generator().manual_seed(6))


def train(config, output_root: str):
    """Build config.model_class and run the real Trainer in `output_root`; returns (model, SWD before training)."""
    from fastgen.trainer import Trainer
    from fastgen.utils import instantiate

    os.environ["FASTGEN_OUTPUT_ROOT"] = output_root
    torch.manual_seed(config.trainer.seed)
    model = instantiate(config.model_class, config=config.model)
    swd_before = swd_to_data(one_step_samples(model))
    Trainer(config).run(model)
    return model, swd_before


def measured_row(name: str, config, output_root: str) -> dict:
    """Train `config` and report {method, steps, swd_init, swd, mode_coverage, seconds} of its 1-step samples."""
    start = time.perf_counter()
    model, swd_before = train(config, output_root)
    samples = one_step_samples(model)
    coverage = mode_coverage(samples, make_gmm("ring8"))
    return {
        "method": name,
        "steps": int(config.trainer.max_iter),
        "swd_init": round(swd_before, 4),
        "swd": round(swd_to_data(samples), 4),
        "mode_coverage": coverage["mode_coverage"],
        "on_mode": round(coverage["near_mode_fraction"], 3),
        "seconds": round(time.perf_counter() - start, 1),
    }


def print_rows(rows: list[dict], name_width: int = 16) -> None:
    """The rows of measured_row as a fixed-width table on stdout (on-mode: share of samples within 3 mode stds of
    a mode; the data itself has 0.989, so what is missing sits between the modes)."""
    print(f"{'method':<{name_width}}{'steps':>6}{'SWD init':>10}{'SWD':>9}{'modes':>7}{'on-mode':>9}{'sec':>7}")
    for row in rows:
        print(f"{row['method']:<{name_width}}{row['steps']:>6}{row['swd_init']:>10.4f}{row['swd']:>9.4f}"
              f"{row['mode_coverage']:>7.2f}{row['on_mode']:>9.3f}{row['seconds']:>7.1f}", flush=True)


def seed_summary(rows: list[dict]) -> list[dict]:
    """Per method (first-seen order): median, min and max over its rows of SWD, mode coverage and on-mode share."""
    import statistics

    summary = []
    for name in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == name]
        entry = {"method": name, "runs": len(mine)}
        for key in ("swd", "mode_coverage", "on_mode"):
            values = [r[key] for r in mine]
            entry[key] = (statistics.median(values), min(values), max(values))
        summary.append(entry)
    return summary


def print_summary(rows: list[dict], seeds, name_width: int = 16) -> None:
    """seed_summary(rows) as lines `name SWD median [min, max]  modes ...  on-mode ...`."""
    print(f"median [min, max] over seeds {list(seeds)}")
    for entry in seed_summary(rows):
        print(f"{entry['method']:<{name_width}}" + "  ".join(
            f"{label} {med:.4f} [{lo:.4f}, {hi:.4f}]" if key == "swd" else f"{label} {med:.2f} [{lo:.2f}, {hi:.2f}]"
            for key, label in (("swd", "SWD"), ("mode_coverage", "modes"), ("on_mode", "on-mode"))
            for med, lo, hi in [entry[key]]), flush=True)


def run_seeds(rows_fn, methods, seeds, name_width: int = 16) -> list[dict]:
    """rows_fn(methods, seed) for every seed, one table per seed, then the per-method summary when several."""
    rows = []
    for seed in seeds:
        seed_rows = rows_fn(methods, seed=seed)
        print(f"seed {seed}")
        print_rows(seed_rows, name_width=name_width)
        rows += seed_rows
    if len(seeds) > 1:
        print_summary(rows, seeds, name_width=name_width)
    return rows


def quiet_logs() -> None:
    """Only warnings from the trainer while a benchmark prints its table."""
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")
