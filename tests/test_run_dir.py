"""Run folders: one live run per folder, no fresh run over old checkpoints, partial saves removed, writability."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from _config_files import REPO

from fastgen.cli import run_cli
from fastgen.utils import run_dir
from fastgen.utils.run_dir import RunFolderError, prepare_run_folder

CONFIG = "fastgen/configs/experiments/EDM/config_dmd2_test.py"  # run folder {root}/fastgen/cifar10/debug


def _train_main():
    spec = importlib.util.spec_from_file_location("fastgen_train_entry_rundir", REPO / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture
def train(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    main = _train_main()

    def call(*overrides):
        code = run_cli(main, [f"--config={CONFIG}", "-", "trainer.max_iter=1", *overrides])
        return code, capsys.readouterr().err

    return call


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_fresh_run_into_old_checkpoints_is_refused(train, tmp_path):
    folder = tmp_path / "fastgen/cifar10/debug"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints/0000500.pth").write_bytes(b"old run")
    (folder / "config.yaml").write_text("the old run's record\n")
    code, err = train("trainer.resume=False")
    assert code == 2
    assert err.strip().splitlines()[-1] == (
        f"error: {folder}/checkpoints already holds 1 checkpoint(s) of another run (newest: 0000500.pth) and "
        f"trainer.resume=False; start the new run in its own folder with log_config.name=NEW_NAME, or continue "
        f"that run with trainer.resume=True")
    assert (folder / "config.yaml").read_text() == "the old run's record\n"  # nothing saved is lost
    assert (folder / "checkpoints/0000500.pth").read_bytes() == b"old run"
    assert not (folder / run_dir.LOCK_FILE).exists()  # a refused run leaves no lock behind


def test_live_lock_refuses_a_second_run(train, tmp_path):
    folder = tmp_path / "fastgen/cifar10/debug"
    folder.mkdir(parents=True)
    owner = {"host": os.uname().nodename, "pid": os.getppid(), "started": 0}  # a process that is alive
    (folder / run_dir.LOCK_FILE).write_text(json.dumps(owner))
    code, err = train()
    assert code == 2
    assert f"error: {folder} is in use by another run (pid {os.getppid()} on {owner['host']}" in err
    assert "log_config.name=NEW_NAME, or delete the lock file" in err
    assert json.loads((folder / run_dir.LOCK_FILE).read_text()) == owner  # the live run keeps its lock


def test_stale_lock_is_taken_over_and_released(tmp_path):
    folder, save_dir = tmp_path / "run", tmp_path / "run/checkpoints"
    folder.mkdir()
    (folder / run_dir.LOCK_FILE).write_text(json.dumps({"host": os.uname().nodename, "pid": _dead_pid()}))
    assert prepare_run_folder(str(folder), str(save_dir), resume=True) == []
    assert json.loads((folder / run_dir.LOCK_FILE).read_text())["pid"] == os.getpid()
    prepare_run_folder(str(folder), str(save_dir), resume=True)  # the same process may lock again (demo stages)
    run_dir.release_run_lock(str(folder))
    assert not (folder / run_dir.LOCK_FILE).exists()


def test_partial_saves_removed_complete_ones_kept(tmp_path):
    save_dir = tmp_path / "run/checkpoints"
    (save_dir / "0000020.tmp").mkdir(parents=True)  # DCP folder of a killed save
    (save_dir / "0000020.tmp/shard").write_bytes(b"x")
    (save_dir / ".0000030.pth.tmp4242").write_bytes(b"half")  # atomic_torch_save's temporary file
    (save_dir / "0000010.pth").write_bytes(b"complete")
    (save_dir / "0000010").mkdir()
    removed = prepare_run_folder(str(tmp_path / "run"), str(save_dir), resume=True)
    run_dir.release_run_lock(str(tmp_path / "run"))
    assert removed == [".0000030.pth.tmp4242", "0000020.tmp"]
    assert sorted(os.listdir(save_dir)) == ["0000010", "0000010.pth"]


def test_unwritable_checkpoint_folder_fails_before_training(tmp_path):
    (tmp_path / "blocker").write_text("a file where the checkpoint folder's parent should be")
    save_dir = tmp_path / "blocker/checkpoints"
    with pytest.raises(RunFolderError) as error:
        prepare_run_folder(str(tmp_path / "run"), str(save_dir), resume=True)
    assert str(error.value).startswith(f"checkpoint folder {save_dir} is not writable (")
    assert not (tmp_path / "run" / run_dir.LOCK_FILE).exists()


def test_writability_probe_leaves_no_folder_behind(tmp_path):
    run_dir.check_writable(str(tmp_path / "new/run/checkpoints"))
    assert os.listdir(tmp_path) == []
