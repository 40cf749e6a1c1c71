"""benchmarks/fashion_mnist_table.py: a 2-method, 1-seed, 2-iteration run (CM, then TCM from CM's checkpoint) on a
tiny IDX set made here; the Markdown rows carry exactly the numbers the run computed (median/range of its per-seed
FIDs), all finite. KD's pair file and MeanFlow's sampler are checked on their own (no training)."""

from __future__ import annotations

import json
import math
import os
import re
import sys

import pytest
import yaml
from test_demo import make_idx_dataset

from fastgen.cli import UsageError

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import fashion_mnist_table as table  # noqa: E402


def test_two_methods_one_seed_tiny_budget(tmp_path, monkeypatch, one_thread, capsys):
    monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path / "out"))
    data_root = make_idx_dataset(tmp_path / "data", n_train=64, n_test=20)
    out = tmp_path / "table.md"
    written = []  # every table written: the one after the first run (in progress), then the final one
    real_write = table.write_table
    monkeypatch.setattr(table, "write_table", lambda result, *a: written.append(result) or real_write(result, *a))
    code = table.main(["--methods", "TCM", "CM", "--seeds", "3", "--minutes", "5", "--clock", "cpu", "--max_iters", "2",
                       "--num_fid_samples", "20", "--fid_batch_size", "10", "--teacher_nfe", "2", "--batch_size", "4",
                       "--data_root", data_root, "--num_threads", "1", "--out", str(out), "--note", "test run"])
    assert code == 0
    result = json.loads(out.with_suffix(".json").read_text())
    text = out.read_text()
    progress = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[table] run ")]
    # the stage-1 row runs first whatever the order given, and TCM starts from its checkpoint
    assert len(progress) == 2 and "CM seed 3" in progress[0] and "TCM seed 3" in progress[1]
    assert [r["init"] for r in result["runs"]] == ["teacher", "CM seed 3 checkpoint (iteration 2)"]
    assert "- TCM starts from: CM seed 3 checkpoint (iteration 2)" in text
    assert result["kd_pairs"] is None and "Not run here" not in text
    # after run 1 the table so far was written (CM only, marked in progress); the final one is complete
    assert [list(r["rows"]) for r in written] == [["CM"], ["CM", "TCM"]]
    assert [r["complete"] for r in written] == [False, True] and "IN PROGRESS" not in text
    assert "IN PROGRESS: 1 of 2 runs done" in table.render(written[0])
    assert result["settings"]["clock"] == "cpu" and "(CPU min = CPU time of the run's process" in text
    assert result["command"].startswith("python benchmarks/fashion_mnist_table.py --methods TCM CM --seeds 3 ")

    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| ([^|]+?) \| ([^|]+?) \|", text, re.M)}
    start_row = "start: the teacher's weights as the student (iteration 0)"
    assert list(rows)[1:] == ["teacher", start_row, "CM", "TCM", "floor (real train images)"]
    # the start row: the teacher's own weights through the students' 1-step sampler, sampled again here
    from fastgen.demo.evaluate import student_sampler
    from fastgen.demo.teacher import load_teacher_net
    from fastgen.metrics import load_feature_extractor, load_stats
    from fastgen.metrics.feature_net import reference_stats_path

    common = dict(feature_net=load_feature_extractor("fmnist"), shape=(1, 32, 32),
                  ref_stats=load_stats(str(reference_stats_path("test"))))
    args = table.parse_args(["--num_fid_samples", "20", "--fid_batch_size", "10"])
    one_step = table.fid_of(student_sampler(load_teacher_net(), steps=1, t_list=(80.0, 0.0)), args, common)
    assert result["start"]["fid_1step"] == pytest.approx(one_step, rel=1e-6)
    assert float(rows[start_row]) == pytest.approx(one_step, abs=0.005)
    assert math.isfinite(result["start"]["fid_2step"]) and result["start"]["fid_2step"] != one_step
    assert "**test run**" in text
    assert rows["teacher"].startswith(f"{result['teacher']['fid']:.2f} (2 NFE")
    assert float(rows["floor (real train images)"]) == pytest.approx(result["floor"], abs=0.005)
    for method in ("CM", "TCM"):
        (run,) = [r for r in result["runs"] if r["method"] == method]
        assert run["seed"] == 3 and run["iterations"] == 2  # the iteration cap ended it, not the 5 minutes
        row = result["rows"][method]
        for key in ("fid_1step", "fid_2step"):
            assert math.isfinite(run[key]) and run[key] > 0
            assert row[key] == {"median": run[key], "min": run[key], "max": run[key], "values": [run[key]]}
        assert float(rows[method]) == pytest.approx(row["fid_1step"]["median"], abs=0.005)
        assert 0 < run["cpu_minutes"] and math.isfinite(run["minutes"])
        line = next(x for x in text.splitlines() if x.startswith(f"| {method} |"))
        assert line.split(" | ")[2] == f"{row['fid_2step']['median']:.2f}"
    # two different students and a teacher: not all the same number
    assert len({result["teacher"]["fid"], *(r["fid_1step"] for r in result["runs"])}) == 3
    assert result["machine"]["torch_threads"] == 1 and result["machine"]["cpu_capability"]
    # a table seed is the data order's seed too (KD's only randomness)
    (saved,) = list((tmp_path / "out").rglob("CM_seed3/config.yaml"))
    saved_config = yaml.safe_load(saved.read_text())
    assert saved_config["dataloader_train"]["seed"] == 3 and saved_config["trainer"]["seed"] == 3

    # --combine: the same table again as "seed 4" (other FIDs) merges into one table of both seeds
    other = json.loads(json.dumps(result))
    for run in other["runs"]:
        run["seed"], run["fid_1step"] = 4, run["fid_1step"] + 10.0
    other_path = tmp_path / "other.json"
    other_path.write_text(json.dumps(other))
    combined_md = tmp_path / "combined.md"
    assert table.main(["--combine", str(out.with_suffix(".json")), str(other_path), "--out", str(combined_md)]) == 0
    combined = json.loads(combined_md.with_suffix(".json").read_text())
    cm = [r["fid_1step"] for r in result["runs"] if r["method"] == "CM"][0]
    assert combined["rows"]["CM"]["fid_1step"] == {"median": cm + 5.0, "min": cm, "max": cm + 10.0,
                                                   "values": [cm, cm + 10.0]}
    assert combined["settings"]["seeds"] == [3, 4] and combined["complete"]
    assert f"| CM | {cm + 5.0:.2f} |" in combined_md.read_text() and "| 3, 4 | 5 CPU min" in combined_md.read_text()
    # each run records its budget; a row's seeds must share one, rows may differ (the table then shows each row's)
    assert all(r["budget"] == {"minutes": 5, "clock": "cpu", "max_iters": 2} for r in result["runs"])
    assert "training budget per run: 5 CPU min or 2 it" in text and "| 3 | 5 CPU min or 2 it | 2 |" in text
    for run in other["runs"]:
        run["budget"]["minutes"] = 7
    other_path.write_text(json.dumps(other))
    with pytest.raises(UsageError, match=r"CM: its seeds ran under different budgets \['5 CPU min or 2 it', "
                                         r"'7 CPU min or 2 it'\]"):
        table.main(["--combine", str(out.with_suffix(".json")), str(other_path), "--out", str(combined_md)])
    # a table written before runs recorded their budget (its settings say it) joins with another row's budget
    legacy = json.loads(json.dumps(other))
    legacy["runs"] = [{k: v for k, v in r.items() if k != "budget"} for r in legacy["runs"] if r["method"] == "CM"]
    legacy["settings"].update(minutes=1000.0, max_iters=2400)
    del legacy["start"]  # nor had they a start row: the other table's is kept
    legacy_path = tmp_path / "legacy.json"
    legacy_path.write_text(json.dumps(legacy))
    only_tcm = json.loads(json.dumps(result))
    only_tcm["runs"] = [r for r in only_tcm["runs"] if r["method"] == "TCM"]
    tcm_path = tmp_path / "tcm.json"
    tcm_path.write_text(json.dumps(only_tcm))
    assert table.main(["--combine", str(legacy_path), str(tcm_path), "--out", str(combined_md)]) == 0
    mixed = json.loads(combined_md.with_suffix(".json").read_text())
    assert mixed["rows"]["CM"]["budget"] == {"minutes": 1000.0, "clock": "cpu", "max_iters": 2400}
    assert mixed["rows"]["TCM"]["budget"] == {"minutes": 5, "clock": "cpu", "max_iters": 2}
    assert mixed["settings"]["minutes"] is None and mixed["start"] == result["start"]
    mixed_text = combined_md.read_text()
    assert "the `budget` column (rows differ)" in mixed_text
    assert "| 1000 CPU min or 2400 it |" in mixed_text and "| 5 CPU min or 2 it |" in mixed_text
    other["start"] = {"fid_1step": 1.0, "fid_2step": 2.0}
    other_path.write_text(json.dumps(other))
    with pytest.raises(UsageError, match=r"the tables differ in \['start'\]"):
        table.main(["--combine", str(out.with_suffix(".json")), str(other_path), "--out", str(combined_md)])
    other["start"] = result["start"]
    other["settings"]["num_fid_samples"] = 7
    other_path.write_text(json.dumps(other))
    with pytest.raises(UsageError, match=r"the tables differ in \['num_fid_samples'\]"):
        table.main(["--combine", str(out.with_suffix(".json")), str(other_path), "--out", str(combined_md)])
    with pytest.raises(UsageError, match="appears twice"):
        table.main(["--combine", str(out.with_suffix(".json")), str(out.with_suffix(".json")), "--out", str(combined_md)])

    # the teacher's FID was cached under its exact setup; a second table of that setup reads it instead of sampling
    (cached,) = list((tmp_path / "out").rglob("table_teacher_fid/*.json"))
    assert json.loads(cached.read_text()) == {"fid": result["teacher"]["fid"]}
    cached.write_text(json.dumps({"fid": 123.0}))  # a number sampling cannot give: proves it is read, not recomputed
    again = tmp_path / "again.md"
    common = ["--methods", "CM", "--minutes", "5", "--clock", "cpu", "--max_iters", "1",
              "--num_fid_samples", "20", "--fid_batch_size", "10", "--batch_size", "4", "--data_root", data_root,
              "--num_threads", "1", "--out", str(again)]
    assert table.main([*common, "--seeds", "5", "--teacher_nfe", "2"]) == 0
    assert json.loads(again.with_suffix(".json").read_text())["teacher"]["fid"] == 123.0
    assert f"[table] teacher FID: reusing {cached}" in capsys.readouterr().out
    assert table.main([*common, "--seeds", "6", "--teacher_nfe", "3"]) == 0  # another setup: its own entry, sampled
    assert json.loads(again.with_suffix(".json").read_text())["teacher"]["fid"] != 123.0
    assert len(list((tmp_path / "out").rglob("table_teacher_fid/*.json"))) == 2
    cached.write_text("{")  # a cache file cut short: one line naming it and the fix, nothing trained
    with pytest.raises(UsageError, match=r"teacher FID cache .* is unreadable .* delete it"):
        table.main([*common, "--seeds", "7", "--teacher_nfe", "2"])


