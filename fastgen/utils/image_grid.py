"""Sample grids: a batch of images in [-1, 1] -> one uint8 picture (numpy array or PNG file, via Pillow).

Pixel mapping (EDM convention): u8 = clip(floor(x * 127.5 + 128), 0, 255), so -1 -> 0, 0 -> 128, 1 -> 255.
Image i of the batch lands at row i // nrow, column i % nrow; empty cells and padding are `pad_value`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np


def to_uint8(images: Any) -> np.ndarray:
    """[-1, 1] floats (torch or numpy, any shape) -> uint8 with the mapping above; NaN -> 0."""
    if hasattr(images, "detach"):
        images = images.detach().float().cpu().numpy()
    array = np.nan_to_num(np.asarray(images, dtype=np.float64), nan=-1.0, posinf=1.0, neginf=-1.0)
    return np.clip(np.floor(array * 127.5 + 128.0), 0, 255).astype(np.uint8)


def make_image_grid(images: Any, nrow: int | None = None, padding: int = 0, pad_value: int = 0) -> np.ndarray:
    """[B, C, H, W] in [-1, 1] -> uint8 [rows*H + pad, nrow*W + pad, C] with C in {1, 3} (4+ channels: first 3).

    nrow: images per row (default ceil(sqrt(B))). padding: pixels between and around the images.
    """
    batch = to_uint8(images)
    if batch.ndim == 3:
        batch = batch[:, None]
    if batch.ndim != 4:
        raise ValueError(f"make_image_grid expects images of shape [B, C, H, W]; got shape {tuple(batch.shape)}")
    num, channels, height, width = batch.shape
    if num == 0:
        raise ValueError("make_image_grid got an empty batch")
    if channels not in (1, 3):  # 2 channels: show the first; 4+ (e.g. RGBA, undecoded latents): the first three
        batch = batch[:, :1] if channels == 2 else batch[:, :3]
        channels = batch.shape[1]
    nrow = int(nrow or math.ceil(math.sqrt(num)))
    rows = math.ceil(num / nrow)
    grid = np.full(
        (rows * height + (rows + 1) * padding, nrow * width + (nrow + 1) * padding, channels), pad_value, np.uint8
    )
    for i in range(num):
        r, c = divmod(i, nrow)
        top, left = padding + r * (height + padding), padding + c * (width + padding)
        grid[top:top + height, left:left + width] = batch[i].transpose(1, 2, 0)
    return grid


def save_image_grid(images: Any, path: str | os.PathLike, nrow: int | None = None, padding: int = 0) -> Path:
    """Write the grid of `images` as a PNG (parent folders created; written to a temp name then renamed)."""
    from PIL import Image

    grid = make_image_grid(images, nrow=nrow, padding=padding)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    tmp = path.with_name(path.name + ".tmp")
    picture.save(tmp, format="PNG")
    os.replace(tmp, path)
    return path
