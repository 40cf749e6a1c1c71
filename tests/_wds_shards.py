"""Tar shards written by the WebDataset tests: images with captions, tensors, mp4 clips (encoded with PyAV)."""

from __future__ import annotations

import io
import os
import tarfile

import numpy as np
import torch


def add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_shard(path: str, samples: list[dict]) -> str:
    """samples: [{"__key__": "...", "<ext>": bytes}, ...] -> a tar in sample order."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for sample in samples:
            for ext, data in sample.items():
                if ext != "__key__":
                    add_file(tar, f"{sample['__key__']}.{ext}", data)
    return path


def png_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    import PIL.Image

    buffer = io.BytesIO()
    PIL.Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def tensor_bytes(value) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def sample_id(shard: int, index: int) -> int:
    return shard * 1000 + index


def image_shards(root: str, num_shards: int, per_shard: int, size: int = 8, fmt: str = "PNG") -> list[str]:
    """Sample k's pixels are constant k % 251 (so decoded values identify it); caption 'caption <id>'."""
    paths = []
    for s in range(num_shards):
        samples = []
        for i in range(per_shard):
            ident = sample_id(s, i)
            pixels = np.full((size, size + 4, 3), ident % 251, dtype=np.uint8)
            samples.append({"__key__": f"{ident:06d}", "png" if fmt == "PNG" else "jpg": png_bytes(pixels, fmt),
                            "txt": f"caption {ident}".encode()})
        paths.append(write_shard(os.path.join(root, f"shard-{s:04d}.tar"), samples))
    return paths


def tensor_shards(root: str, num_shards: int, per_shard: int, files: dict) -> list[str]:
    """files: {ext: shape}; each tensor is filled with the sample id."""
    paths = []
    for s in range(num_shards):
        samples = []
        for i in range(per_shard):
            ident = sample_id(s, i)
            sample = {"__key__": f"{ident:06d}"}
            for ext, shape in files.items():
                sample[ext] = tensor_bytes(torch.full(shape, float(ident)))
            samples.append(sample)
        paths.append(write_shard(os.path.join(root, f"shard-{s:04d}.tar"), samples))
    return paths


def mp4_bytes(frames: int, height: int, width: int, first_value: int = 0) -> bytes:
    """A tiny lossless-ish clip whose frame t is grey level first_value + 20 t (decoded values identify frames)."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv444p"
        stream.options = {"qp": "0", "preset": "ultrafast"}
        for t in range(frames):
            array = np.full((height, width, 3), first_value + 20 * t, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()