def test_every_reference_row_is_configured():
    assert list(table.METHODS) == ["KD", "DMD2", "DMD2+GAN", "f-distill", "LADD", "SiD", "CM", "CD", "sCT", "sCD", "TCM",
                                   "MeanFlow"]
    assert table.NOT_CONFIGURED == {}
    from fastgen.demo.pipeline import CONFIG_DIR

    for name, spec in table.METHODS.items():
        assert os.path.isfile(os.path.join(CONFIG_DIR, spec.config)), name
        assert all(list(table.METHODS).index(s) < list(table.METHODS).index(name) for s in spec.stage1)


def test_kd_pairs_made_once_from_the_teacher(tmp_path, monkeypatch, one_thread, capsys):
    """The pair file holds the teacher's Heun samples of its noise (class i % 10), and a second table reuses it."""
    import torch

    from fastgen.datasets.kd_dataset import load_shard
    from fastgen.demo.teacher import load_teacher_net

    monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path))
    args = table.parse_args(["--kd_pairs", "3", "--teacher_nfe", "2"])
    made = table.make_kd_pairs(args)
    assert made["path"].startswith(str(tmp_path)) and not made["reused"] and made["minutes"] >= 0
    shard = load_shard(made["path"])
    assert shard["condition"].argmax(1).tolist() == [0, 1, 2] and shard["t_list"].tolist() == [80.0, 0.0]
    expected = load_teacher_net().sample(shard["noise"], condition=shard["condition"], num_steps=2)
    torch.testing.assert_close(shard["real"], expected)
    again = table.make_kd_pairs(args)
    assert again["reused"] and again["path"] == made["path"] and "reusing" in capsys.readouterr().out
    overrides = table.method_overrides(args, "KD", "/no/images", made["path"], None)
    assert overrides == [f"dataloader_train.path={made['path']}"]  # no image-loader keys for the pair loader


def test_meanflow_sampler_starts_as_the_teacher(one_thread):
    """MeanFlow's own 1-step sampler (x - 80 u(x, 80, 0)) on the freshly built student (the teacher's weights, zero
    r-map) gives the teacher's one-step denoising, i.e. the x0 sampler's output for the same network."""
    import torch

    from fastgen.configs.config_utils import import_config_from_python_file
    from fastgen.demo.pipeline import CONFIG_DIR
    from fastgen.utils import instantiate

    config = import_config_from_python_file(os.path.join(CONFIG_DIR, "config_mean_flow.py"))
    config.model.device = "cpu"
    model = instantiate(config.model_class, config=config.model)
    noise, condition = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(0)), torch.eye(10)[:3]
    mean_flow = table.sampler_for("MeanFlow", model, 1, seed=0)(noise, condition)
    with torch.no_grad():
        teacher = model.teacher(noise * 80.0, torch.full((3,), 80.0, dtype=torch.float64), condition=condition)
    torch.testing.assert_close(mean_flow, teacher, atol=1e-4, rtol=0)
    assert mean_flow.std() > 0.1


def test_spread_and_bad_method():
    assert table.spread([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "values": [3.0, 1.0, 2.0]}
    from fastgen.cli import UsageError

    with pytest.raises(UsageError, match="unknown"):
        table.parse_args(["--methods", "NoSuchMethod"])
    with pytest.raises(UsageError, match="kd_pairs"):
        table.parse_args(["--kd_pairs", "0"])
    assert table.stage1_checkpoint("TCM", 1, {("CM", 0): (5, "a.pth"), ("CD", 1): (5, "b.pth")}) == (None, "teacher")
    assert table.stage1_checkpoint("TCM", 0, {("CM", 0): (5, "a.pth")}) == ("a.pth", "CM seed 0 checkpoint (iteration 5)")
