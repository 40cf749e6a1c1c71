"""Trainer: train.py end to end, exact iteration count, hooks, validation, gradient accumulation, clear errors."""

import os
import subprocess
import sys

import pytest
import torch

from fastgen.callbacks.callback import Callback
from fastgen.configs.experiments.Toy import config_kd, config_sft
from fastgen.trainer import Trainer, resolve_grad_accum_rounds
from fastgen.utils import instantiate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Recorder(Callback):
    """Records the hook calls the trainer makes."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def on_training_step_end(self, model, data=None, outputs=None, loss_map=None, iteration=0, **kw):
        self.calls.append(("step_end", iteration, float(loss_map["total_loss"])))

    def on_training_accum_step_begin(self, model, data=None, iteration=0, accum_round=0, **kw):
        self.calls.append(("accum", iteration, accum_round))

    def on_optimizer_step_begin(self, model, iteration=0, **kw):
        self.calls.append(("optimizer", iteration))

    def on_validation_begin(self, model, iteration=0, **kw):
        self.calls.append(("validation", iteration))

    def on_save_checkpoint_success(self, model, iteration=0, **kw):
        self.calls.append(("saved", iteration))



def tiny(config, max_iter, **trainer):
    config.model.net.hidden_dim, config.model.net.num_layers = 16, 1
    config.trainer.callbacks = {}
    config.trainer.max_iter = max_iter
    config.trainer.logging_iter = 2
    for key, value in trainer.items():
        setattr(config.trainer, key, value)
    return config


def run(config, recorder=None, seed=0):
    """Train; with `recorder`, its hook calls are copied into it (configs deep-copy what they are given)."""
    if recorder is not None:
        config.trainer.callbacks = {"recorder": Recorder()}
    torch.manual_seed(seed)
    model = instantiate(config.model_class, config=config.model)
    trainer = Trainer(config)
    trainer.run(model)
    if recorder is not None:
        recorder.calls = trainer.callbacks["recorder"].calls
    return model


def test_train_py_writes_checkpoints_and_config(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FASTGEN_OUTPUT_ROOT": str(tmp_path)}
    cmd = [sys.executable, "train.py", "--config=fastgen/configs/experiments/Toy/config_sft.py", "-",
           "trainer.max_iter=20", "trainer.save_ckpt_iter=10", "trainer.logging_iter=5", "model.net.hidden_dim=16"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "fastgen" / "toy" / "sft_ring8"
    assert (run_dir / "config.yaml").is_file()
    assert sorted(os.listdir(run_dir / "checkpoints")) == ["0000010.pth", "0000020.pth"]
    state = torch.load(run_dir / "checkpoints" / "0000020.pth", weights_only=True)
    assert state["iteration"] == 20 and state["data"] == {"train": 20 * 256} and state["world_size"] == 1
    assert set(state["model"]) == {"net"} and set(state["optimizer"]) == {"net"} and len(state["rng"]) == 1
    assert "hidden_dim: 16" in state["config"]
    assert "iter 20/20" in proc.stdout + proc.stderr


def test_exact_iterations_hooks_validation_and_checkpoints(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path))
    config = tiny(config_sft.create_config(), 6, save_ckpt_iter=4, validation_iter=3)
    config.dataloader_val = config.dataloader_train
    recorder = Recorder()
    run(config, recorder)
    steps = [c[1] for c in recorder.calls if c[0] == "step_end"]
    assert steps == [1, 2, 3, 4, 5, 6]  # exactly max_iter iterations, numbered 1..max_iter
    assert [c for c in recorder.calls if c[0] in ("validation", "saved")] == [
        ("validation", 0), ("validation", 3), ("saved", 4), ("validation", 6), ("saved", 6)]
    assert [c for c in recorder.calls if c[0] == "optimizer"] == [("optimizer", i) for i in range(1, 7)]
    # resuming a finished run trains nothing more
    recorder2 = Recorder()
    run(config, recorder2)
    assert [c for c in recorder2.calls if c[0] == "step_end"] == []


def test_validation_does_not_change_the_training_trajectory(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path / "a"))
    plain = run(tiny(config_sft.create_config(), 5, resume=False))
    monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path / "b"))
    config = tiny(config_sft.create_config(), 5, resume=False, validation_iter=2)
    config.dataloader_val = config.dataloader_train
    validated = run(config)
    for a, b in zip(plain.net.parameters(), validated.net.parameters()):
        assert torch.equal(a, b)


def kd_config(tmp_path, batch_size, max_iter, **trainer):
    config = tiny(config_kd.create_config(), max_iter, resume=False, **trainer)
    config.dataloader_train.path = str(tmp_path / "pairs.safetensors")
    config.dataloader_train.num_pairs = 64
    config.dataloader_train.batch_size = batch_size
    return config


def test_gradient_accumulation_matches_the_full_batch(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path))
    full_recorder, accum_recorder = Recorder(), Recorder()
    full = run(kd_config(tmp_path, 8, 3), full_recorder)
    accum = run(kd_config(tmp_path, 4, 3, batch_size_global=8), accum_recorder)
    assert [c[2] for c in accum_recorder.calls if c[0] == "accum"] == [0, 1] * 3
    for a, b in zip(full.net.parameters(), accum.net.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    full_losses = [c[2] for c in full_recorder.calls if c[0] == "step_end"]
    accum_losses = [c[2] for c in accum_recorder.calls if c[0] == "step_end"]
    assert full_losses == pytest.approx(accum_losses, rel=1e-5)
    # and the optimizer really moved the weights
    init = instantiate(kd_config(tmp_path, 8, 3).model_class, config=kd_config(tmp_path, 8, 3).model)
    assert not all(torch.equal(a, b) for a, b in zip(init.net.parameters(), full.net.parameters()))


def test_grad_accum_rounds_from_global_batch():
    assert resolve_grad_accum_rounds(None, 4, 1, 3) == 3
    assert resolve_grad_accum_rounds(64, 4, 2) == 8
    with pytest.raises(ValueError, match="multiple of dataloader_train.batch_size x world_size = 4 x 2 = 8"):
        resolve_grad_accum_rounds(12, 4, 2)


def test_wrong_data_path_gives_a_clear_error(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FASTGEN_OUTPUT_ROOT": str(tmp_path)}
    missing = tmp_path / "no_such_dir" / "pairs.safetensors"
    cmd = [sys.executable, "train.py", "--config=fastgen/configs/experiments/Toy/config_kd.py", "-",
           f"dataloader_train.path={missing}", "dataloader_train.generate_if_missing=false", "trainer.max_iter=2"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert f"KD data not found at {missing}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_loss_meter_averages_each_key_over_the_iterations_that_reported_it():
    from fastgen.trainer import _LossMeter

    meter = _LossMeter()
    meter.add({"vsd_loss": torch.tensor(2.0), "total_loss": torch.tensor(2.0)})  # generator iteration
    meter.add({"fake_score_loss": torch.tensor(1.0), "total_loss": torch.tensor(1.0)})  # critic iteration
    meter.add({"fake_score_loss": torch.tensor(3.0), "total_loss": torch.tensor(3.0), "note": "skipped"})
    means = meter.pop()
    assert list(means) == ["total_loss", "fake_score_loss", "vsd_loss"]
    assert means == {"total_loss": 2.0, "fake_score_loss": 2.0, "vsd_loss": 2.0}
    assert meter.pop() == {}


class ValStepCounter(Callback):
    def __init__(self):
        super().__init__()
        self.passes = []

    def on_validation_begin(self, model, iteration=0, **kw):
        self.passes.append(0)

    def on_validation_step_end(self, model, data=None, outputs=None, loss_map=None, iteration=0, **kw):
        self.passes[-1] += 1


def test_global_vars_val_runs_one_pass_per_entry(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path))
    config = tiny(config_sft.create_config(), 1, global_vars={"MAX_VAL_STEPS": 3},
                  global_vars_val=[None, {"MAX_VAL_STEPS": 1}])
    config.trainer.callbacks = {"counter": ValStepCounter()}
    model = instantiate(config.model_class, config=config.model)
    model.on_train_begin()
    trainer = Trainer(config)
    trainer.val_loader = trainer.build_loader(config.dataloader_train, None)
    full, short = trainer.validate(model, 0)
    assert trainer.callbacks["counter"].passes == [3, 1]  # trainer.global_vars, then the entry's override
    # each pass starts at the stream's start with the same seed: the 1-batch pass is the first batch alone
    assert short == trainer.validation_pass(model, 0, {"MAX_VAL_STEPS": 1})
    assert full == trainer.validation_pass(model, 0, {"MAX_VAL_STEPS": 3}) and full != short


@pytest.mark.parametrize("kind", ["wall", "cpu"])
def test_max_minutes_stops_after_the_iteration_that_reaches_the_budget(tmp_path, monkeypatch, one_thread, kind):
    """A fake clock that advances 10 s per iteration: a 0.5-minute budget ends the loop after iteration 3 (elapsed
    30 s), with a checkpoint there, although max_iter is 50. The "cpu" clock is the process's CPU time (one torch
    thread here, so it is not divided); the other clock stands still, so only the chosen one can stop the run."""
    import fastgen.trainer as trainer_module

    monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path))
    clock = {"now": 0.0}
    moving, still = ("perf_counter", "process_time") if kind == "wall" else ("process_time", "perf_counter")
    monkeypatch.setattr(trainer_module.time, moving, lambda: clock["now"])
    monkeypatch.setattr(trainer_module.time, still, lambda: 0.0)

    class Tick(Recorder):
        def on_training_step_end(self, model, data=None, outputs=None, loss_map=None, iteration=0, **kw):
            clock["now"] += 10.0
            super().on_training_step_end(model, loss_map=loss_map, iteration=iteration)

    config = tiny(config_sft.create_config(), 50, save_ckpt_iter=100, max_minutes=0.5, max_minutes_clock=kind)
    config.trainer.callbacks = {"recorder": Tick()}
    torch.manual_seed(0)
    trainer = Trainer(config)
    trainer.run(instantiate(config.model_class, config=config.model))
    calls = trainer.callbacks["recorder"].calls
    assert [c[1] for c in calls if c[0] == "step_end"] == [1, 2, 3]
    assert [c for c in calls if c[0] == "saved"] == [("saved", 3)]
