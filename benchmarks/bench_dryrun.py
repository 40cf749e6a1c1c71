"""Ratio of `train.py --dryrun` wall time to `python -c "import torch"` (target <= 1.5).

Loading a config must stay cheap: configs name networks/methods by dotted path and import no torch. Each command is
run several times, alternating, and the medians are compared.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = "fastgen/configs/experiments/EDM/config_dmd2_test.py"


def wall_time(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv=None) -> None:
    from _args import benchmark_parser

    parser = benchmark_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of each command (default 7)")
    repeats = parser.parse_args(argv).repeats
    with tempfile.TemporaryDirectory() as out:
        env = {**os.environ, "FASTGEN_OUTPUT_ROOT": out}
        dryrun_cmd = [sys.executable, "train.py", f"--config={CONFIG}", "--dryrun"]
        torch_cmd = [sys.executable, "-c", "import torch"]
        wall_time(torch_cmd, env)  # warm the file cache for both
        wall_time(dryrun_cmd, env)
        dry, tor = [], []
        for _ in range(repeats):
            dry.append(wall_time(dryrun_cmd, env))
            tor.append(wall_time(torch_cmd, env))
    d, t = statistics.median(dry), statistics.median(tor)
    print(f"train.py --dryrun: {d:.3f}s  import torch: {t:.3f}s  ratio: {d / t:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
