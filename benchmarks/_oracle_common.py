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
    return {
        "method": name,
        "steps": int(config.trainer.max_iter),
        "swd_init": round(swd_before, 4),
        "swd": round(swd_to_data(samples), 4),
        "mode_coverage": mode_coverage(samples, make_gmm("ring8"))["mode_coverage"],
        "seconds": round(time.perf_counter() - start, 1),
    }


def print_rows(rows: list[dict], name_width: int = 16) -> None:
    """The rows of measured_row as a fixed-width table on stdout."""
    print(f"{'method':<{name_width}}{'steps':>6}{'SWD init':>10}{'SWD':>9}{'modes':>7}{'sec':>7}")
    for row in rows:
        print(f"{row['method']:<{name_width}}{row['steps']:>6}{row['swd_init']:>10.4f}{row['swd']:>9.4f}"
              f"{row['mode_coverage']:>7.2f}{row['seconds']:>7.1f}")


def quiet_logs() -> None:
    """Only warnings from the trainer while a benchmark prints its table."""
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")
