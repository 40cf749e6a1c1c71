"""Per-file decoders for WebDataset samples: raw bytes of one file -> what the batch holds.

Images: RGB, bicubic resize of the shorter side to the target then a centre crop, float32 CHW in [-1, 1].
Videos (PyAV): `sequence_length` consecutive frames ("segment": a random window drawn from a generator the loader
seeds per sample, so resumed runs decode the same window; "full": evenly spaced frames over the whole clip), the
same resize + centre crop per frame, float32 (C, T, H, W) in [-1, 1]. Tensors: `.pth` (torch.load, weights_only)
and `.npy`/`.npz` (numpy). Text: UTF-8 stripped. Every decoder raises DecodeError with a short reason on bad bytes;
the loader then skips the sample and counts it.
"""

from __future__ import annotations

import io
import json

import numpy as np
import torch

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "bmp")
VIDEO_EXTS = ("mp4", "avi", "mov", "webm", "mkv")
TEXT_EXTS = ("txt", "caption")
TENSOR_EXTS = ("pth", "pt", "npy", "npz")


class DecodeError(ValueError):
    """The bytes of one file could not be decoded into what its extension promises."""


def extension(name: str) -> str:
    """The last dotted part of a key_map value or file name ('latent.pth' -> 'pth', 'jpg' -> 'jpg')."""
    return name.rsplit(".", 1)[-1].lower()


def size_hw(img_size) -> tuple[int, int]:
    """An int (square) or (W, H) as in the reference configs -> (H, W)."""
    if isinstance(img_size, int):
        return img_size, img_size
    width, height = (int(v) for v in img_size)
    return height, width


def resize_center_crop(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """uint8/float [N, C, h, w] -> float [N, C, height, width]: scale so both sides cover the target, crop centre."""
    h, w = frames.shape[-2:]
    scale = max(height / h, width / w)
    new_h, new_w = max(height, round(h * scale)), max(width, round(w * scale))
    out = frames.float()
    if (new_h, new_w) != (h, w):
        out = torch.nn.functional.interpolate(out, size=(new_h, new_w), mode="bicubic", align_corners=False,
                                              antialias=True)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return out[..., top:top + height, left:left + width]


def to_unit_range(pixels: torch.Tensor) -> torch.Tensor:
    """[0, 255] floats -> [-1, 1] (clamped: bicubic overshoots)."""
    return (pixels / 127.5 - 1.0).clamp_(-1.0, 1.0)


def decode_image(data: bytes, img_size) -> torch.Tensor:
    import PIL.Image

    try:
        with PIL.Image.open(io.BytesIO(data)) as image:
            array = np.asarray(image.convert("RGB"))
    except Exception as error:
        raise DecodeError(f"not a decodable image ({type(error).__name__})") from None
    height, width = size_hw(img_size)
    chw = torch.from_numpy(array.copy()).permute(2, 0, 1)[None]
    return to_unit_range(resize_center_crop(chw, height, width))[0]


def pick_frames(total: int, sequence_length: int, decoder_type: str, rng: np.random.Generator) -> list[int]:
    """Frame indices: "full" spreads them evenly over the clip, "segment" takes a random window."""
    if decoder_type == "full":
        return [int(i) for i in np.linspace(0, total - 1, sequence_length).round()]
    first = int(rng.integers(0, total - sequence_length + 1))
    return list(range(first, first + sequence_length))


def decode_video(data: bytes, img_size, sequence_length: int, decoder_type: str = "segment",
                 generator: np.random.Generator | None = None) -> torch.Tensor:
    """Decode `sequence_length` frames of an encoded clip -> float32 (C, T, H, W) in [-1, 1]."""
    import av

    if decoder_type not in ("segment", "full"):
        raise ValueError(f"decoder_type must be 'segment' or 'full', got {decoder_type!r}")
    rng = generator if generator is not None else np.random.default_rng()
    try:
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            total = int(stream.frames or 0)  # from the header; 0 when the container does not say
            if total >= sequence_length:  # only the picked frames are kept in memory (long clips stay cheap)
                picks = pick_frames(total, sequence_length, decoder_type, rng)
                kept, wanted = {}, set(picks)
                for index, frame in enumerate(container.decode(stream)):
                    if index in wanted:
                        kept[index] = frame.to_ndarray(format="rgb24")
                    if index >= picks[-1]:
                        break
                frames = [kept[i] for i in picks if i in kept]
            else:
                frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
                if len(frames) >= sequence_length:
                    frames = [frames[i] for i in pick_frames(len(frames), sequence_length, decoder_type, rng)]
    except Exception as error:
        raise DecodeError(f"video does not decode ({type(error).__name__})") from None
    if len(frames) < sequence_length:
        raise DecodeError(f"video has fewer than sequence_length={sequence_length} decodable frames")
    clip = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)  # T C h w
    height, width = size_hw(img_size)
    return to_unit_range(resize_center_crop(clip, height, width)).permute(1, 0, 2, 3).contiguous()


def decode_tensor(data: bytes, ext: str):
    """`.pth` -> whatever torch saved (tensor or dict of tensors; weights_only), `.npy`/`.npz` -> tensor(s)."""
    try:
        if ext in ("pth", "pt"):
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
        if ext == "npz":
            return {name: torch.from_numpy(loaded[name]) for name in loaded.files}
        return torch.from_numpy(loaded)
    except Exception as error:
        raise DecodeError(f"not a readable .{ext} tensor file ({type(error).__name__})") from None


def decode_text(data: bytes) -> str:
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise DecodeError("caption is not UTF-8") from None


def decode_file(data: bytes, ext: str, *, img_size=None, sequence_length=None, decoder_type="segment",
                generator=None):
    """Dispatch on the extension; unknown extensions stay bytes (json is parsed)."""
    if ext in IMAGE_EXTS:
        return decode_image(data, img_size)
    if ext in VIDEO_EXTS:
        return decode_video(data, img_size, sequence_length, decoder_type, generator)
    if ext in TENSOR_EXTS:
        return decode_tensor(data, ext)
    if ext in TEXT_EXTS:
        return decode_text(data)
    if ext == "json":
        try:
            return json.loads(data)
        except ValueError:
            raise DecodeError("not valid JSON") from None
    return data
