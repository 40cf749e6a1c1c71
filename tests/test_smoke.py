"""`train.py --smoke`: every shipped config trains 2 tiny iterations on CPU and writes a checkpoint + config.yaml,
keeping the real config's method, network/discriminator classes, callbacks and loader keys.

The per-config runs are in-process (one `run_cli(train.main, ...)` each, ~1 s); one test runs the real CLI."""

import importlib.util
import os
import subprocess
import sys
import tempfile

import pytest
import torch
from _config_files import EXPERIMENT_FILES, REPO

from fastgen.cli import run_cli
from fastgen.configs.config_utils import import_config_from_python_file, load_config_from_yaml
from fastgen.utils.checkpointer import safe_torch_load

# one quick config per family always runs; the rest are marked slow (CI still runs them)
FAMILY_REPRESENTATIVES = {
    "EDM/config_dmd2_test.py", "EDM2/config_tcm_s.py", "FashionMNIST/config_dmd2.py", "Toy/config_dmd2.py",
    "DiT/config_mf_b.py", "SD15/config_dmd2.py", "SDXL/config_dmd2.py", "Flux/config_dmd2.py",
    "QwenImage/config_dmd2.py", "WanT2V/config_dmd2.py", "CogVideoX/config_dmd2.py", "WanV2V/config_sft.py",
    "CosmosPredict2/config_dmd2_v2w.py", "WanI2V/config_sft_wan22_5b.py",
}


