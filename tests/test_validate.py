"""Config values are checked when the config resolves, so `train.py --dryrun` refuses them: one line, exit 2."""

from __future__ import annotations

import importlib.util
import os

import pytest
from _config_files import REPO

from fastgen.cli import run_cli

CONFIG = "fastgen/configs/experiments/EDM/config_dmd2_test.py"  # dataloader_train.batch_size = 64


def _train_main():
    spec = importlib.util.spec_from_file_location("fastgen_train_entry", REPO / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


TRAIN_MAIN = _train_main()


def dryrun(overrides, capsys, monkeypatch, tmp_path, world=None):
    monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path / "out"))
    if world is not None:
        monkeypatch.setenv("WORLD_SIZE", str(world))
    code = run_cli(TRAIN_MAIN, [f"--config={CONFIG}", "--dryrun", "-", *overrides])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("overrides, message", [
    (["trainer.save_ckpt_iter=0"], "trainer.save_ckpt_iter=0 must be a positive integer"),
    (["trainer.logging_iter=-5"], "trainer.logging_iter=-5 must be a positive integer"),
    (["trainer.validation_iter=0"], "trainer.validation_iter=0 must be a positive integer"),
    (["trainer.max_iter=0"], "trainer.max_iter=0 must be a positive integer"),
    (["trainer.max_iter=-3"], "trainer.max_iter=-3 must be a positive integer"),
    (["trainer.max_minutes=0"], "trainer.max_minutes=0.0 must be a positive number of minutes or null"),
    (["trainer.max_minutes_clock=gpu"], "trainer.max_minutes_clock='gpu' is not one of wall, cpu"),
    (["model.gan_loss_weight_disc=-1"],
     "model.gan_loss_weight_disc=-1.0 must be a number >= 0 or null (null: 1 on teacher features, 0.01 on fake-score "
     "features)"),
    (["dataloader_train.batch_size=0"], "dataloader_train.batch_size=0 must be a positive integer"),
    (["log_config.wandb_mode=onlin"], "log_config.wandb_mode='onlin' is not one of online, offline, disabled"),
    (["model.net_optimizer.optim_type=sgd"], "model.net_optimizer.optim_type='sgd' is not one of adam, adamw, radam"),
    (["model.fake_score_scheduler._target_=fastgen.utils.lr_scheduler.LambdaNope"],
     "model.fake_score_scheduler: unknown scheduler 'fastgen.utils.lr_scheduler.LambdaNope'"),
    (["model.device=cuda"], "model.device='cuda' but no CUDA GPU is available here; use model.device=auto"),
    (["model.device=tpu"], "model.device='tpu' is not supported; expected one of auto, cpu, cuda"),
    (["model.use_ema=3"], "model.use_ema=3 must be true, false or a list of names starting with 'ema'"),
    (["trainer.global_vars={MAX_VAL_STEPZ: 2}"], "trainer.global_vars.MAX_VAL_STEPZ is not a global variable"),
    (["trainer.batch_size_global=257"],
     "trainer.batch_size_global=257 splits exactly only into micro-batches of 1 per process "
     "(dataloader_train.batch_size=64, 1 process(es), 257 accumulation rounds: far slower than micro-batches of 64); "
     "choose a global batch such as 256 or 320"),
])
def test_bad_values_fail_the_dryrun(overrides, message, capsys, monkeypatch, tmp_path):
    code, out, err = dryrun(overrides, capsys, monkeypatch, tmp_path)
    assert code == 2
    assert out == ""
    assert err.strip().splitlines()[-1] == f"error: {message}" or f"error: {message}" in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_uneven_global_batch_on_two_processes_names_the_split(capsys, monkeypatch, tmp_path):
    # per rank 129 = 3 x 43: micro-batch 43 of a possible 64 is accepted, with a warning naming the split
    code, out, err = dryrun(["trainer.batch_size_global=258", "trainer.ddp=true"], capsys, monkeypatch, tmp_path, 2)
    assert code == 0, err
    assert "batch_size: 43" in out and "grad_accum_rounds: 3" in out
    assert "dataloader_train.batch_size 64 -> 43" in err
    code, out, err = dryrun(["trainer.batch_size_global=262", "trainer.ddp=true"], capsys, monkeypatch, tmp_path, 2)
    assert code == 2 and "micro-batches of 1 per process" in err and "such as 256 or 384" in err


def test_allowed_values_match_their_users():
    from fastgen.callbacks.wandb import WANDB_MODES
    from fastgen.configs import validate
    from fastgen.methods.model import DEVICE_TYPES
    from fastgen.trainer import BUDGET_CLOCKS

    assert validate.WANDB_MODES == WANDB_MODES and validate.DEVICE_TYPES == DEVICE_TYPES
    assert validate.BUDGET_CLOCKS == BUDGET_CLOCKS
    from fastgen.methods.consistency_model.mean_flow import PATH_SCHEDULES

    assert validate.PATH_SCHEDULES == PATH_SCHEDULES


def test_meanflow_path_schedule_is_checked_at_resolve(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path / "out"))
    config = "--config=fastgen/configs/experiments/FashionMNIST/config_mean_flow.py"
    assert run_cli(TRAIN_MAIN, [config, "--dryrun", "-", "model.path_schedule=sd"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == ("error: model.path_schedule='sd' must be null (the network's own schedule) "
                                            "or one of ['edm', 'rf', 'trig'] (schedules whose SNR inverse has a "
                                            "closed form)")
    assert run_cli(TRAIN_MAIN, [config, "--dryrun", "-", "model.path_schedule=trig"]) == 0
    assert "path_schedule: trig" in capsys.readouterr().out and not (tmp_path / "out").exists()


def test_saved_config_yaml_is_a_valid_config(capsys, monkeypatch, tmp_path):
    # a finished run's record reruns (or resumes) as `--config=.../config.yaml`, and resolves to the same config
    monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path / "out"))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    toy = "fastgen/configs/experiments/Toy/config_sft.py"
    overrides = ["-", "trainer.max_iter=1", "trainer.batch_size_global=96", "log_config.name=first", "trainer.callbacks={}"]
    assert run_cli(TRAIN_MAIN, [f"--config={toy}", *overrides]) == 0, capsys.readouterr().err
    saved = tmp_path / "out/fastgen/toy/first/config.yaml"
    assert saved.is_file()
    capsys.readouterr()
    assert run_cli(TRAIN_MAIN, [f"--config={toy}", "--dryrun", *overrides]) == 0
    from_py = capsys.readouterr().out
    assert run_cli(TRAIN_MAIN, [f"--config={saved}", "--dryrun"]) == 0
    assert capsys.readouterr().out == from_py
    # resuming from the record: the run continues at its last checkpoint
    assert run_cli(TRAIN_MAIN, [f"--config={saved}", "-", "trainer.max_iter=2"]) == 0
    assert "resumed from" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path / "out/fastgen/toy/first/checkpoints")) == ["0000001.pth", "0000002.pth"]
