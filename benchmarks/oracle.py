"""Exact-oracle report: every method distilled from the *exact* ring8 Gaussian-mixture denoiser, side by side.

The teacher is perfect (closed-form E[x0 | x_t]), so any distance between a student's 1-step samples and the true
distribution is the method's own error. Prints: method, sampling steps, training iterations, sliced Wasserstein
distance to fresh data samples, mode coverage; first the floor (data vs data) and the teacher's 35-step Heun samples.

    python benchmarks/oracle.py            # all methods, a few minutes on 2 CPU cores
"""

from __future__ import annotations

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _args import benchmark_parser  # noqa: E402  (stdlib only: --help answers before torch loads)


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
    return [
        {"method": "data (floor)", "sample_steps": 0, "train_iters": 0, "swd": swd_to_data(data),
         "mode_coverage": mode_coverage(data, gmm)["mode_coverage"]},
        {"method": "teacher Heun", "sample_steps": 35, "train_iters": 0, "swd": swd_to_data(heun),
         "mode_coverage": mode_coverage(heun, gmm)["mode_coverage"]},
    ]


def main(argv=None) -> None:
    benchmark_parser(__doc__).parse_args(argv)  # --help answers here, before any training
    from _oracle_common import quiet_logs
    from oracle_consistency import oracle_rows as consistency_rows
    from oracle_distribution_matching import oracle_rows as distribution_matching_rows

    quiet_logs()
    rows = reference_rows()
    for row in distribution_matching_rows() + consistency_rows():
        rows.append({"method": row["method"], "sample_steps": 1, "train_iters": row["steps"], "swd": row["swd"],
                     "mode_coverage": row["mode_coverage"]})
    print(f"{'method':<18}{'NFE':>5}{'train its':>11}{'SWD':>9}{'modes':>7}")
    for row in rows:
        print(f"{row['method']:<18}{row['sample_steps']:>5}{row['train_iters']:>11}{row['swd']:>9.4f}"
              f"{row['mode_coverage']:>7.2f}")


if __name__ == "__main__":
    main()
