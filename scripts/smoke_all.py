"""Run `train.py --smoke` on every shipped experiment config and print a pass/fail table (`make smoke`).

    python scripts/smoke_all.py [--filter SUBSTRING] [--jobs N]

Each config runs in its own process (as a user would run it), under its own temporary output root, with W&B off.
Exit code: 0 when every config passes, 1 otherwise (the failures' last error line is shown in the table).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def experiment_configs(filter_text: str = "") -> list[str]:
    root = REPO / "fastgen" / "configs" / "experiments"
    return sorted(str(p.relative_to(REPO)) for p in root.glob("*/config_*.py") if filter_text in str(p))


def run_one(config: str, tmp: str) -> tuple[str, bool, float, str]:
    env = {**os.environ, "TMPDIR": tmp, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "train.py", f"--config={config}", "--smoke", "--log_level", "WARNING"],
                            cwd=REPO, env=env, capture_output=True, text=True)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    detail = errors[-1] if errors else (result.stderr.strip().splitlines() or [""])[-1]
    return config, result.returncode == 0, time.perf_counter() - start, "" if result.returncode == 0 else detail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--filter", default="", help="only configs whose path contains this text")
    parser.add_argument("--jobs", type=int, default=1, help="configs run in parallel (default 1)")
    args = parser.parse_args(argv)
    configs = experiment_configs(args.filter)
    if not configs:
        print(f"no experiment config matches {args.filter!r}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="fastgen_smoke_all_") as tmp:
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            rows = list(pool.map(lambda c: run_one(c, tmp), configs))
    width = max(len(c) for c in configs)
    print(f"{'config':<{width}}  result  seconds")
    for config, ok, seconds, detail in rows:
        print(f"{config:<{width}}  {'pass' if ok else 'FAIL':<6}  {seconds:7.1f}  {detail}")
    failed = sum(not ok for _, ok, _, _ in rows)
    print(f"{len(rows) - failed}/{len(rows)} passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
