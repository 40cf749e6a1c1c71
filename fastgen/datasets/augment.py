"""EDM's non-leaking augmentation pipe (Karras et al. 2022, appendix; built on ADA, Karras et al. 2020).

Each augmentation is applied to a sample with probability `strength * p` and records its parameters in an
augmentation label that the network gets as conditioning (EDM nets: `condition={"orig_condition", "aug_condition"}`);
the model learns the augmented distribution but is sampled with zero labels, which is the clean one.
Label layout: one group per ENABLED augmentation (strength > 0), always in this order; every label is 0 for a sample
the augmentation left unchanged:
    xflip          [flipped 0/1]                      yflip        [flipped 0/1]
    rotate_int     [cos(k pi/2) - 1, sin(k pi/2)]     translate_int [tx / (W*max), ty / (H*max)]
    scale          [log2-scale / scale_std]           rotate_frac  [cos(a) - 1, sin(a)]
    aniso          [w cos(r), w sin(r)]               translate_frac [tx / (W*std), ty / (H*std)]
    brightness     [offset]                           contrast     [log2 factor]
    lumaflip       [flipped 0/1]                      hue          [cos(a) - 1, sin(a)]
    saturation     [log2 factor]
EDM's CIFAR-10 set (xflip, yflip, scale, rotate_frac, aniso, translate_frac) gives the 9 labels of `augment_dim=9`;
MeanFlow's (xflip, scale, aniso, translate_frac) gives 6.
Geometric transforms compose one 3x3 homogeneous matrix (output pixel -> input pixel, centred coordinates) applied by
bilinear `grid_sample` with reflection padding (simpler than ADA's wavelet-filtered resampling). Colour transforms
compose one 4x4 matrix acting on RGB (gray images: on the luma axis). Random numbers are drawn on the CPU from the
given generator (else the global torch RNG) in a fixed order, so results do not depend on the device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

GEOMETRIC_LABELS = (("xflip", 1), ("yflip", 1), ("rotate_int", 2), ("translate_int", 2), ("scale", 1),
                    ("rotate_frac", 2), ("aniso", 2), ("translate_frac", 2))
COLOR_LABELS = (("brightness", 1), ("contrast", 1), ("lumaflip", 1), ("hue", 2), ("saturation", 1))


def _matrices(rows: list[list], n: int) -> torch.Tensor:
    """Rows of scalars / [n] tensors -> float64 [n, R, C]."""
    return torch.stack([torch.stack([torch.as_tensor(e, dtype=torch.float64).expand(n) for e in row], dim=-1)
                        for row in rows], dim=-2)


def translate2d(tx, ty, n):
    return _matrices([[1, 0, tx], [0, 1, ty], [0, 0, 1]], n)


def scale2d(sx, sy, n):
    return _matrices([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], n)


def rotate2d(theta, n):
    theta = torch.as_tensor(theta, dtype=torch.float64)
    return _matrices([[theta.cos(), -theta.sin(), 0], [theta.sin(), theta.cos(), 0], [0, 0, 1]], n)


def translate3d(tx, ty, tz, n):
    return _matrices([[1, 0, 0, tx], [0, 1, 0, ty], [0, 0, 1, tz], [0, 0, 0, 1]], n)


def scale3d(sx, sy, sz, n):
    return _matrices([[sx, 0, 0, 0], [0, sy, 0, 0], [0, 0, sz, 0], [0, 0, 0, 1]], n)


def rotate3d(axis: torch.Tensor, theta, n):
    """Rotation by theta about the unit `axis` (Rodrigues' formula), homogeneous 4x4."""
    theta = torch.as_tensor(theta, dtype=torch.float64).expand(n)
    vx, vy, vz = (float(a) for a in axis[:3])
    s, c = theta.sin(), theta.cos()
    cc = 1 - c
    return _matrices([[vx * vx * cc + c, vx * vy * cc - vz * s, vx * vz * cc + vy * s, 0],
                      [vy * vx * cc + vz * s, vy * vy * cc + c, vy * vz * cc - vx * s, 0],
                      [vz * vx * cc - vy * s, vz * vy * cc + vx * s, vz * vz * cc + c, 0],
                      [0, 0, 0, 1]], n)


def reflect_index(index: torch.Tensor, size: int) -> torch.Tensor:
    """Mirror out-of-range pixel indices back into [0, size-1] without repeating the edge pixel."""
    if size == 1:
        return torch.zeros_like(index)
    return (size - 1) - ((size - 1) - index.remainder(2 * size - 2)).abs()


class AugmentPipe:
    """`pipe(data)` augments data["real"] [N, C, H, W] and sets data["condition"] = {orig, aug labels}."""

    def __init__(self, p: float = 1.0, xflip: float = 0, yflip: float = 0, rotate_int: float = 0,
                 translate_int: float = 0, translate_int_max: float = 0.125, scale: float = 0,
                 rotate_frac: float = 0, aniso: float = 0, translate_frac: float = 0, scale_std: float = 0.2,
                 rotate_frac_max: float = 1, aniso_std: float = 0.2, translate_frac_std: float = 0.125,
                 brightness: float = 0, contrast: float = 0, lumaflip: float = 0, hue: float = 0,
                 saturation: float = 0, brightness_std: float = 0.2, contrast_std: float = 0.5, hue_max: float = 1,
                 saturation_std: float = 1):
        if not 0 <= p <= 1:
            raise ValueError(f"AugmentPipe p must be in [0, 1], got {p}")
        self.p = float(p)
        self.strengths = {"xflip": xflip, "yflip": yflip, "rotate_int": rotate_int, "translate_int": translate_int,
                          "scale": scale, "rotate_frac": rotate_frac, "aniso": aniso, "translate_frac": translate_frac,
                          "brightness": brightness, "contrast": contrast, "lumaflip": lumaflip, "hue": hue,
                          "saturation": saturation}
        for name, value in self.strengths.items():
            if value < 0:
                raise ValueError(f"AugmentPipe {name} strength must be >= 0, got {value}")
        self.translate_int_max = float(translate_int_max)
        self.scale_std = float(scale_std)
        self.rotate_frac_max = float(rotate_frac_max)
        self.aniso_std = float(aniso_std)
        self.translate_frac_std = float(translate_frac_std)
        self.brightness_std = float(brightness_std)
        self.contrast_std = float(contrast_std)
        self.hue_max = float(hue_max)
        self.saturation_std = float(saturation_std)

    @property
    def augment_dim(self) -> int:
        """Width of the augmentation label (set the network's augment_dim to this)."""
        return sum(width for name, width in GEOMETRIC_LABELS + COLOR_LABELS if self.strengths[name] > 0)

    def __repr__(self) -> str:
        enabled = ", ".join(f"{k}={v}" for k, v in self.strengths.items() if v > 0)
        return f"AugmentPipe(p={self.p}, {enabled})"

    # ------------------------------------------------------------------------------------------- random draws
    def _gate(self, name: str, value: torch.Tensor, generator) -> torch.Tensor:
        """Keep `value` for samples selected with probability strength * p, else the identity value 0."""
        keep = torch.rand(value.shape[-1], generator=generator, dtype=torch.float64) < self.strengths[name] * self.p
        return torch.where(keep, value, torch.zeros_like(value))

    def _on(self, name: str) -> bool:
        return self.strengths[name] > 0

    # ------------------------------------------------------------------------------------------------ pipeline
    def augment(self, images: torch.Tensor, generator: torch.Generator | None = None):
        """(augmented images, labels float32 [N, augment_dim]) for images [N, C, H, W]."""
        if images.ndim != 4:
            raise ValueError(f"AugmentPipe expects images [N, C, H, W], got shape {tuple(images.shape)}")
        if generator is not None and generator.device.type != "cpu":
            raise ValueError("AugmentPipe draws its random numbers on the CPU; pass a CPU torch.Generator")
        n, channels, height, width = images.shape
        labels: list[torch.Tensor] = []

        for name, dim in (("xflip", 3), ("yflip", 2)):
            if self._on(name):
                flip = self._gate(name, torch.randint(2, (n,), generator=generator).double(), generator)
                mask = flip.bool().to(images.device)[:, None, None, None]
                images = torch.where(mask, images.flip(dim), images)
                labels.append(flip[:, None])

        if self._on("rotate_int"):
            if height != width:
                raise ValueError(f"rotate_int needs square images, got {height}x{width}")
            k = self._gate("rotate_int", torch.randint(4, (n,), generator=generator).double(), generator)
            rotated = images
            for quarter in (1, 2, 3):
                mask = (k == quarter).to(images.device)[:, None, None, None]
                rotated = torch.where(mask, images.rot90(quarter, dims=(2, 3)), rotated)
            images = rotated
            angle = k * (math.pi / 2)
            labels.append(torch.stack([angle.cos().round() - 1, angle.sin().round()], dim=1))

        if self._on("translate_int"):
            w = torch.rand(2, n, generator=generator, dtype=torch.float64) * 2 - 1
            w = self._gate("translate_int", w, generator)
            tx = (w[0] * width * self.translate_int_max).round().long()
            ty = (w[1] * height * self.translate_int_max).round().long()
            images = self._translate_int(images, tx, ty)
            labels.append(torch.stack([tx / (width * self.translate_int_max),
                                       ty / (height * self.translate_int_max)], dim=1).double())

        images, geometric_labels = self._geometric(images, generator)
        labels += geometric_labels
        images, color_labels = self._color(images, generator)
        labels += color_labels

        if labels:
            label_tensor = torch.cat([lab.reshape(n, -1) for lab in labels], dim=1)
        else:
            label_tensor = torch.zeros(n, 0, dtype=torch.float64)
        return images, label_tensor.to(device=images.device, dtype=torch.float32)

    def _translate_int(self, images: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
        """out[y, x] = in[y - ty, x - tx] with mirrored borders: content moves right by tx and down by ty."""
        _n, _c, height, width = images.shape
        xs = torch.arange(width)[None, :] - tx[:, None]  # [N, W]
        ys = torch.arange(height)[None, :] - ty[:, None]  # [N, H]
        xs, ys = reflect_index(xs, width).to(images.device), reflect_index(ys, height).to(images.device)
        images = torch.gather(images, 3, xs[:, None, None, :].expand(images.shape))
        return torch.gather(images, 2, ys[:, None, :, None].expand(images.shape))

    def _geometric(self, images: torch.Tensor, generator) -> tuple[torch.Tensor, list[torch.Tensor]]:
        n, _c, height, width = images.shape
        g_inv = torch.eye(3, dtype=torch.float64).expand(n, 3, 3)  # output pixel -> input pixel
        labels = []
        if self._on("scale"):
            w = self._gate("scale", torch.randn(n, generator=generator, dtype=torch.float64), generator)
            s = torch.exp2(w * self.scale_std)
            g_inv = g_inv @ scale2d(1 / s, 1 / s, n)
            labels.append(w[:, None])
        if self._on("rotate_frac"):
            w = (torch.rand(n, generator=generator, dtype=torch.float64) * 2 - 1) * (math.pi * self.rotate_frac_max)
            w = self._gate("rotate_frac", w, generator)
            g_inv = g_inv @ rotate2d(-w, n)
            labels.append(torch.stack([w.cos() - 1, w.sin()], dim=1))
        if self._on("aniso"):
            w = torch.randn(n, generator=generator, dtype=torch.float64)
            r = (torch.rand(n, generator=generator, dtype=torch.float64) * 2 - 1) * math.pi
            w = self._gate("aniso", w, generator)
            s = torch.exp2(w * self.aniso_std)
            g_inv = g_inv @ rotate2d(r, n) @ scale2d(1 / s, s, n) @ rotate2d(-r, n)
            labels.append(torch.stack([w * r.cos(), w * r.sin()], dim=1))
        if self._on("translate_frac"):
            w = self._gate("translate_frac", torch.randn(2, n, generator=generator, dtype=torch.float64), generator)
            g_inv = g_inv @ translate2d(-w[0] * width * self.translate_frac_std,
                                        -w[1] * height * self.translate_frac_std, n)
            labels.append(torch.stack([w[0], w[1]], dim=1))
        changed = (g_inv - torch.eye(3, dtype=torch.float64)).abs().amax(dim=(1, 2)) > 0
        if not changed.any():
            return images, labels
        # Pixel-centred coordinates -> grid_sample's normalised ones (align_corners=False): x_n = 2 x_c / W.
        to_norm = scale2d(2 / width, 2 / height, n)
        theta = to_norm @ g_inv @ torch.linalg.inv(to_norm)
        rows = changed.nonzero().squeeze(1)
        subset = images[rows.to(images.device)]
        grid = F.affine_grid(theta[rows, :2, :].to(device=images.device, dtype=subset.dtype), list(subset.shape),
                             align_corners=False)
        warped = F.grid_sample(subset, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        images = images.clone()
        images[rows.to(images.device)] = warped
        return images, labels

    def _color(self, images: torch.Tensor, generator) -> tuple[torch.Tensor, list[torch.Tensor]]:
        n, channels = images.shape[:2]
        if not any(self._on(name) for name, _ in COLOR_LABELS):
            return images, []
        if channels not in (1, 3):
            raise ValueError(f"colour augmentations need 1 or 3 channels, got {channels}; disable brightness, "
                             "contrast, lumaflip, hue and saturation for this data")
        c_mat = torch.eye(4, dtype=torch.float64).expand(n, 4, 4)
        luma_axis = torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=torch.float64) / math.sqrt(3)
        luma_proj = torch.outer(luma_axis, luma_axis)  # v v^T
        labels = []
        if self._on("brightness"):
            b = self._gate("brightness", torch.randn(n, generator=generator, dtype=torch.float64)
                           * self.brightness_std, generator)
            c_mat = translate3d(b, b, b, n) @ c_mat
            labels.append(b[:, None])
        if self._on("contrast"):
            w = self._gate("contrast", torch.randn(n, generator=generator, dtype=torch.float64)
                           * self.contrast_std, generator)
            c = torch.exp2(w)
            c_mat = scale3d(c, c, c, n) @ c_mat
            labels.append(w[:, None])
        if self._on("lumaflip"):
            i = self._gate("lumaflip", torch.randint(2, (n,), generator=generator).double(), generator)
            c_mat = (torch.eye(4, dtype=torch.float64) - 2 * luma_proj * i[:, None, None]) @ c_mat
            labels.append(i[:, None])
        if self._on("hue"):
            a = (torch.rand(n, generator=generator, dtype=torch.float64) * 2 - 1) * (math.pi * self.hue_max)
            a = self._gate("hue", a, generator)
            c_mat = rotate3d(luma_axis, a, n) @ c_mat
            labels.append(torch.stack([a.cos() - 1, a.sin()], dim=1))
        if self._on("saturation"):
            w = self._gate("saturation", torch.randn(n, generator=generator, dtype=torch.float64)
                           * self.saturation_std, generator)
            s = torch.exp2(w)[:, None, None]
            c_mat = (luma_proj + (torch.eye(4, dtype=torch.float64) - luma_proj) * s) @ c_mat
            labels.append(w[:, None])
        changed = (c_mat - torch.eye(4, dtype=torch.float64)).abs().amax(dim=(1, 2)) > 1e-12
        if not changed.any():
            return images, labels
        rows = changed.nonzero().squeeze(1)
        c_mat = c_mat[rows].to(device=images.device, dtype=images.dtype)
        subset = images[rows.to(images.device)].flatten(2)  # [M, C, HW]
        if channels == 3:
            out = c_mat[:, :3, :3] @ subset + c_mat[:, :3, 3:]
        else:  # a gray pixel x is the RGB point (x, x, x); every colour matrix here maps it to a gray point
            out = c_mat[:, :1, :3].sum(-1, keepdim=True) * subset + c_mat[:, :1, 3:]
        images = images.clone()
        images[rows.to(images.device)] = out.reshape(-1, *images.shape[1:])
        return images, labels

    def __call__(self, data: dict, generator: torch.Generator | None = None) -> dict:
        """Returns a new dict: augmented "real" and condition {"orig_condition", "aug_condition"}."""
        out = dict(data)
        real, aug_labels = self.augment(data["real"], generator=generator)
        out["real"] = real
        orig = data.get("condition")
        if isinstance(orig, dict):  # already augmented once: keep the original labels
            orig = orig.get("orig_condition")
        if orig is None:
            orig = torch.zeros(real.shape[0], 0, device=real.device)
        out["condition"] = {"orig_condition": orig, "aug_condition": aug_labels.to(real.dtype)}
        return out
