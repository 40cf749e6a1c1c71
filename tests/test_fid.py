"""FID: the distance, streaming statistics, reference files, the Fashion-MNIST feature net and the checkpoint sweep."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from fastgen.metrics import FeatureStats, batch_stats, compute_fid, frechet_distance, load_stats, save_stats
from fastgen.metrics import feature_net as fn
from fastgen.metrics.fid import RefStats, check_compatible, compute_feature_stats, quantize_images

REPO = Path(__file__).resolve().parents[1]
FMNIST_DIR = "/usr/share/datasets/fashion-mnist"
needs_fmnist = pytest.mark.skipif(not os.path.isdir(FMNIST_DIR) and not os.environ.get("DATA_ROOT_DIR"),
                                  reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")


def random_gaussian_features(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ mixing + rng.normal(size=d)


def fd_symmetric_form(mu1, s1, mu2, s2) -> float:
    """Independent formula: tr((S1 S2)^(1/2)) = tr((S1^(1/2) S2 S1^(1/2))^(1/2)), via symmetric eigen-decompositions."""
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = root1 @ s2 @ root1
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum()
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt)


# --- the distance -----------------------------------------------------------------------------------------------------
def test_frechet_distance_matches_direct_computations():
    x, y = random_gaussian_features(400, 6, 0), random_gaussian_features(300, 6, 1)
    mu1, s1 = x.mean(0), np.cov(x, rowvar=False)
    mu2, s2 = y.mean(0), np.cov(y, rowvar=False)
    ours = frechet_distance(mu1, s1, mu2, s2)
    direct = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real))
    assert ours == pytest.approx(direct, rel=1e-10)
    assert ours == pytest.approx(fd_symmetric_form(mu1, s1, mu2, s2), rel=1e-7)
    assert ours == pytest.approx(frechet_distance(mu2, s2, mu1, s1), rel=1e-8)  # symmetric


def test_frechet_distance_closed_form_for_diagonal_gaussians():
    m1, m2 = np.array([0.0, 1.0, -2.0]), np.array([0.5, 1.0, 1.0])
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 0.25])
    expected = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)  # 0.25 + 9 + (3 - 2 sqrt 2) + 1
    assert frechet_distance(m1, np.diag(v1), m2, np.diag(v2)) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.25 + 9 + 1 + 3 - 2 * np.sqrt(2), rel=1e-12)


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_mean_shift():
    x = random_gaussian_features(500, 8, 2)
    mu, sigma = batch_stats(x)
    scale = np.trace(sigma)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-6 * scale
    direction = np.ones(8) / np.sqrt(8)
    shifts = [0.0, 0.1, 0.3, 1.0, 3.0]
    fids = [frechet_distance(*batch_stats(x + s * direction), mu, sigma) for s in shifts]
    assert all(a < b for a, b in zip(fids, fids[1:]))
    np.testing.assert_allclose(fids, np.square(shifts), atol=1e-6 * scale)  # same covariance: FID = ||shift||^2


def test_frechet_distance_singular_covariances_stay_finite():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(5, 12))  # 5 samples in 12-d: rank-4 covariances
    y = rng.normal(size=(5, 12)) + 0.5
    value = frechet_distance(*batch_stats(x), *batch_stats(y))
    assert np.isfinite(value) and value > 0
    mu_x, s_x = batch_stats(x)
    assert abs(frechet_distance(mu_x, s_x, mu_x, s_x)) < 1e-4 * np.trace(s_x)


def test_frechet_distance_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="mismatched statistics"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


# --- streaming statistics ---------------------------------------------------------------------------------------------
def test_streaming_statistics_equal_batch_statistics():
    x = random_gaussian_features(1000, 16, 4) + 1e4  # large mean: naive sums of squares would lose digits
    stats = FeatureStats()
    for start, stop in ((0, 1), (1, 130), (130, 131), (131, 700), (700, 1000)):
        stats.update(torch.from_numpy(x[start:stop]).float() if start == 1 else x[start:stop])
    stats_f64 = FeatureStats()
    for start in range(0, 1000, 97):
        stats_f64.update(x[start:start + 97])
    mu, sigma = batch_stats(x)
    assert stats_f64.count == 1000
    np.testing.assert_allclose(stats_f64.mean, mu, rtol=1e-13)
    np.testing.assert_allclose(stats_f64.cov, sigma, rtol=1e-9, atol=1e-9 * np.abs(sigma).max())
    assert stats.count == 1000  # the float32 batch rounds its features; everything else is exact
    np.testing.assert_allclose(stats.cov, sigma, rtol=1e-2, atol=1e-2 * np.abs(sigma).max())


def test_merged_statistics_equal_the_whole():
    x = random_gaussian_features(600, 5, 5)
    a, b = FeatureStats(), FeatureStats()
    a.update(x[:200])
    b.update(x[200:] * 1.0 + 0.0)  # a different shift (its own first batch mean)
    a.merge(b)
    mu, sigma = batch_stats(x)
    assert a.count == 600
    np.testing.assert_allclose(a.mean, mu, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(a.cov, sigma, rtol=1e-10, atol=1e-12)


def test_statistics_errors_are_clear():
    stats = FeatureStats()
    with pytest.raises(ValueError, match="no features"):
        _ = stats.mean
    stats.update(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="dim 5"):
        stats.update(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="NaN"):
        stats.update(np.full((2, 4), np.nan))


# --- reference files and compute_fid ----------------------------------------------------------------------------------
class LinearFeatures(torch.nn.Module):
    """A fixed linear feature map of flattened 1x4x4 images (a stand-in feature network with known weights)."""

    name = "linear-test"
    feature_dim = 6

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.weight = torch.nn.Parameter(torch.randn(16, 6, generator=generator), requires_grad=False)
        self.weights_sha256 = hashlib.sha256(self.weight.detach().numpy().tobytes()).hexdigest()

    def forward(self, images):
        return images.flatten(1) @ self.weight


def test_stats_file_roundtrip_and_compatibility(tmp_path):
    x = random_gaussian_features(100, 6, 6)
    path = str(tmp_path / "ref.npz")
    sha = save_stats(path, x.mean(0), np.cov(x, rowvar=False), feature_net="linear-test", feature_net_sha256="ab" * 32,
                     num_samples=100, dataset="toy")
    ref = load_stats(path)
    assert sha == ref.sha256 == hashlib.sha256(Path(path).read_bytes()).hexdigest()
    np.testing.assert_array_equal(ref.mu, x.mean(0))
    assert ref.meta["num_samples"] == 100 and ref.meta["dataset"] == "toy" and ref.meta["feature_net"] == "linear-test"
    net = LinearFeatures()
    with pytest.raises(ValueError, match="sha256"):
        check_compatible(ref, net)  # same name, other weights
    net.name = "other"
    with pytest.raises(ValueError, match="feature network 'linear-test'"):
        check_compatible(ref, net)
    with pytest.raises(FileNotFoundError, match="fid.py ref"):
        load_stats(str(tmp_path / "missing.npz"))


def test_compute_fid_from_generator_and_from_batches_equal_the_direct_value():
    net = LinearFeatures()
    real = torch.rand(200, 1, 4, 4) * 2 - 1
    fake = (torch.rand(120, 1, 4, 4) * 2 - 1) * 0.7 + 0.1
    ref_stats = compute_feature_stats([real[:64], real[64:]], net)
    ref = RefStats(mu=ref_stats.mean, sigma=ref_stats.cov, meta={"feature_net": net.name,
                                                                  "feature_net_sha256": net.weights_sha256})
    direct = frechet_distance(*batch_stats(net(quantize_images(fake)).double()), ref.mu, ref.sigma)
    from_fn = compute_fid(lambda start, count: fake[start:start + count], net, ref, num_samples=120, batch_size=50)
    from_batches = compute_fid(iter([fake[:70], fake[70:]]), net, ref, num_samples=120)
    assert from_fn == pytest.approx(direct, rel=1e-9)
    assert from_batches == pytest.approx(direct, rel=1e-9)
    assert direct > 0.01
    same = compute_fid(iter([real]), net, ref, num_samples=200)
    assert abs(same) < 1e-6 * np.trace(ref.sigma)
    with pytest.raises(ValueError, match="only 120 images"):
        compute_fid(iter([fake]), net, ref, num_samples=150)


def test_quantize_images_is_identity_on_uint8_levels():
    levels = torch.arange(256, dtype=torch.float32) / 127.5 - 1
    assert torch.equal(quantize_images(levels), levels)
    quantized = quantize_images(torch.tensor([2.0, -3.0, 0.001])).tolist()
    assert quantized == pytest.approx([1.0, -1.0, 0.5 / 127.5], rel=1e-4)


# --- the Fashion-MNIST feature network --------------------------------------------------------------------------------
def shipped_manifest() -> dict:
    return json.loads((fn.ASSETS_DIR / fn.MANIFEST_FILENAME).read_text())


def test_shipped_feature_net_has_the_recorded_sha():
    manifest = shipped_manifest()
    weights = fn.ASSETS_DIR / fn.WEIGHTS_FILENAME
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert sha == fn.SHIPPED_WEIGHTS_SHA256 == manifest["sha256"]
    net = fn.load_feature_net()
    assert net.weights_sha256 == sha and not net.training
    for split in ("train", "test"):
        ref = load_stats(str(fn.reference_stats_path(split)))
        assert ref.meta["feature_net_sha256"] == sha and ref.meta["feature_net"] == "fmnist-lenet"
        assert ref.sha256 == manifest["stats"][split]["sha256"]
        assert ref.mu.shape == (128,)
    assert ref.meta["num_samples"] == 10000


def test_feature_net_refuses_a_modified_file(tmp_path):
    copy = tmp_path / "fmnist_lenet.safetensors"
    data = bytearray((fn.ASSETS_DIR / fn.WEIGHTS_FILENAME).read_bytes())
    data[-1] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        fn.load_feature_net(copy, expected_sha256=fn.SHIPPED_WEIGHTS_SHA256)


@needs_fmnist
def test_feature_net_accuracy_and_reference_statistics_on_real_data():
    net = fn.load_feature_net()
    images, labels = fn.load_fashion_mnist("test")  # all 10k: the shipped statistics are checked below
    acc = fn.accuracy(net, images[:1000], labels[:1000])
    assert acc >= 0.85
    assert abs(acc - shipped_manifest()["test_accuracy"]) < 0.04  # the recorded number is over all 10k
    # the shipped test statistics are those of these weights on the real test split
    ref_test = load_stats(str(fn.reference_stats_path("test")))
    stats = compute_feature_stats([images[i:i + 2500] for i in range(0, 10000, 2500)], net)
    np.testing.assert_allclose(stats.mean, ref_test.mu, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stats.cov, ref_test.sigma, rtol=1e-4, atol=1e-5 * np.abs(ref_test.sigma).max())
    # train vs test split is close; noise is far
    ref_train = load_stats(str(fn.reference_stats_path("train")))
    fid_train_test = frechet_distance(ref_train.mu, ref_train.sigma, ref_test.mu, ref_test.sigma)
    noise = torch.rand(500, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    fid_noise = compute_fid(iter([noise]), net, ref_train, num_samples=500)
    fid_subset = compute_fid(iter([images[:500]]), net, ref_train, num_samples=500)
    assert fid_train_test < 0.01 * fid_noise
    assert fid_train_test < fid_subset < 0.1 * fid_noise  # 500 real images: small-sample bias, still far from noise


@needs_fmnist
def test_feature_net_trains_on_first_use_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path))
    monkeypatch.setattr(fn, "ASSETS_DIR", tmp_path / "no_assets")
    quick = {"epochs": 1, "max_size": 256, "batch_size": 64}
    net = fn.load_feature_net(train_kwargs=quick)
    cache = tmp_path / ".cache" / "fastgen_metrics"
    manifest = json.loads((cache / fn.MANIFEST_FILENAME).read_text())
    assert net.weights_sha256 == manifest["sha256"] == hashlib.sha256(
        (cache / fn.WEIGHTS_FILENAME).read_bytes()).hexdigest()
    ref = load_stats(str(fn.reference_stats_path("test")))
    assert Path(ref.path).parent == cache and ref.meta["feature_net_sha256"] == net.weights_sha256
    assert ref.meta["num_samples"] == 256
    # deterministic: the same recipe gives the same bits
    again = fn.train_feature_net(out_dir=tmp_path / "again", **quick)
    assert again["sha256"] == manifest["sha256"]
    assert fn.load_feature_net().weights_sha256 == manifest["sha256"]  # cached: not trained again


# --- scripts/fid/fid.py -----------------------------------------------------------------------------------------------
def test_fid_cli_ref_and_calc_on_npz(tmp_path, capsys):
    sys.path.insert(0, str(REPO / "scripts" / "fid"))
    try:
        import fid as fid_cli
    finally:
        sys.path.pop(0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(64, 32, 32, 1), dtype=np.uint8)  # NHWC uint8, like ADM sample files
    np.savez(tmp_path / "a.npz", arr_0=images)
    ref_path = tmp_path / "ref.npz"
    assert fid_cli.main(["ref", "--data", str(tmp_path / "a.npz"), "--dest", str(ref_path), "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    ref = load_stats(str(ref_path))
    assert out["sha256"] == ref.sha256 and ref.meta["num_samples"] == 64
    assert ref.meta["feature_net_sha256"] == fn.SHIPPED_WEIGHTS_SHA256
    assert fid_cli.main(["calc", "--images", str(tmp_path / "a.npz"), "--ref", str(ref_path), "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert abs(result["fid"]) < 1e-6 * np.trace(ref.sigma) and result["ref_sha256"] == ref.sha256
    np.savez(tmp_path / "b.npz", samples=np.clip(images.astype(int) + 40, 0, 255).astype(np.uint8))
    assert fid_cli.main(["calc", "--images", str(tmp_path / "b.npz"), "--ref", str(ref_path), "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["fid"] > 1.0


# --- scripts/fid/compute_fid_from_ckpts.py ----------------------------------------------------------------------------
TINY_CONFIG = '''
from fastgen.configs.methods import config_sft
from fastgen.utils import LazyCall as L


def create_config():
    config = config_sft.create_config()
    config.model.net = L("fastgen.networks.EDM.network.EDMPrecond")(
        img_resolution=32, img_channels=1, label_dim=10, model_type="SongUNet", model_channels=8,
        channel_mult=[1, 2], num_blocks=1, attn_resolutions=[], dropout=0.0, label_dropout=0.0)
    config.model.input_shape = [1, 32, 32]
    config.model.device = "cpu"
    config.model.use_ema = True
    config.model.student_sample_steps = 1
    config.model.precision = "float32"
    config.log_config.group = "fid"
    config.log_config.name = "tiny"
    config.log_config.wandb_mode = "disabled"
    config.eval.num_samples = 24
    return config
'''


def _sweep_module():
    sys.path.insert(0, str(REPO / "scripts" / "fid"))
    try:
        import compute_fid_from_ckpts
    finally:
        sys.path.pop(0)
    return compute_fid_from_ckpts


def _save_checkpoint(model, save_dir: str, iteration: int, seed: int) -> None:
    from fastgen.utils.checkpointer import Checkpointer, collect_state

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in (model.net, model.ema):
            for p in module.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.05)
    Checkpointer(save_dir).save(collect_state(model, iteration=iteration), iteration)


def test_compute_fid_from_ckpts_sweeps_new_checkpoints(tmp_path, monkeypatch):
    from fastgen.cli import parse_args, resolve_config
    from fastgen.metrics import load_feature_extractor
    from fastgen.utils import instantiate

    sweep = _sweep_module()
    monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path / "out"))
    config_path = tmp_path / "tiny_config.py"
    config_path.write_text(TINY_CONFIG)
    argv = [f"--config={config_path}", "--batch_size", "10", "-", "eval.max_ckpt=250"]
    config = resolve_config(parse_args(argv, sweep.build_parser()))
    model = instantiate(config.model_class, config=config.model)
    save_dir = config.trainer.checkpointer.save_dir
    for iteration, seed in ((100, 1), (200, 2), (300, 3)):  # 300 is above eval.max_ckpt
        _save_checkpoint(model, save_dir, iteration, seed)
    Path(save_dir, "0000250.pth").write_bytes(b"PK\x03\x04 truncated")  # unreadable: reported and skipped

    assert sweep.main(argv) == 0
    fid_json = Path(config.log_config.save_path) / "fid.json"
    results = json.loads(fid_json.read_text())
    assert results["ckpt_num"] == [100, 200]
    assert results["num_samples"] == 24 and results["seed_range"] == [0, 23]
    assert results["feature_net"] == "fmnist-lenet" and results["feature_net_sha256"] == fn.SHIPPED_WEIGHTS_SHA256
    assert results["ref_sha256"] == load_stats(str(fn.reference_stats_path("train"))).sha256

    # the value: the checkpoint's EMA weights (not 'net') through generator_fn, measured independently here
    extractor = load_feature_extractor("fmnist")
    ref = load_stats(str(fn.reference_stats_path("train")))
    state = torch.load(Path(save_dir) / "0000200.pth", weights_only=True)
    fids = {}
    for name in ("ema", "net"):
        model.net.load_state_dict(state["model"][name])
        generate = sweep.make_generate_fn(model, model.net, seed=0, student_sample_steps=1)
        images = torch.cat([generate(0, 10), generate(10, 10), generate(20, 4)])
        fids[name] = compute_fid(iter([images]), extractor, ref, num_samples=24)
    assert results["fid"][1] == pytest.approx(fids["ema"], rel=1e-6)
    assert abs(fids["net"] - fids["ema"]) > 1e-3 * fids["ema"]

    # --network picks the raw weights into their own file; a name the checkpoints lack is a clear error
    assert sweep.main(["--network", "net", *argv]) == 0
    net_results = json.loads((Path(config.log_config.save_path) / "fid_net.json").read_text())
    assert net_results["ckpt_num"] == [100, 200] and net_results["fid"][1] == pytest.approx(fids["net"], rel=1e-6)
    with pytest.raises(Exception, match="has no network 'ema_9'"):
        sweep.main(["--network", "ema_9", *argv])

    # a second run only adds what is new
    first = fid_json.read_text()
    assert sweep.main(argv) == 0
    assert fid_json.read_text() == first
    shutil.copy(Path(save_dir) / "0000100.pth", Path(save_dir) / "0000150.pth")
    assert sweep.main(argv) == 0
    results = json.loads(fid_json.read_text())
    assert results["ckpt_num"] == [100, 150, 200]
    assert results["fid"][1] == pytest.approx(results["fid"][0], rel=1e-9)  # same weights, same seeds

    # another protocol (sample count) is refused instead of mixing incomparable numbers
    with pytest.raises(ValueError, match="num_samples"):
        sweep.main([f"--config={config_path}", "-", "eval.num_samples=12"])


def test_seeded_inputs_do_not_depend_on_batching():
    sweep = _sweep_module()
    noise_a, labels_a = sweep.seeded_inputs(0, 6, seed=5, shape=[1, 4, 4], label_dim=10)
    noise_b1, labels_b1 = sweep.seeded_inputs(0, 2, seed=5, shape=[1, 4, 4], label_dim=10)
    noise_b2, labels_b2 = sweep.seeded_inputs(2, 4, seed=5, shape=[1, 4, 4], label_dim=10)
    assert torch.equal(noise_a, torch.cat([noise_b1, noise_b2]))
    assert torch.equal(labels_a, torch.cat([labels_b1, labels_b2]))
    assert torch.equal(labels_a.sum(1), torch.ones(6))
    noise_c, labels_c = sweep.seeded_inputs(0, 6, seed=6, shape=[1, 4, 4], label_dim=0)
    assert labels_c is None and not torch.equal(noise_c, noise_a)


# --- distributed: ranks split the samples and sum their statistics -------------------------------------------------------
def _fake_images(start: int, count: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1234)
    return (torch.rand(50, 1, 4, 4, generator=generator) * 1.6 - 0.7)[start:start + count]


def _distributed_worker(rank: int, world_size: int, init_file: str, ref: RefStats, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        value = compute_fid(_fake_images, LinearFeatures(), ref, num_samples=50, batch_size=8)
        one_batch = compute_fid(_fake_images, LinearFeatures(), ref, num_samples=50, batch_size=50)  # rank 1: none
        Path(out_dir, f"rank{rank}.txt").write_text(f"{value!r} {one_batch!r}")
    finally:
        dist.destroy_process_group()


def test_compute_fid_under_torch_distributed_equals_single_process(tmp_path):
    import torch.multiprocessing as mp

    net = LinearFeatures()
    real = torch.rand(80, 1, 4, 4, generator=torch.Generator().manual_seed(7)) * 2 - 1
    stats = compute_feature_stats([real], net)
    ref = RefStats(mu=stats.mean, sigma=stats.cov)
    single = compute_fid(_fake_images, net, ref, num_samples=50, batch_size=8)
    mp.spawn(_distributed_worker, args=(2, str(tmp_path / "init"), ref, str(tmp_path)), nprocs=2, join=True)
    values = [[float(v) for v in Path(tmp_path, f"rank{r}.txt").read_text().split()] for r in range(2)]
    assert values[0] == values[1]
    assert values[0][0] == pytest.approx(single, rel=1e-9)  # rank 0 had batches 0,2,..; rank 1 batches 1,3,..
    assert values[0][1] == pytest.approx(single, rel=1e-9)


def test_compute_fid_from_ckpts_refuses_a_non_image_config(tmp_path, monkeypatch, capsys):
    from fastgen.cli import run_cli

    monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path))
    sweep = _sweep_module()
    code = run_cli(sweep.main, ["--config=fastgen/configs/experiments/Toy/config_sft.py"])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: compute_fid_from_ckpts.py works on pixel images [C, H, W] with 1 or 3 channels, but this config's "
        "model.input_shape=[2] describes vectors; pass an image experiment's config")
