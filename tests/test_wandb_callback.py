"""WandbCallback against a real W&B in offline mode: run files, id reuse, logged values, no secret anywhere."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_callbacks import TinyModel

from fastgen.callbacks import CallbackDict
from fastgen.callbacks.wandb import RUN_ID_FILE, generate_run_id, resolve_wandb_mode
from fastgen.configs.config import BaseConfig
from fastgen.utils import LazyCall as L
from fastgen.utils.image_grid import make_image_grid

SECRET = "wandbsecret-0123456789abcdef0123456789abcdef"
CB = "fastgen.callbacks"


def read_wandb_records(path: Path) -> list:
    """Decode a `.wandb` transaction log: 7-byte header, then LevelDB-style log records in 32 KiB blocks."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a W&B transaction log"
    records, pending, pos, block = [], b"", 7, 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block tail too short for a header is zero padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pos += 7
        if kind == 0:
            break
        pending += data[pos:pos + length]
        pos += length
        if kind in (1, 4):  # FULL or LAST
            records.append(pb.Record.FromString(pending))
            pending = b""
    return records


def finished_records(run_file: Path, timeout_s: float = 30.0) -> list:
    """The records once the run's `exit` record is on disk (wandb-core may still be flushing after finish())."""
    deadline = time.monotonic() + timeout_s
    while True:
        records = read_wandb_records(run_file) if run_file.is_file() else []
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


def history_rows(run_file: Path) -> list[dict]:
    rows = []
    for record in finished_records(run_file):
        if record.WhichOneof("record_type") == "history":
            rows.append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in record.history.item})
    return rows


