"""EDM AugmentPipe: identity at p=0, exact flips / integer shifts / rotations, colour maths, labels, reproducibility."""

import math

import pytest
import torch

from fastgen.datasets.augment import AugmentPipe

CIFAR_SET = dict(xflip=1e8, yflip=1, scale=1, rotate_frac=1, aniso=1, translate_frac=1)


def images(n=16, c=3, size=8, seed=0):
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_p0_is_identity_with_zero_labels_and_cifar_label_dim():
    x = images()
    pipe = AugmentPipe(p=0.0, **CIFAR_SET, brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)
    y, labels = pipe.augment(x, torch.Generator().manual_seed(1))
    assert torch.equal(y, x) and labels.shape == (16, 15) and labels.abs().max() == 0
    assert AugmentPipe(p=0.12, **CIFAR_SET).augment_dim == 9
    assert AugmentPipe(p=0.12, xflip=1e8, scale=1, aniso=1, translate_frac=1).augment_dim == 6


def test_xflip_mirrors_exactly_and_labels_record_it():
    x = images(n=32)
    y, labels = AugmentPipe(p=1.0, xflip=1).augment(x, torch.Generator().manual_seed(3))
    flipped = labels[:, 0]
    assert set(flipped.tolist()) == {0.0, 1.0}  # both outcomes occur among 32 samples
    for i in range(32):
        assert torch.equal(y[i], x[i].flip(2) if flipped[i] == 1 else x[i])


def test_integer_translation_moves_pixels_by_label_amount():
    x = images(n=8, size=16)
    pipe = AugmentPipe(p=1.0, translate_int=1, translate_int_max=0.25)
    y, labels = pipe.augment(x, torch.Generator().manual_seed(4))
    shifts = (labels * 16 * 0.25).round().long()
    assert (shifts.abs() <= 4).all() and (shifts != 0).any()
    assert torch.allclose(labels * 4, shifts.float())
    for i, (tx, ty) in enumerate(shifts.tolist()):
        for yy in range(max(ty, 0), 16 + min(ty, 0)):
            for xx in range(max(tx, 0), 16 + min(tx, 0)):
                assert torch.equal(y[i, :, yy, xx], x[i, :, yy - ty, xx - tx])
    # mirrored border without edge repeat: out[x] = in[-x'] for a shift that leaves the image
    row = torch.arange(6.0).view(1, 1, 1, 6)
    moved = pipe._translate_int(row, torch.tensor([2]), torch.tensor([0]))
    assert moved.flatten().tolist() == [2.0, 1.0, 0.0, 1.0, 2.0, 3.0]


def test_rotate_int_matches_rot90_and_labels():
    x = images(n=12)
    y, labels = AugmentPipe(p=1.0, rotate_int=1).augment(x, torch.Generator().manual_seed(5))
    for i in range(12):
        k = round(math.atan2(labels[i, 1], labels[i, 0] + 1) / (math.pi / 2)) % 4
        assert torch.equal(y[i], torch.rot90(x[i], k, dims=(1, 2)))


def test_geometric_warps_change_only_labelled_samples():
    x = images(n=16)
    y, labels = AugmentPipe(p=0.2, **CIFAR_SET).augment(x, torch.Generator().manual_seed(6))
    geometric = labels[:, 2:]  # scale, rotate_frac, aniso, translate_frac
    for i in range(16):
        unchanged = geometric[i].abs().max() == 0
        base = x[i]
        if labels[i, 0] == 1:
            base = base.flip(2)
        if labels[i, 1] == 1:
            base = base.flip(1)
        assert torch.equal(y[i], base) == bool(unchanged)
    assert (geometric.abs().amax(1) == 0).any() and (geometric.abs().amax(1) > 0).any()


def bilinear(image, x, y):
    """Manual bilinear sample of image [C, H, W] at a point inside the pixel grid."""
    x0, y0 = math.floor(x), math.floor(y)
    fx, fy = x - x0, y - y0
    x1, y1 = min(x0 + 1, image.shape[2] - 1), min(y0 + 1, image.shape[1] - 1)
    top = image[:, y0, x0] * (1 - fx) + image[:, y0, x1] * fx
    bottom = image[:, y1, x0] * (1 - fx) + image[:, y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def test_translate_frac_is_a_subpixel_shift_by_the_label_amount():
    x = images(n=6, size=16)
    y, labels = AugmentPipe(p=1.0, translate_frac=1, translate_frac_std=0.125).augment(
        x, torch.Generator().manual_seed(7))
    shifts = labels.double() * 16 * 0.125  # (dx, dy) in pixels: content moves right / down
    checked = 0
    for i, (dx, dy) in enumerate(shifts.tolist()):
        for yy in range(16):
            for xx in range(16):
                sx, sy = xx - dx, yy - dy
                if 0 <= sx <= 15 and 0 <= sy <= 15:
                    assert torch.allclose(y[i, :, yy, xx], bilinear(x[i], sx, sy), atol=1e-5)
                    checked += 1
    assert checked > 200


def test_colour_transforms_follow_their_formulas():
    x = images(n=8, c=3)
    g = torch.Generator().manual_seed(8)
    y, labels = AugmentPipe(p=1.0, brightness=1).augment(x, g)
    assert torch.allclose(y, x + labels[:, 0].view(-1, 1, 1, 1), atol=1e-6)
    y, labels = AugmentPipe(p=1.0, contrast=1).augment(x, g)
    assert torch.allclose(y, x * torch.exp2(labels[:, 0]).view(-1, 1, 1, 1), atol=1e-5)
    gray = images(n=8, c=1)
    y, labels = AugmentPipe(p=1.0, lumaflip=1).augment(gray, g)
    sign = 1 - 2 * labels[:, 0].view(-1, 1, 1, 1)
    assert torch.allclose(y, gray * sign, atol=1e-6)
    gray3 = gray.expand(-1, 3, -1, -1).contiguous()
    y, labels = AugmentPipe(p=1.0, hue=1, saturation=1).augment(gray3, g)
    assert torch.allclose(y, gray3, atol=1e-5) and labels[:, 1].abs().max() > 0  # gray is hue/saturation-invariant
    with pytest.raises(ValueError, match="1 or 3 channels"):
        AugmentPipe(p=1.0, hue=1).augment(torch.zeros(2, 4, 8, 8))


def test_reproducible_with_fixed_seed_and_global_rng():
    pipe = AugmentPipe(p=0.6, **CIFAR_SET, brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1,
                       rotate_int=1, translate_int=1)
    x = images()
    a = pipe.augment(x, torch.Generator().manual_seed(11))
    b = pipe.augment(x, torch.Generator().manual_seed(11))
    c = pipe.augment(x, torch.Generator().manual_seed(12))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[1], c[1])
    torch.manual_seed(5)
    d = pipe.augment(x)
    torch.manual_seed(5)
    e = pipe.augment(x)
    assert torch.equal(d[0], e[0]) and torch.equal(d[1], e[1])


def test_call_sets_condition_dict():
    data = {"real": images(n=4), "condition": torch.eye(10)[:4], "idx": torch.arange(4)}
    out = AugmentPipe(p=1.0, **CIFAR_SET)(data, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out["condition"]["orig_condition"], torch.eye(10)[:4])
    assert out["condition"]["aug_condition"].shape == (4, 9) and out["condition"]["aug_condition"].abs().sum() > 0
    assert torch.equal(out["idx"], data["idx"]) and torch.equal(data["condition"], torch.eye(10)[:4])
