"""Datasets: EDM zip / folder images, IDX (Fashion-MNIST), Gaussian mixture, KD shards, download conversions."""

import gzip
import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
import zipfile

import numpy as np
import PIL.Image
import pytest
import torch

from fastgen.datasets.download import (
    cifar10_tar_to_edm_zip,
    download_cifar10,
    download_dataset,
    download_file,
    idx_to_edm_zip,
    md5_of,
    read_cifar_batch,
)
from fastgen.datasets.gaussian_mixture import GaussianMixtureDataset, GaussianMixtureLoader
from fastgen.datasets.idx_loader import (
    DEBIAN_FASHION_MNIST_DIR,
    FashionMNISTLoader,
    locate_idx_root,
    read_idx,
    write_idx,
)
from fastgen.datasets.image_folder import ImageFolderDataset
from fastgen.datasets.image_loader import ImageLoader
from fastgen.datasets.kd_dataset import TeacherPairLoader, generate_teacher_pairs, save_shard
from fastgen.utils.gmm import make_gmm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABELS = [0, 2, 1, 2, 0]


def make_pixels(n=5, size=8, channels=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, channels), dtype=np.uint8)


def png_bytes(array):
    buffer = io.BytesIO()
    PIL.Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(buffer, format="png")
    return buffer.getvalue()


def make_zip(path, pixels, labels=LABELS, extra=None):
    with zipfile.ZipFile(path, "w") as archive:
        names = [f"00000/img{i:08d}.png" for i in range(len(pixels))]
        for name, image in zip(names, pixels):
            archive.writestr(name, png_bytes(image))
        if labels is not None:
            archive.writestr("dataset.json", json.dumps({"labels": [[n, lab] for n, lab in zip(names, labels)]}))
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return str(path)


def expected_real(image):  # HWC uint8 -> CHW float in [-1, 1]
    return torch.from_numpy(image.transpose(2, 0, 1).astype(np.float32) / 127.5 - 1)


# ------------------------------------------------------------------------------------------------ image datasets
def test_edm_zip_values_labels_and_xflip(tmp_path):
    pixels = make_pixels()
    ds = ImageFolderDataset(make_zip(tmp_path / "d.zip", pixels), xflip=True)
    assert len(ds) == 10 and ds.label_dim == 3 and ds.image_shape == (3, 8, 8)
    for i in range(5):
        item = ds[i]
        assert torch.equal(item["real"], expected_real(pixels[i]))
        assert item["condition"].tolist() == [float(c == LABELS[i]) for c in range(3)]
        assert item["neg_condition"].tolist() == [0.0, 0.0, 0.0] and int(item["idx"]) == i
        mirrored = ds[i + 5]
        assert torch.equal(mirrored["real"], expected_real(pixels[i]).flip(2))
        assert torch.equal(mirrored["condition"], item["condition"])
    assert float(ds[0]["real"].min()) >= -1 and float(ds[0]["real"].max()) <= 1


def test_folder_variant_grayscale_and_unlabelled(tmp_path):
    pixels = make_pixels(channels=1, seed=1)
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    for i, image in enumerate(pixels):
        (folder / "sub" / f"{i}.png").write_bytes(png_bytes(image))
    ds = ImageFolderDataset(str(folder), use_labels=False)
    assert ds.image_shape == (1, 8, 8) and ds.label_dim == 0
    assert torch.equal(ds[3]["real"], expected_real(pixels[3]))
    assert ds[3]["condition"].shape == (0,)
    with pytest.raises(ValueError, match="no dataset.json"):
        ImageFolderDataset(str(folder), use_labels=True)


def test_image_loader_batches_and_workers(tmp_path):
    pixels = make_pixels(n=6, seed=2)
    path = make_zip(tmp_path / "d.zip", pixels, labels=[0, 1, 2, 3, 4, 5])
    loader = ImageLoader(path, batch_size=4, shuffle=False)
    batch = next(iter(loader))
    assert batch["idx"].tolist() == [0, 1, 2, 3] and loader.label_dim == 6
    assert torch.equal(batch["real"], torch.stack([expected_real(p) for p in pixels[:4]]))
    assert torch.equal(batch["condition"], torch.eye(6)[:4])
    plain = ImageLoader(path, batch_size=3, seed=7, xflip=True)
    workers = ImageLoader(path, batch_size=3, seed=7, xflip=True, num_workers=1)
    for a, b, _ in zip(iter(plain), iter(workers), range(5)):
        assert torch.equal(a["real"], b["real"]) and torch.equal(a["idx"], b["idx"])
    assert ImageLoader(path, batch_size=2, max_size=3).dataset.file_names[-1] == "00000/img00000002.png"


