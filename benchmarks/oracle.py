"""Exact-oracle report: every method distilled from the *exact* ring8 Gaussian-mixture denoiser, side by side.

The teacher is perfect (closed-form E[x0 | x_t]), so any distance between a student's 1-step samples and the true
distribution is the method's own error. Prints: method, sampling steps, training iterations, sliced Wasserstein
distance to fresh data samples, mode coverage, the share of samples on a mode; first the floor (data vs data) and
the teacher's 35-step Heun samples. KD regresses onto exact teacher ODE pairs (written into a temporary folder).

    OMP_NUM_THREADS=1 python benchmarks/oracle.py                  # all methods, a few minutes on 2 CPU cores
    OMP_NUM_THREADS=1 python benchmarks/oracle.py --seeds 0 1 2    # + median [min, max] per method
    OMP_NUM_THREADS=1 python benchmarks/oracle.py kd consistency   # families: kd distribution_matching consistency
"""

from __future__ import annotations

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _args import parse_method_args, seeded_methods_parser  # noqa: E402  (stdlib only: --help answers before torch loads)


def reference_rows() -> list[dict]:
    import torch
    from _oracle_common import NUM_EVAL, swd_to_data

    from fastgen.networks.toy import GMMDenoiser
    from fastgen.utils.gmm import make_gmm, mode_coverage

    gmm = make_gmm("ring8")
    data, _ = gmm.sample(NUM_EVAL, torch.Generator().manual_seed(99))
    teacher = GMMDenoiser(gmm_name="ring8").double()
    noise = torch.randn(NUM_EVAL, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    heun = teacher.sample(noise, num_steps=35, sampler_type="heun").float()
    rows = []
    for name, steps, samples in (("data (floor)", 0, data), ("teacher Heun", 35, heun)):
        coverage = mode_coverage(samples, gmm)
        rows.append({"method": name, "sample_steps": steps, "train_iters": 0, "swd": swd_to_data(samples),
                     "mode_coverage": coverage["mode_coverage"], "on_mode": coverage["near_mode_fraction"]})
    return rows


def kd_rows(methods=("kd",), seed: int = 0) -> list[dict]:
    """KD (Toy/config_kd.py, 1 step) on exact teacher ODE pairs written into a temporary folder."""
    import tempfile

    from _oracle_common import measured_row

    from fastgen.configs.experiments.Toy.config_kd import create_config

    with tempfile.TemporaryDirectory() as root:
        config = create_config()
        config.dataloader_train.path = os.path.join(root, "kd_ring8_pairs.safetensors")
        config.trainer.callbacks = {}
        config.trainer.logging_iter = 10**9
        config.trainer.save_ckpt_iter = config.trainer.max_iter
        config.trainer.seed = seed
        return [measured_row("kd", config, os.path.join(root, "kd"))]


FAMILIES = ("kd", "distribution_matching", "consistency")


def all_rows(methods=FAMILIES, seed: int = 0) -> list[dict]:
    """Every method's measured row (KD, then both families) for one trainer.seed."""
    from oracle_consistency import oracle_rows as consistency_rows
    from oracle_distribution_matching import oracle_rows as distribution_matching_rows

    family_rows = {"kd": kd_rows, "distribution_matching": distribution_matching_rows,
                   "consistency": consistency_rows}
    return [row for family in methods for row in family_rows[family](seed=seed)]


def main(argv=None) -> None:
    # --help answers here, before any training; "methods" here are the families
    args = parse_method_args(seeded_methods_parser(__doc__, FAMILIES), FAMILIES, argv)
    from _oracle_common import print_rows, print_summary, quiet_logs

    quiet_logs()
    print(f"{'reference':<18}{'NFE':>5}{'SWD':>9}{'modes':>7}{'on-mode':>9}")
    for row in reference_rows():
        print(f"{row['method']:<18}{row['sample_steps']:>5}{row['swd']:>9.4f}{row['mode_coverage']:>7.2f}"
              f"{row['on_mode']:>9.3f}")
    rows = []
    for seed in args.seeds:
        seed_rows = all_rows(args.methods, seed=seed)
        print(f"seed {seed} (1-step students)")
        print_rows(seed_rows)
        rows += seed_rows
    if len(args.seeds) > 1:
        print_summary(rows, args.seeds)


if __name__ == "__main__":
    main()
