"""InceptionV3 as used for FID (the TTUR / TensorFlow `inception-2015-12-05` graph), written for a local state dict.

FID numbers are only comparable when computed with this exact network, which differs from torchvision's InceptionV3:
  - average pools inside the A, C and first E blocks exclude the zero padding from the average;
  - the last E block (Mixed_7c) pools its pool branch with a 3x3 *max* pool;
  - BatchNorm eps is 1e-3 and the classifier has 1008 outputs (unused for FID).
Inputs are images in [-1, 1] (1 channel is repeated to 3), resized to 299x299 bilinearly (align_corners=False, the
pytorch-fid convention); the features are the 2048-d global average pool after Mixed_7c.

Weights are never downloaded implicitly (no internet at run time): pass a file, or set $FASTGEN_INCEPTION_WEIGHTS.
Supported layout: the widely used `pt_inception-2015-12-05-6726825d.pth` state dict (module names Conv2d_1a_3x3 ...
Mixed_7c, fc; each conv `X.conv.weight` + `X.bn.{weight,bias,running_mean,running_var}`), as `.pth` (loaded with
torch.load(weights_only=True)) or `.safetensors`. `download_inception_weights()` fetches that file for users.
"""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fastgen.metrics.fid import sha256_of_file

INCEPTION_NAME = "inception-v3-fid"
INCEPTION_WEIGHTS_ENV = "FASTGEN_INCEPTION_WEIGHTS"
INCEPTION_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
)
INCEPTION_WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_SHA256_PREFIX = "6726825d"  # the file name's hash suffix: the first hex digits of its sha256
INPUT_SIZE = 299
FEATURE_DIM = 2048
NUM_CLASSES = 1008
POOL_TYPES = ("avg", "max")


