"""benchmarks/fashion_mnist_diagnose.py: the per-source row is the FID split, precision/recall and class accuracy of
its features (checked on synthetic features), and a tiny end-to-end run on an IDX set made here writes one row per
source with the numbers it printed."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
import torch
from test_demo import make_idx_dataset

from fastgen.metrics import batch_stats, frechet_distance, precision_recall

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import fashion_mnist_diagnose as diag  # noqa: E402


def test_diagnose_row_values():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(300, 6))
    fake = rng.normal(loc=0.3, scale=0.7, size=(200, 6))
    ref_mu, ref_sigma = batch_stats(real)
    classes = np.arange(200) % 10
    preds = classes.copy()
    preds[:50] = (preds[:50] + 1) % 10
    row = diag.diagnose(fake, preds, classes, real, ref_mu, ref_sigma, teacher_features=fake)
    mu, sigma = batch_stats(fake)
    assert row["fid"] == pytest.approx(frechet_distance(mu, sigma, ref_mu, ref_sigma), rel=1e-12)
    assert row["mean_term"] == pytest.approx(float(((mu - ref_mu) ** 2).sum()), rel=1e-12)
    assert row["mean_term"] + row["cov_term"] == pytest.approx(row["fid"], rel=1e-12)
    assert row["trace_cov"] == pytest.approx(float(np.trace(sigma)), rel=1e-12)
    assert row["class_accuracy"] == 0.75
    assert {k: row[k] for k in ("precision", "recall")} == precision_recall(real, fake)
    assert abs(row["fid_to_teacher"]) < 1e-6
    assert "fid_to_teacher" not in diag.diagnose(fake, preds, classes, real, ref_mu, ref_sigma)


def test_tiny_run_writes_one_row_per_source(tmp_path, monkeypatch, one_thread, capsys):
    from fastgen.demo.teacher import load_teacher_net

    monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path / "out"))
    data_root = make_idx_dataset(tmp_path / "data", n_train=8, n_test=20)
    ckpt = tmp_path / "run" / "checkpoints" / "0000010.pth"
    ckpt.parent.mkdir(parents=True)
    torch.save({"model": {"ema": load_teacher_net().state_dict()}, "iteration": 10}, ckpt)
    out = tmp_path / "diag.md"
    args = ["--num_samples", "20", "--batch_size", "10", "--teacher_nfe", "3", "--sde_steps", "2", "4",
            "--data_root", data_root, "--num_threads", "1", "--checkpoints", str(ckpt), "--out", str(out)]
    assert diag.main(args) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    names = list(result["rows"])
    assert names == ["teacher, ODE (Heun, 3 NFE)", "teacher, reverse SDE (ancestral, 2 NFE)",
                     "teacher, reverse SDE (ancestral, 4 NFE)", "run/checkpoints/0000010.pth (1 step)"]
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[diagnose] ")]
    assert len(printed) == 4
    text = out.read_text()
    for name, row in result["rows"].items():
        assert np.isfinite(row["fid"]) and row["fid"] > 0 and 0 <= row["recall"] <= 1
        assert f"| {name} | {row['fid']:.2f} | {row['mean_term']:.2f} |" in text
        assert (name == names[0]) == ("fid_to_teacher" not in row)
    # the SDE rows are other samples than the ODE's, and another step count gives other samples again
    assert len({round(row["fid"], 6) for row in result["rows"].values()}) == 4


def test_bad_input_fails_at_once_in_one_line(tmp_path):
    """Arguments, a missing file, a missing network entry and another architecture are refused before any sampling."""
    from fastgen.cli import UsageError, run_cli

    with pytest.raises(UsageError, match="--num_samples must be >= 4"):
        diag.main(["--num_samples", "2"])
    data_root = make_idx_dataset(tmp_path / "data", n_train=8, n_test=8)
    wrong_net = tmp_path / "other.pth"
    torch.save({"model": {"ema": {"w": torch.zeros(2)}}, "iteration": 5}, wrong_net)
    cases = [(["--checkpoints", str(tmp_path / "nope.pth")], "does not exist"),
             (["--checkpoints", str(wrong_net), "--ema_key", "net"], r"--ema_key 'net' is not in .* it holds \['ema'\]"),
             (["--checkpoints", str(wrong_net)], r"not the teacher's architecture \(missing keys \[")]
    for extra, message in cases:
        with pytest.raises(UsageError, match=message):
            diag.main(["--data_root", data_root, "--num_threads", "1", *extra])
    assert run_cli(diag.main, ["--checkpoints", str(tmp_path / "nope.pth"), "--data_root", data_root]) == 2
