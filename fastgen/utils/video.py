"""Videos in [-1, 1] -> mp4 (PyAV / FFmpeg, h264) and back; contact sheets; frame-count and resolution checks.

Layouts: a video is [C, T, H, W] (what the networks produce, channel first) or [T, H, W, C]; `layout=None` reads
channel-first when dim 0 has 1 or 3 entries, else channel-last when the last dim has. Pixels use the same mapping as
the image grids (`image_grid.to_uint8`: -1 -> 0, 1 -> 255); one channel is shown as grey.

Encodings (`write_video` / `encode_mp4`):
  default      libx264, yuv420p, crf 18: plays everywhere (browsers, W&B), visually lossless, needs even H and W;
  lossless     libx264rgb, crf 0, rgb24: bit-exact round trip (tests, archiving); fewer players handle it.
Writes are atomic (a temporary name, then a rename): a failed write leaves nothing behind.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from fastgen.utils.image_grid import make_image_grid, to_uint8

LAYOUTS = ("CTHW", "THWC")


class VideoError(ValueError):
    """Bad video input or an unreadable file: the message is one line saying what is wrong and how to fix it."""


@dataclass
class VideoData:
    frames: np.ndarray  # uint8 [T, H, W, 3]
    fps: float


def _numpy(video: Any) -> np.ndarray:
    if hasattr(video, "detach"):
        video = video.detach().float().cpu().numpy()
    return np.asarray(video)


def to_cthw(video: Any, layout: str | None = None) -> np.ndarray:
    """A [C, T, H, W] / [T, H, W, C] video (torch or numpy) as a float [C, T, H, W] array (layout: see module)."""
    array = _numpy(video)
    if array.ndim != 4:
        raise VideoError(f"a video must be 4-D [C, T, H, W] or [T, H, W, C]; got shape {tuple(array.shape)}")
    if layout is None:
        if array.shape[0] in (1, 3):
            layout = "CTHW"
        elif array.shape[-1] in (1, 3):
            layout = "THWC"
        else:
            raise VideoError(f"cannot tell the channel dim of a video of shape {tuple(array.shape)} (1 or 3 "
                             "channels first or last); pass layout='CTHW' or 'THWC'")
    if layout not in LAYOUTS:
        raise VideoError(f"layout must be one of {LAYOUTS}; got {layout!r}")
    array = array if layout == "CTHW" else array.transpose(3, 0, 1, 2)
    if array.shape[0] not in (1, 3):
        raise VideoError(f"a video needs 1 or 3 channels; got {array.shape[0]} (shape {tuple(array.shape)}, "
                         f"layout {layout}); decode latents with the VAE first")
    return array


def video_to_uint8(video: Any, layout: str | None = None) -> np.ndarray:
    """[-1, 1] video -> uint8 RGB frames [T, H, W, 3]."""
    frames = to_uint8(to_cthw(video, layout)).transpose(1, 2, 3, 0)
    return np.repeat(frames, 3, axis=-1) if frames.shape[-1] == 1 else np.ascontiguousarray(frames)


def encode_mp4(frames: np.ndarray, fps: float = 16, lossless: bool = False, crf: int = 18) -> bytes:
    """uint8 frames [T, H, W, 3] -> the bytes of an h264 mp4 (encodings: see module docstring)."""
    import av

    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise VideoError(f"encode_mp4 needs uint8 frames [T, H, W, 3] with T >= 1; got {frames.dtype} "
                         f"{tuple(frames.shape)}")
    if not fps > 0:
        raise VideoError(f"fps must be > 0; got {fps}")
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = _h264_stream(container, frames.shape[1], frames.shape[2], fps, lossless, crf)
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))  # flush delayed (B-)frames
    return buffer.getvalue()


def _h264_stream(container, height: int, width: int, fps: float, lossless: bool, crf: int):
    """The h264 stream of an mp4 container opened for writing (encodings: see module docstring)."""
    if not lossless and (height % 2 or width % 2):
        raise VideoError(f"h264 yuv420p needs an even width and height; got {width}x{height} "
                         "(crop or pad the frames, or write with lossless=True)")
    codec, pix_fmt, options = (("libx264rgb", "rgb24", {"crf": "0"}) if lossless
                               else ("libx264", "yuv420p", {"crf": str(int(crf))}))
    stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001), options=options)
    stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
    return stream


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write to a temporary name then rename, so readers never see a partial file (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def write_video(path: str | os.PathLike, video: Any, fps: float = 16, layout: str | None = None,
                lossless: bool = False, crf: int = 18) -> Path:
    """Write a [-1, 1] video ([C, T, H, W] or [T, H, W, C]) as an mp4 at `path` (atomic)."""
    return write_bytes_atomic(path, encode_mp4(video_to_uint8(video, layout), fps=fps, lossless=lossless, crf=crf))


class Mp4Writer:
    """An mp4 written frame by frame as the frames come (streaming generation): one h264 encoder kept open; frames
    go to `<path>.tmp` as they are encoded, and close() renames it to `path` (a failed or abandoned write leaves
    nothing at `path`). Use as a context manager; write() takes [-1, 1] videos like write_video."""

    def __init__(self, path: str | os.PathLike, fps: float = 16, lossless: bool = False, crf: int = 18):
        if not fps > 0:
            raise VideoError(f"fps must be > 0; got {fps}")
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        self.fps, self.lossless, self.crf = fps, lossless, crf
        self.container = self.stream = None
        self.frames_written = 0

    def write(self, video: Any, layout: str | None = None) -> None:
        import av

        frames = video_to_uint8(video, layout)
        if self.container is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.container = av.open(str(self.tmp), mode="w", format="mp4")
            self.stream = _h264_stream(self.container, frames.shape[1], frames.shape[2], self.fps, self.lossless,
                                       self.crf)
        for frame in frames:
            self.container.mux(self.stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        self.frames_written += len(frames)

    def close(self) -> Path:
        if self.container is None:
            raise VideoError(f"no frames were written to {self.path}")
        self.container.mux(self.stream.encode(None))  # flush delayed (B-)frames
        self.container.close()
        self.container = None
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        if self.container is not None:
            self.container.close()
            self.container = None
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None and self.container is not None:
            self.close()
        else:
            self.abort()


def read_video(path: str | os.PathLike) -> VideoData:
    """All frames of the first video stream as uint8 RGB [T, H, W, 3], and its frame rate."""
    import av

    path = Path(path)
    if not path.is_file():
        raise VideoError(f"video file {path} does not exist")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path} has no video stream")
            stream = container.streams.video[0]
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
            rate = stream.average_rate or stream.guessed_rate
    except av.FFmpegError as e:
        raise VideoError(f"cannot read video {path}: {e.__class__.__name__}: {e}") from e
    if not frames:
        raise VideoError(f"{path} holds no decodable frames")
    return VideoData(np.stack(frames), float(rate) if rate else 0.0)


def frames_to_video(frames: np.ndarray) -> np.ndarray:
    """uint8 [T, H, W, 3] -> float [3, T, H, W] in [-1, 1] (the inverse of video_to_uint8 up to quantisation)."""
    return (frames.astype(np.float32).transpose(3, 0, 1, 2) - 128.0) / 127.5


def make_contact_sheet(videos: Any, num_frames: int = 8, layout: str | None = None, padding: int = 2) -> np.ndarray:
    """One uint8 picture: a row per video, `num_frames` evenly spaced frames (first and last included) per row.

    `videos`: one video (4-D, either layout) or a batch [B, C, T, H, W] (channel first).
    """
    array = _numpy(videos)
    batch = array[None] if array.ndim == 4 else array
    if batch.ndim != 5:
        raise VideoError(f"contact sheet needs a video (4-D) or a batch [B, C, T, H, W]; got {tuple(array.shape)}")
    batch = np.stack([to_cthw(v, layout if array.ndim == 4 else "CTHW") for v in batch])
    steps = batch.shape[2]
    picks = np.unique(np.linspace(0, steps - 1, max(1, min(int(num_frames), steps))).round().astype(int))
    tiles = batch[:, :, picks].transpose(0, 2, 1, 3, 4).reshape(-1, batch.shape[1], *batch.shape[3:])
    return make_image_grid(tiles, nrow=len(picks), padding=padding)


def make_video_grid(videos: Any, nrow: int | None = None) -> np.ndarray:
    """A batch [B, C, T, H, W] in [-1, 1] as ONE video: each frame the image grid of the batch at that time
    (`make_image_grid` layout), RGB, padded at the bottom/right to an even size (h264 yuv420p). uint8 [T, H', W', 3]."""
    batch = _numpy(videos)
    if batch.ndim != 5:
        raise VideoError(f"make_video_grid needs a batch [B, C, T, H, W]; got shape {tuple(batch.shape)}")
    frames = np.stack([make_image_grid(batch[:, :, t], nrow=nrow) for t in range(batch.shape[2])])
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    return np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0))) if pad_h or pad_w else frames


def save_contact_sheet(videos: Any, path: str | os.PathLike, num_frames: int = 8, layout: str | None = None) -> Path:
    """make_contact_sheet written as a PNG (atomic)."""
    from PIL import Image

    sheet = make_contact_sheet(videos, num_frames=num_frames, layout=layout)
    buffer = io.BytesIO()
    Image.fromarray(sheet[..., 0] if sheet.shape[-1] == 1 else sheet).save(buffer, format="PNG")
    return write_bytes_atomic(path, buffer.getvalue())


def check_num_frames(num_frames: int, temporal_factor: int = 4) -> int:
    """Frames a causal video VAE accepts: (T - 1) * factor + 1 (it keeps frame 0, then compresses time by `factor`).
    Returns the latent frame count T; otherwise one line naming the nearest valid counts."""
    n, f = int(num_frames), int(temporal_factor)
    if n >= 1 and (n - 1) % f == 0:
        return (n - 1) // f + 1
    below = max(1, (max(n, 1) - 1) // f * f + 1)
    raise VideoError(f"num_frames={num_frames} is not of the form (T-1)*{f}+1 that the video VAE needs; "
                     f"use {below} or {below + f}")


def check_resolution(height: int, width: int, multiple: int, what: str = "VAE factor x patch size") -> None:
    """Height and width must be multiples of `multiple` (e.g. 16 = VAE 8 x patch 2 for Wan 2.1, 32 for Wan 2.2-5B)."""
    h, w, m = int(height), int(width), int(multiple)
    if h > 0 and w > 0 and h % m == 0 and w % m == 0:
        return
    fix_h, fix_w = max(m, round(h / m) * m), max(m, round(w / m) * m)
    raise VideoError(f"resolution {h}x{w} (HxW) is not divisible by {m} ({what}); use e.g. {fix_h}x{fix_w}")