def test_relative_path_resolves_under_data_root(tmp_path, monkeypatch):
    make_zip(tmp_path / "cifar.zip", make_pixels())
    monkeypatch.setenv("DATA_ROOT_DIR", str(tmp_path))
    assert ImageLoader("cifar.zip", batch_size=2).dataset.path == os.path.join(str(tmp_path), "cifar.zip")


def test_image_dataset_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset not found at .*nope.zip; set DATA_ROOT_DIR"):
        ImageLoader(str(tmp_path / "nope.zip"), batch_size=2)
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"this is not a zip file at all" * 10)
    with pytest.raises(ValueError, match="garbage.zip is not a valid zip"):
        ImageFolderDataset(str(garbage))
    good = make_zip(tmp_path / "good.zip", make_pixels())
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(open(good, "rb").read()[:300])
    with pytest.raises(ValueError, match="truncated.zip"):
        ImageFolderDataset(str(truncated))
    bad = make_zip(tmp_path / "bad.zip", make_pixels(n=2), labels=None, extra={"00000/zz_bad.png": b"not a png"})
    ds = ImageFolderDataset(bad, use_labels=False)
    with pytest.raises(ValueError, match="zz_bad.png"):
        ds[2]
    with pytest.raises(ValueError, match="no dataset.json"):
        ImageFolderDataset(make_zip(tmp_path / "nolabels.zip", make_pixels(), labels=None), use_labels=True)
    with pytest.raises(ValueError, match="expected resolution 16"):
        ImageFolderDataset(good, resolution=16)


# ---------------------------------------------------------------------------------------------------------- IDX
@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32])
def test_idx_round_trip(tmp_path, suffix, dtype):
    array = (np.arange(2 * 3 * 5).reshape(2, 3, 5) * 7 - 11).astype(dtype)
    if dtype == np.uint8:
        array = np.arange(30, dtype=np.uint8).reshape(2, 3, 5)
    path = str(tmp_path / f"a-idx3-ubyte{suffix}")
    write_idx(array, path)
    back = read_idx(path)
    assert back.dtype == array.dtype and np.array_equal(back, array)


def test_idx_corruption_errors(tmp_path):
    path = tmp_path / "x-idx1-ubyte"
    write_idx(np.arange(10, dtype=np.uint8), str(path))
    data = path.read_bytes()
    (tmp_path / "magic").write_bytes(b"\x01\x00" + data[2:])
    with pytest.raises(ValueError, match="bad magic number 0x01000801"):
        read_idx(str(tmp_path / "magic"))
    (tmp_path / "short").write_bytes(data[:-3])
    with pytest.raises(ValueError, match=r"is truncated: header shape \(10,\) needs 10 data bytes, found 7"):
        read_idx(str(tmp_path / "short"))
    (tmp_path / "short.gz").write_bytes(gzip.compress(data)[:-6])
    with pytest.raises(ValueError, match="corrupt or truncated gzip"):
        read_idx(str(tmp_path / "short.gz"))


def write_idx_dataset(folder, n=6, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) * 3 % 10).astype(np.uint8)
    for split in ("train", "t10k"):
        write_idx(images, str(folder / f"{split}-images-idx3-ubyte.gz"))
        write_idx(labels, str(folder / f"{split}-labels-idx1-ubyte.gz"))
    return images, labels


def test_fashion_mnist_loader_pads_with_background(tmp_path):
    images, labels = write_idx_dataset(tmp_path / "fm")
    loader = FashionMNISTLoader(root=str(tmp_path / "fm"), batch_size=3, shuffle=False)
    batch = next(iter(loader))
    real = batch["real"]
    assert real.shape == (3, 1, 32, 32)
    expected = torch.from_numpy(images[:3].astype(np.float32) / 127.5 - 1)
    assert torch.equal(real[:, 0, 2:30, 2:30], expected)
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert (real[:, 0][:, border] == -1).all()
    assert batch["condition"].argmax(1).tolist() == labels[:3].tolist() and batch["condition"].sum().item() == 3
    resized = next(iter(FashionMNISTLoader(root=str(tmp_path / "fm"), split="test", batch_size=2,
                                           resolution=16, resize_type="resize", use_labels=False)))
    assert resized["real"].shape == (2, 1, 16, 16) and resized["condition"].shape == (2, 0)
    assert -1 <= float(resized["real"].min()) and float(resized["real"].max()) <= 1


