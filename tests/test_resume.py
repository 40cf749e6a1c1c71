"""Reliability contract 4: a run killed with SIGKILL at a random moment and resumed ends bit-identical (CPU) to the
run that never stopped, even when the newest checkpoint is damaged (resume falls back to the previous one)."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from fastgen.configs.experiments.Toy import config_sft
from fastgen.utils import instantiate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# one thread: tiny networks on a shared CPU run ~10x faster than with competing OpenMP threads
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
MAX_ITER = 400
SAVE_EVERY = 20


def command(init_path):
    # the initial weights come from one file so that both runs start equal (the resume itself restores everything)
    return [sys.executable, "train.py", "--config=fastgen/configs/experiments/Toy/config_sft.py", "-",
            f"trainer.max_iter={MAX_ITER}", f"trainer.save_ckpt_iter={SAVE_EVERY}", "trainer.logging_iter=100",
            "model.net.hidden_dim=16", "model.net.num_layers=1", "dataloader_train.batch_size=32",
            f"model.pretrained_student_net_path={init_path}"]


def assert_equal_tree(a, b, where="state"):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where} keys differ"
        for key in a:
            assert_equal_tree(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for i, (x, y) in enumerate(zip(a, b)):
            assert_equal_tree(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.slow
def test_kill_9_and_resume_is_bit_identical(tmp_path):
    config = config_sft.create_config()
    config.model.net.hidden_dim, config.model.net.num_layers = 16, 1
    init_path = tmp_path / "init.pth"
    torch.manual_seed(123)
    torch.save(instantiate(config.model.net).state_dict(), init_path)
    cmd = command(init_path)

    root_a = tmp_path / "uninterrupted"
    proc = subprocess.run(cmd, cwd=REPO, env={**ENV, "FASTGEN_OUTPUT_ROOT": str(root_a)},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    root_b = tmp_path / "killed"
    env_b = {**ENV, "FASTGEN_OUTPUT_ROOT": str(root_b)}
    ckpt_dir = root_b / "fastgen" / "toy" / "sft_ring8" / "checkpoints"
    with open(tmp_path / "killed.log", "w") as log:
        victim = subprocess.Popen(cmd, cwd=REPO, env=env_b, stdout=log, stderr=subprocess.STDOUT)
        # wait for two checkpoints: on a loaded machine (e.g. beside another pytest-xdist worker) a kill soon after
        # the first one leaves only that one, and damaging it leaves nothing to fall back to
        deadline = time.time() + 300
        while time.time() < deadline and not (ckpt_dir.is_dir() and len(list(ckpt_dir.glob("*.pth"))) >= 2):
            time.sleep(0.01)
        delay = random.uniform(0.0, 1.0)
        time.sleep(delay)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
    saved = sorted(ckpt_dir.glob("*.pth"))
    final_name = f"{MAX_ITER:07d}.pth"
    assert victim.returncode == -signal.SIGKILL and saved and saved[-1].name != final_name, (
        f"the run finished before it was killed (delay {delay:.2f}s); checkpoints: {[p.name for p in saved]}")

    # damage the newest checkpoint as a crash during a write on a non-atomic filesystem would
    newest = saved[-1]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 3])
    proc = subprocess.run(cmd, cwd=REPO, env=env_b, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    output = proc.stdout + proc.stderr
    assert f"checkpoint {newest}" in output and "unusable" in output, output[-3000:]
    previous_iter = int(saved[-2].stem) if len(saved) > 1 else 0
    assert f"iteration {previous_iter}" in output or previous_iter == 0

    final_a = torch.load(root_a / "fastgen" / "toy" / "sft_ring8" / "checkpoints" / final_name, weights_only=True)
    final_b = torch.load(ckpt_dir / final_name, weights_only=True)
    for key in ("iteration", "model", "optimizer", "scheduler", "rng", "data"):
        assert_equal_tree(final_a[key], final_b[key], key)
    assert final_a["iteration"] == MAX_ITER and final_a["data"]["train"] == MAX_ITER * 32


def test_in_process_resume_with_ema_callbacks_and_amp_is_bit_identical(tmp_path, monkeypatch):
    """Stop after 6 of 12 iterations, resume in a fresh model + trainer: net, EMA, optimizer, scheduler, callback
    states and RNG equal the uninterrupted run's (standard callbacks, an EMA with its callback, bf16 autocast)."""
    from fastgen.configs.callbacks import EMA_CALLBACK, STANDARD_CALLBACKS
    from fastgen.configs.methods.common import callbacks_from
    from fastgen.trainer import Trainer

    def make(root, max_iter):
        monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(root))
        config = config_sft.create_config()
        config.model.net.hidden_dim, config.model.net.num_layers = 16, 1
        config.model.use_ema = True
        config.model.precision_amp = "bfloat16"
        config.trainer.callbacks = callbacks_from(STANDARD_CALLBACKS, EMA_CALLBACK)
        config.trainer.callbacks.ema.beta = 0.9
        config.trainer.max_iter, config.trainer.save_ckpt_iter, config.trainer.logging_iter = max_iter, 3, 3
        config.dataloader_train.batch_size = 16
        torch.manual_seed(0)
        model = instantiate(config.model_class, config=config.model)
        Trainer(config).run(model)
        return torch.load(root / "fastgen" / "toy" / "sft_ring8" / "checkpoints" / f"{max_iter:07d}.pth",
                          weights_only=True)

    from loguru import logger

    uninterrupted = make(tmp_path / "a", 12)
    make(tmp_path / "b", 6)
    messages = []
    sink = logger.add(lambda m: messages.append(str(m)), level="INFO")
    try:
        resumed = make(tmp_path / "b", 12)
    finally:
        logger.remove(sink)
    assert any("resumed from" in m and "0000006.pth (iteration 6)" in m for m in messages)
    assert any("training iterations 7..12" in m for m in messages)
    for key in ("iteration", "model", "optimizer", "scheduler", "rng", "data"):
        assert_equal_tree(uninterrupted[key], resumed[key], key)
    assert set(uninterrupted["model"]) == {"net", "ema"}
    assert not torch.equal(uninterrupted["model"]["ema"]["in_proj.weight"], uninterrupted["model"]["net"]["in_proj.weight"])


def test_fresh_runs_with_the_same_seed_are_identical_and_seed_matters(tmp_path):
    def run(name, seed):
        cmd = [sys.executable, "train.py", "--config=fastgen/configs/experiments/Toy/config_sft.py", "-",
               "trainer.max_iter=3", "trainer.save_ckpt_iter=3", "model.net.hidden_dim=16", "model.net.num_layers=1",
               "dataloader_train.batch_size=8", f"trainer.seed={seed}"]
        proc = subprocess.run(cmd, cwd=REPO, env={**ENV, "FASTGEN_OUTPUT_ROOT": str(tmp_path / name)},
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        (ckpt,) = (tmp_path / name).rglob("0000003.pth")
        return torch.load(ckpt, weights_only=True)["model"]["net"]

    first, again, other = run("a", 7), run("b", 7), run("c", 8)
    assert_equal_tree(first, again, "net")
    assert any(not torch.equal(first[k], other[k]) for k in first)
