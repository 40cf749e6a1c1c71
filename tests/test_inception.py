"""The FID InceptionV3: architecture, state-dict layout, loading (pth / safetensors), determinism, clear errors."""

from __future__ import annotations

import hashlib

import pytest
import torch

from fastgen.metrics import inception as inc
from fastgen.metrics.inception import InceptionV3FID, load_inception


@pytest.fixture(scope="module")
def random_inception():
    torch.manual_seed(0)
    net = InceptionV3FID()
    with torch.no_grad():  # variance-preserving convs and non-trivial BatchNorm buffers (so loading them matters)
        for module in net.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.8, 1.2)
                module.weight.uniform_(0.8, 1.2)
    return net.eval()


def test_architecture_matches_the_fid_inception(random_inception):
    net = random_inception
    trunk = sum(p.numel() for name, p in net.named_parameters() if not name.startswith("fc."))
    # torchvision InceptionV3 (27,161,264 parameters) minus AuxLogits (3,326,696) and its 1000-way fc (2,049,000)
    assert trunk == 27_161_264 - 3_326_696 - 2_049_000
    state = net.state_dict()
    assert state["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert state["Mixed_6b.branch7x7_2.conv.weight"].shape == (128, 128, 1, 7)
    assert state["Mixed_7c.branch3x3dbl_3b.bn.running_var"].shape == (384,)
    assert state["fc.weight"].shape == (1008, 2048)
    assert net.Conv2d_1a_3x3.bn.eps == 1e-3
    assert (net.Mixed_7b.pool_type, net.Mixed_7c.pool_type) == ("avg", "max")


def test_same_padding_average_pool_excludes_the_padding():
    ones = torch.ones(1, 1, 4, 4)
    assert torch.equal(inc.pool_3x3_same(ones, "avg"), ones)  # with padding counted, corners would be 4/9
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert inc.pool_3x3_same(x, "max")[0, 0, 0, 0] == 5.0
    assert inc.pool_3x3_same(x, "avg")[0, 0, 0, 0] == pytest.approx((0 + 1 + 4 + 5) / 4)


def test_preprocess_resizes_to_299_and_repeats_gray(random_inception):
    gray = torch.rand(2, 1, 32, 32) * 2 - 1
    out = random_inception.preprocess(gray)
    assert out.shape == (2, 3, 299, 299)
    assert torch.equal(out, random_inception.preprocess(gray.repeat(1, 3, 1, 1)))
    assert torch.equal(out[:, 0], out[:, 2])
    # bilinear, align_corners=False: a constant image stays constant, the range is preserved
    assert torch.allclose(random_inception.preprocess(torch.full((1, 3, 8, 8), 0.25)), torch.tensor(0.25))
    with pytest.raises(ValueError, match="1 or 3"):
        random_inception.preprocess(torch.zeros(1, 2, 8, 8))


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_load_roundtrip_gives_identical_2048d_features(random_inception, tmp_path, suffix):
    path = tmp_path / f"pt_inception-random{suffix}"
    state = {k: v.contiguous() for k, v in random_inception.state_dict().items()}
    if suffix == ".pth":
        torch.save(state, path)
    else:
        from safetensors.torch import save_file

        save_file(state, str(path))
    loaded = load_inception(path)
    assert loaded.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    loaded_state = loaded.state_dict()
    assert all(torch.equal(loaded_state[k], v) for k, v in state.items())
    if suffix == ".safetensors":
        return  # same tensors as the .pth case, whose forward is checked below (keeps the test cheap)
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():  # two independently built modules give the same bits
        feats = loaded(images)
        assert torch.equal(feats, random_inception(images))
    assert feats.shape == (2, 2048) and feats.dtype == torch.float32
    assert torch.isfinite(feats).all() and (feats >= 0).all()  # average of ReLU outputs
    assert (feats > 0).float().mean() > 0.1
    assert (feats[0] - feats[1]).abs().max() > 1e-3 * feats.abs().max()  # the features depend on the image


def test_missing_weights_error_names_the_flag_and_env_var(tmp_path, monkeypatch):
    monkeypatch.delenv(inc.INCEPTION_WEIGHTS_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match="FASTGEN_INCEPTION_WEIGHTS") as info:
        load_inception()
    assert "--inception_weights" in str(info.value) and inc.INCEPTION_WEIGHTS_URL in str(info.value)
    monkeypatch.setenv(inc.INCEPTION_WEIGHTS_ENV, str(tmp_path / "nope.pth"))
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_inception()


def test_wrong_layout_and_unsafe_files_are_refused(random_inception, tmp_path, monkeypatch):
    state = dict(random_inception.state_dict())
    del state["Mixed_6a.branch3x3.conv.weight"]
    partial = tmp_path / "partial.pth"
    torch.save(state, partial)
    monkeypatch.setenv(inc.INCEPTION_WEIGHTS_ENV, str(partial))
    with pytest.raises(ValueError, match="Mixed_6a.branch3x3.conv.weight"):
        load_inception()
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"obj": torch.nn.Identity()}, unsafe)  # a pickled module: loading it could run code
    with pytest.raises(ValueError, match="could run arbitrary code") as error:
        load_inception(unsafe)
    assert "weights_only" not in str(error.value)  # never the advice to turn the safe loader off
    with pytest.raises(ValueError, match="expected"):
        load_inception(partial, expected_sha256="0" * 64)