def test_fashion_mnist_root_search_and_missing_message(tmp_path, monkeypatch):
    write_idx_dataset(tmp_path / "fashion_mnist")
    monkeypatch.setenv("DATA_ROOT_DIR", str(tmp_path))
    assert FashionMNISTLoader(batch_size=2).root == str(tmp_path / "fashion_mnist")
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist.*download_data.py --dataset"):
        locate_idx_root(None, "fashion_mnist_absent", (), FashionMNISTLoader.how_to_get)


@pytest.mark.skipif(not os.path.isdir(DEBIAN_FASHION_MNIST_DIR), reason="Debian dataset-fashion-mnist not installed")
def test_real_fashion_mnist_test_split():
    loader = FashionMNISTLoader(root=DEBIAN_FASHION_MNIST_DIR, split="test", batch_size=4)
    assert len(loader.dataset) == 10000
    counts = torch.bincount(loader.dataset.labels, minlength=10)
    assert counts.tolist() == [1000] * 10


# ------------------------------------------------------------------------------------------- download conversions
def cifar_batch_bytes(rng, n):
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).tolist()
    return pickle.dumps({b"data": data, b"labels": labels, b"batch_label": b"x"}, protocol=2), data, labels


def fake_cifar_tarball(tar_path, rng):
    """A CIFAR-10 python tarball with 2 images per batch; returns the train pixels and labels in order."""
    all_data, all_labels = [], []
    with tarfile.open(tar_path, "w:gz") as archive:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            payload, data, labels = cifar_batch_bytes(rng, 2)
            if name != "test_batch":
                all_data.append(data)
                all_labels += labels
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    return all_data, all_labels


def test_cifar10_tarball_to_edm_zip(tmp_path):
    rng = np.random.default_rng(0)
    tar_path = tmp_path / "cifar-10-python.tar.gz"
    all_data, all_labels = fake_cifar_tarball(tar_path, rng)
    out = cifar10_tar_to_edm_zip(str(tar_path), str(tmp_path / "cifar10-32x32.zip"))
    ds = ImageFolderDataset(out, label_dim=10)
    pixels = np.concatenate(all_data).reshape(-1, 3, 32, 32)
    assert len(ds) == 10 and ds.label_dim == 10
    for i in range(10):
        assert torch.equal(ds[i]["real"], torch.from_numpy(pixels[i].astype(np.float32) / 127.5 - 1))
        assert int(ds[i]["condition"].argmax()) == all_labels[i]


def test_cifar_batch_reader_refuses_code():
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with pytest.raises(ValueError, match="refusing to load"):
        read_cifar_batch(pickle.dumps({b"data": Evil(), b"labels": []}))


def test_idx_to_edm_zip_and_checked_download(tmp_path):
    images, labels = write_idx_dataset(tmp_path / "mn", n=4)
    ds = ImageFolderDataset(idx_to_edm_zip(str(tmp_path / "mn"), str(tmp_path / "mn.zip")))
    assert ds.image_shape == (1, 28, 28)
    assert torch.equal(ds[2]["real"][0], torch.from_numpy(images[2].astype(np.float32) / 127.5 - 1))
    source = tmp_path / "mn" / "train-images-idx3-ubyte.gz"
    url = "file://" + str(source)
    dest = str(tmp_path / "dl" / "file.gz")
    assert download_file(["file:///nonexistent/x", url], dest, md5_of(str(source))) == dest
    assert md5_of(dest) == md5_of(str(source))
    with pytest.raises(RuntimeError, match="does not match the published"):
        download_file([url], str(tmp_path / "dl" / "other.gz"), "0" * 32)
    assert not os.path.exists(tmp_path / "dl" / "other.gz")


def test_download_script_help():
    result = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "download_data.py"), "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--dataset {cifar10,fashion_mnist,imagenet-256,imagenet-64,mnist}" in result.stdout


def download_script():
    """scripts/download_data.py as a module (its main in-process: no interpreter start per check)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("download_data", os.path.join(REPO, "scripts", "download_data.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cifar10_from_a_mirror_checks_the_published_md5(tmp_path, capsys):
    """A fake tarball served from a file:// mirror: refused by the published checksum (exit 1, nothing kept), and
    converted into the zip the CIFAR-10 config reads when its own checksum is the expected one."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    data, labels = fake_cifar_tarball(mirror / "cifar-10-python.tar.gz", np.random.default_rng(1))
    code = download_script().main(["--dataset", "cifar10", "--dest", str(tmp_path / "data"), "--mirror",
                                   f"file://{mirror}"])
    assert code == 1 and "does not match the published c58f30108f718f92721af3b95e74349a" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "data" / "cifar10" / "cifar-10-python.tar.gz")
    out = download_cifar10(str(tmp_path / "data"), mirror=f"file://{mirror}",
                           md5=md5_of(str(mirror / "cifar-10-python.tar.gz")))
    assert out == str(tmp_path / "data" / "cifar10" / "cifar10-32x32.zip")
    ds = ImageFolderDataset(out, label_dim=10)
    assert len(ds) == 10 and int(ds[9]["condition"].argmax()) == labels[9]
    assert torch.equal(ds[0]["real"], torch.from_numpy(np.concatenate(data)[0].reshape(3, 32, 32).astype(np.float32) / 127.5 - 1))


def test_imagenet64_from_ilsvrc_layout_and_instructions(tmp_path, capsys):
    train = tmp_path / "src" / "ILSVRC" / "Data" / "CLS-LOC" / "train"
    for wnid, grey in (("n01440764", 40), ("n01443537", 200)):
        (train / wnid).mkdir(parents=True)
        for k in range(2):
            PIL.Image.new("RGB", (150 + 10 * k, 130), (grey, grey, grey)).save(train / wnid / f"{wnid}_{k}.JPEG")
    out = download_dataset("imagenet-64", str(tmp_path / "data"), imagenet_source=str(tmp_path / "src"))
    assert out == str(tmp_path / "data" / "imagenet-64" / "imagenet-64x64.zip")
    ds = ImageFolderDataset(out, label_dim=1000)
    assert len(ds) == 4 and ds.image_shape == (3, 64, 64)
    for i, (label, grey) in enumerate([(0, 40), (0, 40), (1, 200), (1, 200)]):
        assert int(ds[i]["condition"].argmax()) == label
        assert abs(float(ds[i]["real"].mean()) - (grey / 127.5 - 1)) < 0.02  # JPEG of a flat grey
    code = download_script().main(["--dataset", "imagenet-64", "--dest", str(tmp_path / "data2")])
    err = capsys.readouterr().err
    assert code == 2 and "ILSVRC/Data/CLS-LOC/train" in err and "Traceback" not in err


# ----------------------------------------------------------------------------------------------- Gaussian mixture
def test_gmm_loader_moments_match_mixture():
    loader = GaussianMixtureLoader("ring8", dim=2, batch_size=4096, use_labels=True, seed=3)
    it = iter(loader)
    batches = [next(it) for _ in range(4)]
    x = torch.cat([b["real"] for b in batches]).double()
    gmm = make_gmm("ring8", 2)
    mean = (gmm.weights[:, None] * gmm.means).sum(0)
    second = (gmm.weights[:, None, None] * (torch.diag_embed(gmm.stds[:, None].expand(-1, 2) ** 2)
                                            + gmm.means[:, :, None] * gmm.means[:, None, :])).sum(0)
    cov = second - torch.outer(mean, mean)
    assert torch.allclose(x.mean(0), mean, atol=0.03)
    assert torch.allclose(torch.cov(x.T), cov, atol=0.04)
    labels = torch.cat([b["condition"] for b in batches]).argmax(1)
    dist_to_own_mode = (x - gmm.means[labels]).norm(dim=1)
    assert float(dist_to_own_mode.max()) < 6 * float(gmm.stds[0]) * 1.5
    assert batches[0]["condition"].shape == (4096, 8)


def test_gmm_world_size_invariance_and_resume():
    one = GaussianMixtureLoader(batch_size=8, seed=1, rank=0, world_size=1)
    two = [GaussianMixtureLoader(batch_size=4, seed=1, rank=r, world_size=2) for r in range(2)]
    its = [iter(one)] + [iter(t) for t in two]
    for _ in range(300):  # crosses several 1024-item blocks
        a, b, c = (next(i) for i in its)
        assert torch.equal(a["real"], torch.cat([b["real"], c["real"]]))
    resumed = GaussianMixtureLoader(batch_size=8, seed=1, sampler_start_idx=one.position, rank=0, world_size=1)
    assert torch.equal(next(iter(resumed))["real"], next(its[0])["real"])
    fresh = GaussianMixtureDataset(make_gmm("ring8", 2), seed=1)
    assert torch.equal(fresh[2400]["real"], fresh.__getitems__([5, 2400])["real"][1])
    assert not torch.equal(GaussianMixtureDataset(make_gmm("ring8", 2), seed=2)[0]["real"], fresh[0]["real"])


def test_gmm_finite_dataset_is_cycled():
    loader = GaussianMixtureLoader(batch_size=5, seed=0, num_samples=10)
    it = iter(loader)
    idx = torch.cat([next(it)["idx"] for _ in range(4)])
    assert sorted(idx[:10].tolist()) == list(range(10)) and sorted(idx[10:].tolist()) == list(range(10))
    infinite = GaussianMixtureDataset(make_gmm("ring8", 2), seed=0)
    assert torch.equal(loader.dataset[7]["real"], infinite[7]["real"])


# ----------------------------------------------------------------------------------------------------- KD shards
def halving_teacher(x, t_cur, t_next, condition):
    shift = 0.0 if condition is None else condition.argmax(1).to(x.dtype).view(-1, 1, 1, 1)
    return x * 0.5 + float(t_next) + shift


@pytest.mark.parametrize("ext", [".pt", ".safetensors"])
def test_teacher_pairs_round_trip(tmp_path, ext):
    noise = torch.randn(6, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    condition = torch.eye(3)[[0, 1, 2, 0, 1, 2]]
    t_list = [80.0, 2.0, 0.0]
    out = str(tmp_path / f"shard{ext}")
    written = generate_teacher_pairs(halving_teacher, noise, condition, t_list, out, batch_size=4)
    shift = condition.argmax(1).view(-1, 1, 1, 1).float()
    step1 = noise * 0.5 + 2.0 + shift
    step2 = step1 * 0.5 + 0.0 + shift
    assert torch.equal(written["path"][:, 0], noise) and torch.equal(written["path"][:, 1], step1)
    assert torch.equal(written["real"], step2) and written["path"].shape == (6, 3, 1, 4, 4)
    loader = TeacherPairLoader(out, batch_size=6, shuffle=False)
    batch = next(iter(loader))
    assert torch.equal(batch["noise"], noise) and torch.equal(batch["real"], step2)
    assert torch.equal(batch["path"], written["path"]) and torch.equal(batch["condition"], condition)
    assert torch.equal(batch["neg_condition"], torch.zeros(6, 3)) and batch["idx"].tolist() == list(range(6))
    assert loader.t_list.tolist() == t_list


def test_teacher_pair_directory_and_errors(tmp_path):
    for i in range(2):
        save_shard({"noise": torch.full((3, 2), float(i)), "real": torch.full((3, 2), 10.0 + i)},
                   str(tmp_path / f"s{i}.safetensors"))
    loader = TeacherPairLoader(str(tmp_path), batch_size=6, shuffle=False)
    batch = next(iter(loader))
    assert batch["real"][:, 0].tolist() == [10.0] * 3 + [11.0] * 3 and batch["condition"].shape == (6, 0)
    assert "path" not in batch
    save_shard({"noise": torch.zeros(2, 2)}, str(tmp_path / "bad" / "b.pt"))
    with pytest.raises(ValueError, match="has no 'real' tensor"):
        TeacherPairLoader(str(tmp_path / "bad"), batch_size=2)
    with pytest.raises(FileNotFoundError, match="KD data not found"):
        TeacherPairLoader(str(tmp_path / "missing.pt"), batch_size=2)


def test_npy_latents_are_returned_as_stored(tmp_path):
    latents = np.random.default_rng(3).standard_normal((3, 4, 2, 2)).astype(np.float32)
    for i, latent in enumerate(latents):
        np.save(tmp_path / f"{i}.npy", latent)
    ds = ImageFolderDataset(str(tmp_path), use_labels=False)
    assert ds.image_shape == (4, 2, 2)
    assert torch.equal(ds[1]["real"], torch.from_numpy(latents[1]))