def _load_train():
    spec = importlib.util.spec_from_file_location("fastgen_train_script", REPO / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TRAIN = _load_train()


def _params():
    for path in EXPERIMENT_FILES:
        short = path.split("experiments/", 1)[1]
        marks = [] if short in FAMILY_REPRESENTATIVES else [pytest.mark.slow]
        yield pytest.param(path, id=short, marks=marks)


@pytest.fixture
def smoke_env(tmp_path, monkeypatch):
    """Temporary roots for everything --smoke touches (it sets FASTGEN_OUTPUT_ROOT / WANDB_MODE itself)."""
    for name, sub in (("FASTGEN_OUTPUT_ROOT", "out"), ("DATA_ROOT_DIR", "data"), ("CKPT_ROOT_DIR", "ckpt")):
        monkeypatch.setenv(name, str(tmp_path / sub))
    monkeypatch.setenv("WANDB_MODE", "online")  # smoke must force it off
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def smoke_run(path, capsys, *opts):
    code = run_cli(TRAIN.main, ["--config", str(path), "--smoke", "--log_level", "WARNING", *opts])
    out = capsys.readouterr()
    return code, out.out, out.err


def _run_dir(stdout: str) -> str:
    line = next(line for line in stdout.splitlines() if line.startswith("smoke: output root: "))
    return line.split("(run dir ", 1)[1].split(";", 1)[0]


@pytest.mark.parametrize("path", list(_params()))
def test_smoke_every_shipped_config(path, smoke_env, capsys, one_thread):
    real = import_config_from_python_file(REPO / path)
    code, out, err = smoke_run(REPO / path, capsys)
    assert code == 0, err
    run_dir = _run_dir(out)
    assert run_dir.startswith(str(smoke_env)) and os.environ["WANDB_MODE"] == "disabled"
    assert not os.path.exists(smoke_env / "out")  # nothing under the user's output root
    ckpts = sorted(os.listdir(os.path.join(run_dir, "checkpoints")))
    assert ckpts == ["0000002.pth"]
    state = safe_torch_load(os.path.join(run_dir, "checkpoints", ckpts[0]))
    assert state["iteration"] == 2 and "net" in state["model"]
    assert all(torch.isfinite(v).all() for v in state["model"]["net"].values() if v.is_floating_point())
    saved = load_config_from_yaml(os.path.join(run_dir, "config.yaml"))
    # same method, network / discriminator classes, callbacks and loader as the real config
    assert saved.model_class._target_ == real.model_class._target_
    for field in ("net", "teacher", "fake_score_net", "discriminator"):
        node = getattr(real.model, field, None)
        if node is not None:
            assert getattr(saved.model, field)._target_ == node._target_, field
    assert list(saved.trainer.callbacks) == list(real.trainer.callbacks)
    assert saved.dataloader_train._target_ == "fastgen.smoke.SmokeLoader"
    real_loader = real.dataloader_train._target_
    assert saved.dataloader_train.loader.rsplit(".", 1)[-1] == str(real_loader).rsplit(".", 1)[-1]
    # tiny and single-process on CPU in float32
    assert saved.trainer.max_iter == 2 and not saved.trainer.ddp and not saved.trainer.fsdp
    assert (saved.model.device, saved.model.precision, saved.model.precision_amp) == ("cpu", "float32", None)
    assert all(d <= 8 for d in saved.model.input_shape[1:]) or len(saved.model.input_shape) < 3
    n_params = sum(v.numel() for v in state["model"]["net"].values())
    assert n_params < 2_000_000, n_params


def test_smoke_prints_what_it_shrank(smoke_env, capsys, one_thread):
    code, out, _ = smoke_run(REPO / "fastgen/configs/experiments/EDM/config_dmd2_test.py", capsys)
    assert code == 0
    lines = out.splitlines()
    assert "smoke: net: EDMPrecond model_channels 128 -> 16" in lines
    assert "smoke: net: EDMPrecond img_resolution 32 -> 8" in lines
    assert "smoke: model: input_shape [3, 32, 32] -> [3, 8, 8]" in lines
    assert "smoke: trainer: max_iter 5000 -> 2" in lines
    assert any(line.startswith("smoke: data: dataloader_train ImageLoader -> synthetic batches of 2: "
                               "real [2, 3, 8, 8] float32, condition [2, 10] float32") for line in lines)
    # the discriminator is fitted to the tiny teacher's probed features (3 levels: 8x8, 4x4, 2x2 of 32 channels)
    assert "smoke: discriminator: probed EDMPrecond features [[32, 8, 8], [32, 4, 4], [32, 2, 2]]" in lines
    assert "smoke: discriminator: Discriminator_EDM all_res [32, 16, 8] -> [8, 4, 2]" in lines


@pytest.mark.parametrize("flag", ["trainer.fsdp=True", "trainer.ddp=True"])
def test_smoke_forces_a_single_process(flag, smoke_env, capsys, monkeypatch, one_thread):
    monkeypatch.setenv("WORLD_SIZE", "8")  # as under torchrun: smoke still runs one process
    path = REPO / "fastgen/configs/experiments/Toy/config_sft.py"
    code, out, err = smoke_run(path, capsys, "-", flag, "trainer.batch_size_global=64")
    assert code == 0, err
    key = flag.split("=")[0].split(".")[1]
    assert f"smoke: trainer: {key} True -> False" in out.splitlines()


NO_TINY_CONFIG = """
from fastgen.configs.experiments.Toy.config_sft import create_config as toy
from fastgen.utils import LazyCall as L


def create_config():
    config = toy()
    config.model.net = L("{target}")({kwargs})
    return config
"""


class NoTinySize(torch.nn.Module):  # a network class that declares no smoke size
    pass


@pytest.mark.parametrize("target, kwargs, named", [
    ("fastgen.networks.network.FastGenNetwork", "", "fastgen.networks.network.FastGenNetwork declares no tiny size"),
    ("test_smoke.NoTinySize", "", "test_smoke.NoTinySize declares no tiny size"),
])
def test_network_without_tiny_size_is_one_line_exit_2(target, kwargs, named, smoke_env, capsys):
    path = smoke_env / "cfg.py"
    path.write_text(NO_TINY_CONFIG.format(target=target, kwargs=kwargs))
    code, out, err = smoke_run(path, capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], err
    assert not any(p.name.startswith("fastgen_smoke_") and any(p.rglob("*.pth")) for p in smoke_env.iterdir())


def test_unknown_config_is_one_line_exit_2(smoke_env, capsys):
    code, _, err = smoke_run(smoke_env / "missing.py", capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "missing.py" in err


def test_loader_smoke_batches_have_the_real_loaders_keys_and_dtypes(tmp_path):
    """smoke_batch yields the keys/dtypes a real loader yields (real loaders built on tiny data made here)."""
    import numpy as np
    from PIL import Image

    from fastgen.datasets.gaussian_mixture import GaussianMixtureLoader
    from fastgen.datasets.idx_loader import FashionMNISTLoader, write_idx
    from fastgen.datasets.image_loader import ImageLoader
    from fastgen.datasets.kd_dataset import TeacherPairLoader, save_shard

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
    (folder / "dataset.json").write_text('{"labels": [["0.png", 0], ["1.png", 1], ["2.png", 2], ["3.png", 3]]}')
    save_shard({"noise": torch.randn(4, 3, 8, 8), "real": torch.randn(4, 3, 8, 8),
                "path": torch.randn(4, 2, 3, 8, 8), "t_list": torch.tensor([80.0, 0.0])}, str(tmp_path / "kd.pt"))
    idx = tmp_path / "fmnist"
    idx.mkdir()
    write_idx(np.zeros((4, 28, 28), np.uint8), str(idx / "train-images-idx3-ubyte"))
    write_idx(np.arange(4, dtype=np.uint8), str(idx / "train-labels-idx1-ubyte"))
    cases = [
        (ImageLoader, dict(dataset_path=str(folder), batch_size=2, label_dim=4)),
        (FashionMNISTLoader, dict(root=str(idx), batch_size=2, resolution=8, resize_type="resize")),
        (GaussianMixtureLoader, dict(batch_size=2, use_labels=True)),
        (TeacherPairLoader, dict(path=str(tmp_path / "kd.pt"), batch_size=2)),
    ]
    for cls, kwargs in cases:
        real = next(iter(cls(**kwargs)))
        shape = [1, 8, 8] if cls is FashionMNISTLoader else [3, 8, 8]
        fake = cls.smoke_batch({**kwargs, "input_shape": shape}, 2)
        assert sorted(fake) == sorted(real), cls
        for key, value in real.items():
            assert fake[key].dtype == value.dtype and fake[key].shape == value.shape, (cls, key)


@pytest.mark.slow
def test_real_cli_smoke(tmp_path):
    """`python train.py --config=... --smoke` as a user runs it: exit 0, lines printed, files under the temp root."""
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "RANK", "WORLD_SIZE")}
    env.update({"FASTGEN_OUTPUT_ROOT": str(tmp_path / "out"), "TMPDIR": str(tmp_path), "OMP_NUM_THREADS": "1"})
    result = subprocess.run([sys.executable, "train.py", "--config=fastgen/configs/experiments/Toy/config_ladd.py",
                             "--smoke"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "smoke: net: ToyMLP hidden_dim 128 -> 16" in result.stdout.splitlines()
    run_dir = _run_dir(result.stdout)
    assert run_dir.startswith(str(tmp_path)) and not (tmp_path / "out").exists()
    assert os.path.isfile(os.path.join(run_dir, "config.yaml"))
    assert os.path.isfile(os.path.join(run_dir, "checkpoints", "0000002.pth"))


def test_every_family_has_a_fast_smoke_run():
    """CI runs at least one --smoke per family unmarked (the rest are `slow`, still run by `make test`)."""
    families = {p.split("experiments/", 1)[1].split("/")[0] for p in EXPERIMENT_FILES}
    covered = {r.split("/")[0] for r in FAMILY_REPRESENTATIVES if any(p.endswith(r) for p in EXPERIMENT_FILES)}
    assert families <= covered, f"families without a fast smoke run: {sorted(families - covered)}"


def test_smoke_with_dryrun_prints_the_tiny_config_and_trains_nothing(smoke_env, capsys):
    import yaml

    code, out, _ = smoke_run(REPO / "fastgen/configs/experiments/Toy/config_sft.py", capsys, "--dryrun")
    assert code == 0
    printed = yaml.safe_load("\n".join(line for line in out.splitlines() if not line.startswith("smoke: ")))
    assert printed["trainer"]["max_iter"] == 2 and printed["model"]["net"]["hidden_dim"] == 16
    assert printed["dataloader_train"]["_target_"] == "fastgen.smoke.SmokeLoader"
    assert not list(smoke_env.rglob("*.pth")) and not list(smoke_env.rglob("config.yaml"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a CPU-only machine")
def test_smoke_runs_a_gpu_config_on_a_cpu_only_machine(smoke_env, capsys, one_thread):
    """--smoke forces CPU, so a config naming model.device=cuda is smoke-tested on a laptop (without --smoke it is
    refused: no GPU here); values smoke does not override stay validated."""
    path = REPO / "fastgen/configs/experiments/Toy/config_sft.py"
    code, out, err = smoke_run(path, capsys, "-", "model.device=cuda")
    assert code == 0, err
    assert "smoke: model: device 'cuda' -> 'cpu'" in out.splitlines()
    saved = load_config_from_yaml(os.path.join(_run_dir(out), "config.yaml"))
    assert saved.model.device == "cpu"
    code, _, err = smoke_run(path, capsys, "-", "model.device=tpu")  # a name that works nowhere is still refused
    assert code == 2 and err.splitlines()[-1].startswith("error: model.device='tpu' is not supported")
    # a value smoke replaces is still checked as the user wrote it: the real run would fail on it
    code, _, err = smoke_run(path, capsys, "-", "trainer.max_iter=0")
    assert code == 2 and err.splitlines()[-1] == "error: trainer.max_iter=0 must be a positive integer (the last training iteration)"
    assert run_cli(TRAIN.main, ["--config", str(path), "-", "model.device=cuda"]) == 2  # without --smoke: refused
    assert "no CUDA GPU is available here" in capsys.readouterr().err