class ConvBN(nn.Module):
    """conv (no bias) -> BatchNorm(eps=1e-3) -> ReLU; the unit every Inception branch is built from."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_ch, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def pool_3x3_same(x: torch.Tensor, pool_type: str) -> torch.Tensor:
    """3x3 stride-1 pool keeping the size; the average excludes padding (TensorFlow's 'SAME' average pool)."""
    if pool_type == "avg":
        return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    return F.max_pool2d(x, 3, stride=1, padding=1)


class InceptionA(nn.Module):
    """35x35 block: 1x1 | 1x1->5x5 | 1x1->3x3->3x3 | pool->1x1  (outputs 224 + pool_features channels)."""

    def __init__(self, in_ch: int, pool_features: int):
        super().__init__()
        self.branch1x1 = ConvBN(in_ch, 64, 1)
        self.branch5x5_1 = ConvBN(in_ch, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(in_ch, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(in_ch, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(pool_3x3_same(x, "avg")),
        ], dim=1)


class InceptionB(nn.Module):
    """35->17 reduction: 3x3/2 | 1x1->3x3->3x3/2 | maxpool/2  (384 + 96 + in_ch channels)."""

    def __init__(self, in_ch: int):
        super().__init__()
        self.branch3x3 = ConvBN(in_ch, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(in_ch, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2),
        ], dim=1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (1x7 then 7x1); 768 channels out."""

    def __init__(self, in_ch: int, c7: int):
        super().__init__()
        self.branch1x1 = ConvBN(in_ch, 192, 1)
        self.branch7x7_1 = ConvBN(in_ch, c7, 1)
        self.branch7x7_2 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = ConvBN(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = ConvBN(in_ch, c7, 1)
        self.branch7x7dbl_2 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = ConvBN(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = ConvBN(in_ch, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d7 = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d7 = layer(d7)
        return torch.cat([self.branch1x1(x), b7, d7, self.branch_pool(pool_3x3_same(x, "avg"))], dim=1)


class InceptionD(nn.Module):
    """17->8 reduction: 1x1->3x3/2 | 1x1->1x7->7x1->3x3/2 | maxpool/2  (320 + 192 + in_ch channels)."""

    def __init__(self, in_ch: int):
        super().__init__()
        self.branch3x3_1 = ConvBN(in_ch, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(in_ch, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = layer(b7)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, stride=2)], dim=1)


class InceptionE(nn.Module):
    """8x8 block with split 1x3 / 3x1 outputs (2048 channels out); pool_type 'max' in Mixed_7c (the TF graph)."""

    def __init__(self, in_ch: int, pool_type: str):
        super().__init__()
        if pool_type not in POOL_TYPES:
            raise ValueError(f"pool_type must be one of {POOL_TYPES}; got {pool_type!r}")
        self.pool_type = pool_type
        self.branch1x1 = ConvBN(in_ch, 320, 1)
        self.branch3x3_1 = ConvBN(in_ch, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(in_ch, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(in_ch, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        d3 = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(b3), self.branch3x3_2b(b3),
            self.branch3x3dbl_3a(d3), self.branch3x3dbl_3b(d3),
            self.branch_pool(pool_3x3_same(x, self.pool_type)),
        ], dim=1)


class InceptionV3FID(nn.Module):
    """The FID InceptionV3: images [B, C, H, W] in [-1, 1] (C in {1, 3}) -> pool features [B, 2048]."""

    name = INCEPTION_NAME
    feature_dim = FEATURE_DIM

    def __init__(self, resize_inside: bool = True):
        super().__init__()
        self.resize_inside = resize_inside
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, c7=128)
        self.Mixed_6c = InceptionC(768, c7=160)
        self.Mixed_6d = InceptionC(768, c7=160)
        self.Mixed_6e = InceptionC(768, c7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool_type="avg")
        self.Mixed_7c = InceptionE(2048, pool_type="max")
        self.fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)  # kept so the standard state dict loads strictly; unused
        self.weights_sha256 = ""  # set by load_inception

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"Inception takes images [B, 1 or 3, H, W] in [-1, 1]; got shape {tuple(images.shape)}")
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        if self.resize_inside and tuple(images.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
            images = F.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        return images

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(images.float())
        x = F.max_pool2d(self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x))), 3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return x.mean(dim=(2, 3))


# Keys a state dict may lack without changing the features.
OPTIONAL_KEY_SUFFIXES = ("num_batches_tracked",)
OPTIONAL_KEY_PREFIXES = ("fc.",)


def resolve_weights_path(path: str | os.PathLike | None = None) -> Path:
    """`path`, else $FASTGEN_INCEPTION_WEIGHTS; a clear error saying how to provide the file when neither exists."""
    chosen = path or os.environ.get(INCEPTION_WEIGHTS_ENV)
    how = (f"pass --inception_weights FILE or set {INCEPTION_WEIGHTS_ENV}=FILE, where FILE is "
           f"{INCEPTION_WEIGHTS_FILENAME} (download it once with `python -c \"from fastgen.metrics.inception import "
           f"download_inception_weights; download_inception_weights('FILE')\"` from {INCEPTION_WEIGHTS_URL})")
    if not chosen:
        raise FileNotFoundError(f"no Inception weights given: {how}")
    if not os.path.isfile(chosen):
        raise FileNotFoundError(f"Inception weights file not found: {chosen}; {how}")
    return Path(chosen)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A flat tensor state dict from .safetensors or a torch file (weights_only=True: loading never runs code)."""
    path = str(path)
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    from fastgen.utils.checkpointer import CheckpointError, safe_torch_load

    try:
        state = safe_torch_load(path)
    except CheckpointError as error:  # unsafe pickle (e.g. a TorchScript archive), truncated file ...
        raise ValueError(f"cannot load Inception weights: {error} (expected the {INCEPTION_WEIGHTS_FILENAME} "
                         "layout; a TorchScript .pt model is not supported)") from error
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a flat tensor state dict")
    return state


def load_inception(path: str | os.PathLike | None = None, device: Any = "cpu",
                   expected_sha256: str | None = None) -> InceptionV3FID:
    """The FID Inception in eval mode with weights from `path` (or $FASTGEN_INCEPTION_WEIGHTS); the file's sha256 is
    recorded on the module (`weights_sha256`) and checked against `expected_sha256` when given."""
    path = resolve_weights_path(path)
    sha = sha256_of_file(str(path))
    if expected_sha256 and sha != expected_sha256:
        raise ValueError(f"{path} has sha256 {sha}, expected {expected_sha256}")
    state = read_state_dict(path)
    net = InceptionV3FID()
    result = net.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys
               if not (k.endswith(OPTIONAL_KEY_SUFFIXES) or k.startswith(OPTIONAL_KEY_PREFIXES))]
    unexpected = [k for k in result.unexpected_keys if not k.startswith("AuxLogits.")]
    if missing or unexpected:
        raise ValueError(f"{path} is not an FID Inception state dict ({INCEPTION_WEIGHTS_FILENAME} layout): "
                         f"{len(missing)} missing keys {missing[:5]}, {len(unexpected)} unexpected keys "
                         f"{unexpected[:5]}")
    net.weights_sha256 = sha
    return net.to(device).eval().requires_grad_(False)


def download_inception_weights(dest: str | os.PathLike, url: str = INCEPTION_WEIGHTS_URL,
                               sha256_prefix: str | None = INCEPTION_SHA256_PREFIX) -> Path:
    """Download the FID Inception weights to `dest` (atomically; the sha256 must start with the file name's hash).

    For users with internet access; nothing in fastgen calls this implicitly.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
    try:
        with urllib.request.urlopen(url) as response, open(tmp, "wb") as file:  # noqa: S310 - fixed https URL
            while chunk := response.read(1 << 20):
                file.write(chunk)
        sha = sha256_of_file(str(tmp))
        if sha256_prefix and not sha.startswith(sha256_prefix):
            raise ValueError(f"downloaded {url} has sha256 {sha}, which does not start with {sha256_prefix}")
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest
