"""The Fashion-MNIST demo end to end (smoke preset on a tiny IDX data set made here) and its teacher handling."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from fastgen.datasets.idx_loader import write_idx
from fastgen.demo import evaluate as ev
from fastgen.demo import pipeline
from fastgen.demo.teacher import export_teacher, load_teacher_net, verify_teacher, write_manifest


def make_idx_dataset(root, n_train=64, n_test=40, seed=0):
    """Fashion-MNIST-shaped IDX files (28x28 uint8 blobs, labels 0..9) so the test needs no downloaded data."""
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = (rng.random((n, 28, 28)) * 255).astype(np.uint8)
        images[:, :6] = 0
        write_idx(images, os.path.join(root, f"{prefix}-images-idx3-ubyte.gz"))
        write_idx((np.arange(n) % 10).astype(np.uint8), os.path.join(root, f"{prefix}-labels-idx1-ubyte.gz"))
    return str(root)


def random_teacher(path, seed=0):
    """A randomly initialised demo network saved as a teacher .safetensors with a valid manifest."""
    from safetensors.torch import save_file

    from fastgen.configs.experiments.FashionMNIST._common import fashion_mnist_net
    from fastgen.metrics import sha256_of_file
    from fastgen.utils import instantiate

    torch.manual_seed(seed)
    net = instantiate(fashion_mnist_net())
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    write_manifest(str(path), {"sha256": sha256_of_file(str(path)), "iterations": 0, "command": "test"})
    return net


def test_demo_smoke_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path / "out"))
    data_root = make_idx_dataset(tmp_path / "data")
    teacher_path = tmp_path / "teacher.safetensors"
    teacher = random_teacher(teacher_path)
    code = pipeline.main(["--smoke", "--run_name", "smoke", "--data_root", data_root, "--teacher", str(teacher_path),
                          "--num_threads", "1", "-", "trainer.seed=3"])
    assert code == 0
    run_dir = tmp_path / "out" / "fastgen" / "fashion_mnist" / "smoke"
    metrics = json.loads((run_dir / "metrics.json").read_text())

    # the preset's sizes reached every stage
    assert metrics["num_fid_samples"] == 40 and metrics["smoke"] is True
    student, teach = metrics["student"], metrics["teacher"]
    assert student["distill_iterations"] == 6 and student["generator_updates"] == 3  # student_update_freq 2
    assert teach["nfe"] == 3 and student["nfe"] == 1 and teach["source"] == "given"
    assert np.isfinite(student["fid"]) and np.isfinite(teach["fid"]) and student["fid"] > 0
    assert metrics["fid_ratio_student_over_teacher"] == pytest.approx(student["fid"] / teach["fid"])
    assert metrics["sampling_speedup"] == pytest.approx(teach["seconds_per_1000_images"] /
                                                        student["seconds_per_1000_images"])
    assert teach["sha256"] == verify_teacher(str(teacher_path))["sha256"]
    # what decides the training bits besides the seed is recorded
    assert metrics["machine"]["torch_threads"] == 1 and metrics["machine"]["cpu_capability"] == \
        torch.backends.cpu.get_cpu_capability()

    # DMD2 trained the student: its final checkpoint exists and its weights left the teacher's
    ckpt = torch.load(run_dir / "dmd2" / "checkpoints" / "0000006.pth", weights_only=True)
    assert ckpt["iteration"] == 6
    moved = max((ckpt["model"]["net"][k] - v).abs().max().item() for k, v in teacher.state_dict().items())
    assert moved > 0
    # the fake score was trained too (4 critic iterations), the teacher weights were not
    assert max((ckpt["model"]["fake_score"][k] - v).abs().max().item() for k, v in teacher.state_dict().items()) > 0
    assert "teacher" not in ckpt["model"]

    # grid: 10 class rows x (2 teacher + 2 student) 32x32 cells with 2-pixel padding, a 12-pixel gap, a header
    grid = np.asarray(Image.open(run_dir / "sample_grid.png"))
    cell_block = 2 * (32 + 2) + 2
    assert grid.shape == (14 + 10 * (32 + 2) + 2, 2 * cell_block + 12)
    report = (run_dir / "report.md").read_text()
    assert f"{student['fid']:.2f}" in report and f"{teach['fid']:.2f}" in report and "Smoke run" in report


def test_demo_trains_a_teacher_when_the_file_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path / "out"))
    data_root = make_idx_dataset(tmp_path / "data")
    code = pipeline.main(["--smoke", "--run_name", "fresh", "--data_root", data_root, "--teacher",
                          str(tmp_path / "missing.safetensors"), "--teacher_iters", "2", "--distill_iters", "3",
                          "--num_fid_samples", "20", "--num_threads", "1"])
    assert code == 0
    run_dir = tmp_path / "out" / "fastgen" / "fashion_mnist" / "fresh"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["teacher"]["source"] == "trained in this run"
    assert metrics["teacher"]["sft_iterations"] == 2
    assert metrics["student"]["distill_iterations"] == 3 and metrics["student"]["generator_updates"] == 1
    exported = run_dir / "teacher" / "teacher_ema.safetensors"
    assert metrics["teacher"]["sha256"] == verify_teacher(str(exported))["sha256"]
    assert "trainer.max_iter=2" in metrics["teacher"]["command"]


def test_on_the_spot_teacher_uses_a_cpu_batch_unless_one_is_given():
    full = pipeline.parse_args(["--run_name", "r"])
    overrides = pipeline.teacher_overrides(full, "/data")
    assert "dataloader_train.batch_size=64" in overrides and "trainer.max_iter=1500" in overrides
    assert "dataloader_train.root=/data" in overrides and "log_config.name=r/teacher" in overrides
    given = pipeline.teacher_overrides(pipeline.parse_args(["--run_name", "r", "--batch_size", "128"]), "/data")
    assert [o for o in given if o.startswith("dataloader_train.batch_size=")] == ["dataloader_train.batch_size=128"]


def test_teacher_export_verify_and_load(tmp_path):
    from fastgen.configs.experiments.FashionMNIST._common import fashion_mnist_net
    from fastgen.utils import instantiate

    torch.manual_seed(1)
    net, ema = instantiate(fashion_mnist_net()), instantiate(fashion_mnist_net())
    ckpt = tmp_path / "0000007.pth"
    torch.save({"model": {"net": net.state_dict(), "ema": ema.state_dict()}, "iteration": 7}, ckpt)
    out = tmp_path / "teacher.safetensors"
    manifest = export_teacher(str(ckpt), str(out), ema_name="ema", command="bash scripts/train_demo_teacher.sh",
                              extra={"fid": 1.5})
    assert manifest["iterations"] == 7 and manifest["fid"] == 1.5
    assert manifest["num_parameters"] == sum(p.numel() for p in ema.parameters())
    loaded = load_teacher_net(str(out))
    for key, value in ema.state_dict().items():  # the EMA copy was exported, not the raw net
        assert torch.equal(loaded.state_dict()[key], value)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())

    # a damaged file is refused with the reason and how to restore it
    data = bytearray(out.read_bytes())
    data[-1] ^= 0xFF
    out.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256 .* but the manifest says"):
        verify_teacher(str(out))
    with pytest.raises(ValueError, match="no network 'ema_x'"):
        export_teacher(str(ckpt), str(tmp_path / "b.safetensors"), ema_name="ema_x")


def test_indexed_noise_and_class_balance_do_not_depend_on_batching():
    whole = ev.indexed_noise(range(0, 12), (1, 4, 4), seed=5)
    parts = torch.cat([ev.indexed_noise(range(0, 5), (1, 4, 4), 5), ev.indexed_noise(range(5, 12), (1, 4, 4), 5)])
    assert torch.equal(whole, parts)
    assert not torch.equal(whole, ev.indexed_noise(range(0, 12), (1, 4, 4), seed=6))
    # the grid is class-major: row c holds class c for every column
    seen = []
    ev.grid_images(lambda noise, cond: seen.append(cond.argmax(1)) or torch.zeros(noise.shape), 3, (1, 4, 4), 0)
    assert seen[0].tolist() == [c for c in range(10) for _ in range(3)]


def test_timed_fid_matches_direct_fid(tmp_path):
    """timed_fid = compute_fid of the same seeded images (timing is bookkeeping only)."""
    from fastgen.metrics import frechet_distance
    from fastgen.metrics.fid import RefStats

    def feature_net(images):
        return images.flatten(1)[:, :6].double()

    feature_net.weights_sha256 = ""
    feature_net.name = "toy"
    ref_images = torch.randn(50, 1, 4, 4)
    ref_feats = feature_net(ref_images).numpy()
    ref = RefStats(mu=ref_feats.mean(0), sigma=np.cov(ref_feats, rowvar=False), meta={})

    def sample_fn(noise, condition):
        return (noise * 0.3 + condition[:, :1, None, None]).clamp(-1, 1)

    result = ev.timed_fid("toy", sample_fn, feature_net, ref, num_samples=30, batch_size=7, shape=(1, 4, 4), seed=2)
    from fastgen.metrics.fid import quantize_images

    images = torch.cat([sample_fn(ev.indexed_noise(range(s, min(s + 7, 30)), (1, 4, 4), 2),
                                  ev.one_hot(torch.arange(s, min(s + 7, 30)) % 10)) for s in range(0, 30, 7)])
    feats = feature_net(quantize_images(images)).numpy()
    expected = frechet_distance(feats.mean(0), np.cov(feats, rowvar=False), ref.mu, ref.sigma)
    assert result["fid"] == pytest.approx(expected, rel=1e-6)
    assert result["num_samples"] == 30
    assert result["seconds_per_1000_images"] == pytest.approx(result["sampling_seconds"] * 1000 / 30)


def test_bad_arguments_are_usage_errors():
    from fastgen.cli import UsageError

    with pytest.raises(UsageError, match="num_fid_samples"):
        pipeline.parse_args(["--num_fid_samples", "0"])
    with pytest.raises(UsageError, match="separator"):
        pipeline.parse_args(["trainer.max_iter=3"])
    args = pipeline.parse_args(["--smoke", "-", "model.net_optimizer.lr=1e-5"])
    assert args.opts == ["model.net_optimizer.lr=1e-5"] and args.distill_iters == 6 and args.num_fid_samples == 40


def test_shipped_teacher_matches_its_manifest_and_the_config():
    from fastgen.configs.config_utils import import_config_from_python_file
    from fastgen.configs.experiments.FashionMNIST._common import shipped_teacher_path

    path = shipped_teacher_path()
    manifest = verify_teacher(path)  # sha256 checked
    assert os.path.getsize(path) == manifest["size_bytes"] < 5 * 2**20
    teacher_config = import_config_from_python_file(pipeline.TEACHER_CONFIG)
    assert manifest["iterations"] == teacher_config.trainer.max_iter == 10000
    assert "trainer.max_iter=10000" in manifest["command"] and manifest["config"] in pipeline.TEACHER_CONFIG
    assert teacher_config.model.dsm_weighting == "edm" and manifest["training"]["batch_size"] == 256
    assert manifest["fid_35nfe"] > 0 and manifest["fid_num_samples"] == 1000
    net = load_teacher_net(path)
    assert sum(p.numel() for p in net.parameters()) == manifest["num_parameters"] == 710865
    # the DMD2 configs distil exactly this file into a 1-step student: the demo's without a GAN, config_dmd2_gan.py
    # with the paper's GAN on real data (one head on the fake score's bottleneck, 64 channels at 8x8)
    config = import_config_from_python_file(pipeline.STUDENT_CONFIG)
    assert config.model.pretrained_model_path == path and config.model.student_sample_steps == 1
    assert config.model.gan_loss_weight_gen == 0 and config.model.discriminator is None
    assert pipeline.dmd2_variant(config.model) == "DMD2 (no GAN)"
    gan = import_config_from_python_file(os.path.join(os.path.dirname(pipeline.STUDENT_CONFIG), "config_dmd2_gan.py"))
    assert gan.model.pretrained_model_path == path and gan.model.student_sample_steps == 1
    assert gan.model.discriminator.feature_indices == [2] and gan.model.discriminator.in_channels[2] == 64
    assert pipeline.dmd2_variant(gan.model) == ("DMD2 (GAN on real data, weight 0.3, critic weight 1, "
                                              "fake_score features)")
