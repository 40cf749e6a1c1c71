"""benchmarks/fashion_mnist_table.py: a 2-method, 1-seed, 2-iteration run on a tiny IDX set made here; the Markdown
rows carry exactly the numbers the run computed (median/range of its per-seed FIDs), all finite."""

from __future__ import annotations

import json
import math
import os
import re
import sys

import pytest
from test_demo import make_idx_dataset

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import fashion_mnist_table as table  # noqa: E402


def test_two_methods_one_seed_tiny_budget(tmp_path, monkeypatch, one_thread, capsys):
    monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path / "out"))
    data_root = make_idx_dataset(tmp_path / "data", n_train=64, n_test=20)
    out = tmp_path / "table.md"
    code = table.main(["--methods", "DMD2", "sCD", "--seeds", "3", "--minutes", "5", "--max_iters", "2",
                       "--num_fid_samples", "20", "--fid_batch_size", "10", "--teacher_nfe", "2", "--batch_size", "4",
                       "--data_root", data_root, "--num_threads", "1", "--out", str(out), "--note", "test run"])
    assert code == 0
    result = json.loads(out.with_suffix(".json").read_text())
    text = out.read_text()
    progress = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[table] run ")]
    assert len(progress) == 2 and "DMD2 seed 3" in progress[0] and "sCD seed 3" in progress[1]

    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| ([^|]+?) \| ([^|]+?) \|", text, re.M)}
    assert list(rows)[1:] == ["teacher", "DMD2", "sCD", "floor (real train images)"]
    assert "**test run**" in text
    assert rows["teacher"].startswith(f"{result['teacher']['fid']:.2f} (2 NFE")
    assert float(rows["floor (real train images)"]) == pytest.approx(result["floor"], abs=0.005)
    for method in ("DMD2", "sCD"):
        (run,) = [r for r in result["runs"] if r["method"] == method]
        assert run["seed"] == 3 and run["iterations"] == 2  # the iteration cap ended it, not the 5 minutes
        row = result["rows"][method]
        for key in ("fid_1step", "fid_2step"):
            assert math.isfinite(run[key]) and run[key] > 0
            assert row[key] == {"median": run[key], "min": run[key], "max": run[key], "values": [run[key]]}
        assert float(rows[method]) == pytest.approx(row["fid_1step"]["median"], abs=0.005)
        line = next(x for x in text.splitlines() if x.startswith(f"| {method} |"))
        assert line.split(" | ")[2] == f"{row['fid_2step']['median']:.2f}"
    # two different students and a teacher: not all the same number
    assert len({result["teacher"]["fid"], *(r["fid_1step"] for r in result["runs"])}) == 3
    assert result["machine"]["torch_threads"] == 1 and result["machine"]["cpu_capability"]


def test_spread_and_bad_method():
    assert table.spread([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "values": [3.0, 1.0, 2.0]}
    from fastgen.cli import UsageError

    with pytest.raises(UsageError, match="unknown"):
        table.parse_args(["--methods", "NoSuchMethod"])