def config_record(run_file: Path) -> dict:
    """The run config as W&B stored it (in the `run` record, plus any later `config` records)."""
    config = {}
    for record in finished_records(run_file):
        kind = record.WhichOneof("record_type")
        updates = record.run.config.update if kind == "run" else record.config.update if kind == "config" else []
        for item in updates:
            config[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return config


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb_cache"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path / "out"))
    return tmp_path


def make_config(tmp_path: Path) -> BaseConfig:
    config = BaseConfig()
    config.log_config.project, config.log_config.group, config.log_config.name = "proj", "grp", "run1"
    config.log_config.wandb_credential = str(tmp_path / "no_such_credential.txt")
    config.eval.samples_dir = f"pasted-{SECRET}"  # a secret that leaked into any config field must not reach W&B
    return config


def build(tmp_path: Path, config: BaseConfig, **wandb_kwargs):
    trainer = SimpleNamespace(run_dir=tmp_path / "run", logging_iter=2, global_batch_size=8)
    callbacks = CallbackDict(
        {
            "wandb": L(f"{CB}.wandb.WandbCallback")(sample_logging_iter=2, **wandb_kwargs),
            "grad_clip": L(f"{CB}.grad_clip.GradClipCallback")(grad_norm=1e-3),
            "ema": L(f"{CB}.ema.EMACallback")(type="constant", beta=0.75),
        },
        config,
        trainer,
    )
    trainer.callbacks = callbacks
    return trainer, callbacks


def run_training(callbacks: CallbackDict, model: TinyModel, iterations, images: torch.Tensor) -> None:
    """Trainer-ordered hooks; the loss_map holds known values (iteration i -> total_loss i, aux 10*i)."""
    for it in iterations:
        callbacks.on_training_step_begin(model, it)
        x = torch.randn(8, 4, generator=torch.Generator().manual_seed(it))
        callbacks.on_training_accum_step_begin(model, {"real": x}, it, 0)
        loss = model.net(x).pow(2).mean()
        callbacks.on_backward_begin(model, {"total_loss": loss}, it)
        loss.backward()
        callbacks.on_optimizer_step_begin(model, it)
        model.optimizer_dict["net"].step()
        model.optimizer_dict["net"].zero_grad(set_to_none=True)
        loss_map = {"total_loss": torch.tensor(float(it)), "aux_loss": 10.0 * it}
        callbacks.on_training_step_end(model, {"real": x}, {"gen_rand": lambda: images}, loss_map, it)


def all_bytes(root: Path) -> list[tuple[Path, bytes]]:
    return [(p, p.read_bytes()) for p in root.rglob("*") if p.is_file()]


def test_offline_run_files_values_id_reuse_and_no_secret(wandb_env):
    tmp_path = wandb_env
    config = make_config(tmp_path)
    trainer, callbacks = build(tmp_path, config)
    run_dir = trainer.run_dir
    images = torch.linspace(-1, 1, 4 * 3 * 8 * 8).reshape(4, 3, 8, 8)
    model = TinyModel()
    callbacks.on_app_begin()
    run_id = (run_dir / RUN_ID_FILE).read_text().strip()
    assert run_id == callbacks["wandb"].run_id and len(run_id) == 8
    callbacks.on_train_begin(model, 0)
    callbacks.on_validation_begin(model, 0)
    for value in (1.0, 3.0):
        callbacks.on_validation_step_end(model, {}, {"gen_rand": images}, {"total_loss": torch.tensor(value)}, 0)
    callbacks.on_validation_end(model, 0)
    run_training(callbacks, model, range(1, 5), images)
    callbacks.on_train_end(model, 4)
    callbacks.on_app_end()

    run_dirs = sorted((run_dir / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(run_dirs) == 1  # the run lives in the run dir, not in $WANDB_DIR
    run_file = run_dirs[0] / f"run-{run_id}.wandb"
    rows = {row["iteration"]: row for row in history_rows(run_file) if "train/total_loss" in row}
    assert sorted(rows) == [1, 2, 4]  # logging_iter 2, plus iteration 1
    assert rows[1]["train/total_loss"] == 1.0 and rows[2]["train/total_loss"] == 2.0
    assert rows[4]["train/total_loss"] == 3.5 and rows[4]["train/aux_loss"] == 35.0  # mean over iterations 3, 4
    assert rows[4]["lr/net"] == pytest.approx(0.05)  # SGD lr 0.1 x LambdaLR factor 0.5
    assert rows[4]["ema/ema_beta"] == 0.75
    assert rows[4]["grad_norm/net"] > 1e-3 and rows[4]["grad_nonfinite/net"] == 0.0
    media = [row for row in history_rows(run_file) if row.get("train_media/samples/_type") == "image-file"]
    assert sorted(row["iteration"] for row in media) == [2, 4]
    assert all((run_dirs[0] / "files" / row["train_media/samples/path"]).is_file() for row in media)
    val = [row for row in history_rows(run_file) if "val/total_loss" in row]
    assert len(val) == 1 and val[0]["val/total_loss"] == 2.0 and val[0]["iteration"] == 0
    assert val[0]["val_media/samples/_type"] == "image-file" and val[0]["val_media/samples/width"] == 16

    sent = config_record(run_file)
    assert sent["log_config"]["project"] == "proj" and sent["trainer"]["logging_iter"] == 1000
    assert SECRET not in json.dumps(sent) and "REDACTED" in json.dumps(sent["eval"])

    from PIL import Image

    for name in ("iter_0000002.png", "iter_0000004.png", "val_iter_0000000.png"):
        picture = Image.open(run_dir / "samples" / name)
        assert picture.size == (16, 16)  # 4 images of 8x8 in a 2x2 grid
    # top-left pixel = image 0 at (0, 0): channels -1, -1 + 64*2/767, -1 + 128*2/767 -> 0, 21, 43
    assert Image.open(run_dir / "samples" / "iter_0000004.png").getpixel((0, 0)) == (0, 21, 43)
    assert np.array_equal(np.asarray(Image.open(run_dir / "samples" / "iter_0000004.png")), make_image_grid(images))
    for path, content in all_bytes(tmp_path):
        assert SECRET.encode() not in content, f"secret leaked into {path}"

    # a second start in the same run dir (resume) reuses the id
    trainer2, callbacks2 = build(tmp_path, make_config(tmp_path))
    callbacks2.on_app_begin()
    assert callbacks2["wandb"].run_id == run_id
    run_training(callbacks2, TinyModel(), [5, 6], images)
    assert callbacks2.state_dict()["wandb"] == {"run_id": run_id}
    callbacks2.on_app_end()
    assert len(sorted((run_dir / "wandb").glob(f"offline-run-*-{run_id}"))) == 2
    assert (run_dir / RUN_ID_FILE).read_text().strip() == run_id
    for path, content in all_bytes(tmp_path):
        assert SECRET.encode() not in content, f"secret leaked into {path}"


def test_api_key_from_credential_file_is_used_but_never_written(wandb_env, monkeypatch):
    import os

    tmp_path = wandb_env
    monkeypatch.delenv("WANDB_API_KEY")
    credential = tmp_path / "credentials" / "wandb_api.txt"
    credential.parent.mkdir()
    credential.write_text(SECRET + "\n")
    config = make_config(tmp_path)
    config.log_config.wandb_credential = str(credential)
    trainer, callbacks = build(tmp_path, config)
    callbacks.on_app_begin()
    assert os.environ["WANDB_API_KEY"] == SECRET
    run_training(callbacks, TinyModel(), [1, 2], torch.zeros(2, 3, 8, 8))
    callbacks.on_app_end()
    files = [p for p, _ in all_bytes(trainer.run_dir)]
    assert any(p.suffix == ".wandb" for p in files)
    for path, content in all_bytes(trainer.run_dir):
        assert SECRET.encode() not in content, f"secret leaked into {path}"


def test_disabled_mode_writes_nothing(wandb_env, monkeypatch):
    tmp_path = wandb_env
    monkeypatch.setenv("WANDB_MODE", "disabled")
    trainer, callbacks = build(tmp_path, make_config(tmp_path), save_png=False)
    model = TinyModel()
    callbacks.on_app_begin()
    callbacks.on_train_begin(model, 0)
    run_training(callbacks, model, range(1, 5), torch.zeros(2, 3, 8, 8))
    callbacks.on_train_end(model, 4)
    assert callbacks["wandb"].run is None and callbacks["wandb"].mode == "disabled"
    assert not trainer.run_dir.exists()
    assert not (tmp_path / "wandb_dir").exists()
    # scalars still flow (e.g. for tests or other sinks): the last row is what would have been sent
    assert callbacks["wandb"].last_logged["train/total_loss"] == 3.5
    assert callbacks["grad_clip"].logs == {}  # collected and cleared


def test_mode_resolution_and_ids(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert resolve_wandb_mode("offline") == "offline"
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    assert resolve_wandb_mode("online") == "offline"
    monkeypatch.delenv("WANDB_MODE")
    with pytest.raises(ValueError, match="log_config.wandb_mode got 'onlin'; expected one of online, offline"):
        resolve_wandb_mode("onlin")
    ids = {generate_run_id() for _ in range(50)}
    alphabet = set("abcdefghijklmnopqrstuvwxyz0123456789")
    assert len(ids) == 50 and all(len(i) == 8 and set(i) <= alphabet for i in ids)


def test_visualize_teacher_logs_the_teachers_samples(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from fastgen.callbacks.wandb import WandbCallback
    from fastgen.configs.experiments.Toy import config_sft
    from fastgen.methods.model import FastGenModel

    class WithTeacher(FastGenModel):
        needs_teacher = True

    monkeypatch.setenv("WANDB_MODE", "disabled")
    config = config_sft.create_config()
    config.model.net = L("fastgen.networks.EDM.network.EDMPrecond")(
        img_resolution=8, img_channels=1, label_dim=0, model_type="SongUNet", model_channels=8, channel_mult=[1],
        num_blocks=1, attn_resolutions=[])
    config.model.input_shape = [1, 8, 8]
    model = WithTeacher(config.model)
    callback = WandbCallback(sample_logging_iter=1, num_grid_samples=2)
    callback.config, callback.trainer = config, SimpleNamespace(save_path=str(tmp_path))
    noise = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    outputs = {"gen_rand": noise.clamp(-1, 1), "input_rand": noise}
    assert callback.teacher_images(model, outputs, {}) is None  # off by default
    config.trainer.visualize_teacher = True
    expected = model.sample(model.teacher, noise[:2]).float()
    torch.testing.assert_close(callback.teacher_images(model, outputs, {"condition": None}), expected)
    callback.on_training_step_end(model, {}, outputs, {"total_loss": torch.tensor(1.0)}, 1)
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["iter_0000001.png", "teacher_iter_0000001.png"]


class _LatentNet(torch.nn.Module):
    """A net with a video VAE: decode maps 4-channel latents [N, 4, T, h, w] to RGB at twice the size."""

    def __init__(self):
        super().__init__()
        self.vae = _TinyVideoVAE()


class _TinyVideoVAE(torch.nn.Module):
    def decode(self, z):
        assert z.ndim == 5, "a video VAE decodes the whole latent video"
        return torch.tanh(z[:, :3]).repeat_interleave(2, dim=3).repeat_interleave(2, dim=4)


def test_video_samples_logged_as_wandb_video(wandb_env):
    from fastgen.utils.video import make_contact_sheet, make_video_grid, read_video

    tmp_path = wandb_env
    trainer, callbacks = build(tmp_path, make_config(tmp_path), video_fps=8)
    t, y, x = torch.meshgrid(torch.arange(5), torch.arange(16), torch.arange(16), indexing="ij")
    videos = torch.stack([0.8 * torch.stack([torch.sin(x / 8 + t / 2 + k), torch.cos(y / 8 - t / 3),
                                             torch.sin((x + y) / 12)]) for k in range(2)])  # [2, 3, 5, 16, 16]
    callbacks.on_app_begin()
    run_training(callbacks, TinyModel(), [1, 2], videos)
    callbacks.on_app_end()

    run_id = callbacks["wandb"].run_id
    run_dir = next((trainer.run_dir / "wandb").glob(f"offline-run-*-{run_id}"))
    rows = [row for row in history_rows(run_dir / f"run-{run_id}.wandb") if "train_media/videos/_type" in row]
    assert [row["iteration"] for row in rows] == [2]
    assert rows[0]["train_media/videos/_type"] == "video-file" and rows[0]["train_media/samples/_type"] == "image-file"
    logged = read_video(run_dir / "files" / rows[0]["train_media/videos/path"])
    saved = read_video(trainer.run_dir / "samples" / "iter_0000002.mp4")
    expected = make_video_grid(videos)  # the two videos side by side: 5 frames of 16x32
    for clip in (logged, saved):
        assert clip.frames.shape == (5, 16, 32, 3) and clip.fps == 8.0
        diff = np.abs(clip.frames.astype(int) - expected.astype(int)).mean(axis=(1, 2, 3))
        assert diff.max() < 5.0  # h264 yuv420p crf 18 at this tiny size
        assert np.abs(clip.frames.astype(int) - expected[::-1].astype(int)).mean() > 15.0  # frame order matters
    from PIL import Image

    sheet = np.asarray(Image.open(trainer.run_dir / "samples" / "iter_0000002.png"))
    assert np.array_equal(sheet, make_contact_sheet(videos))  # a row of frames per sample

    # latent videos are decoded as videos by the net's VAE
    wandb_cb = callbacks["wandb"]
    latents = torch.randn(6, 4, 2, 4, 4)
    decoded = wandb_cb.sample_images(SimpleNamespace(net=_LatentNet()), {"gen_rand": latents})
    torch.testing.assert_close(decoded, _TinyVideoVAE().decode(latents[:4]))  # num_video_samples=4 by default
    assert decoded.shape == (4, 3, 2, 8, 8)
