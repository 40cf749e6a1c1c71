"""Image or video + caption shards -> latent + text-embedding shards, with a network's own VAE and text encoders.

Each input shard becomes one output shard of the same name holding, per sample, `{key}.latent.pth` (the normalised
VAE latent: [C, h, w] for images, [C, T', h, w] for videos), `{key}.txt_emb.pth` (the text-encoder outputs the
denoiser takes, a dict of tensors) and the caption `{key}.txt`: what `ImageLatentLoaderConfig` /
`VideoLatentLoaderConfig` read. Videos (`sequence_length` given) are decoded by the loaders' own `decode_video`; a
"segment" window is drawn from a generator seeded by (seed, sample key), so a rerun picks the same frames. The VAE is used deterministically (the latent
distribution's mean), so a rerun writes identical shards. Shard i belongs to rank i % world_size; an output is written
to a temporary file and renamed when complete, so finished shards are skipped when a killed job is started again.
Samples lacking the media file or caption, or whose media does not decode, are skipped and counted.

`net` is any object with `encode_images(pixels [B,3,H,W] or [B,3,T,H,W] in [-1,1], sample=False)` and
`encode_text(list[str])` (fastgen.networks.hf networks built with their encoders): this module imports no network
code. For videos it also reads the VAE's temporal / spatial factors and the patch size (`video_factors`).
"""

from __future__ import annotations

import io
import os
import tarfile
import zlib
from collections.abc import Callable

import numpy as np
import torch
from loguru import logger

from fastgen.datasets.wds.decode import DecodeError, decode_image, decode_text, decode_video, size_hw
from fastgen.datasets.wds.shards import open_shard
from fastgen.datasets.wds.stream import iter_shard
from fastgen.utils.env import output_root
from fastgen.utils.s3 import S3Client, is_s3_url
from fastgen.utils.video import VideoError, check_num_frames, check_resolution


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _tensor_bytes(value) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def output_path(out_dir: str, shard_url: str) -> str:
    return os.path.join(out_dir, os.path.basename(shard_url))


def video_factors(net) -> tuple[int, int]:
    """(frame factor, pixel multiple) a video network needs: frames = (T-1) * the VAE's temporal factor + 1, and
    H, W multiples of its spatial factor x the transformer's patch size (so the latents fit the patch grid)."""
    adapter, vae = getattr(net, "adapter", None), getattr(net, "encoders", {}).get("vae")
    if getattr(adapter, "latent_ndim", 4) != 5 or vae is None:
        raise VideoError(f"{type(net).__name__} is not a video network with a video VAE; drop --sequence_length to "
                         "precompute images, or use a video config (e.g. Wan_1_3B_Config)")
    config = vae.config
    temporal = int(config.get("scale_factor_temporal") or config.get("temporal_compression_ratio") or 4)
    return temporal, adapter.vae_scale_factor(net) * int(adapter.patch_size(net)[-1])


def check_video_input(net, sequence_length: int, img_size) -> None:
    """Raise VideoError (one line: what is wrong and the nearest valid values) before anything is decoded."""
    temporal, multiple = video_factors(net)
    check_num_frames(sequence_length, temporal)
    check_resolution(*size_hw(img_size), multiple)


def decode_media(data: bytes, key: str, img_size, sequence_length: int | None = None, decoder_type: str = "segment",
                 seed: int = 0) -> torch.Tensor:
    """An image (sequence_length None) or a clip, decoded as the loaders do; the clip window depends only on
    (seed, key), so reruns and other rank layouts encode the same frames."""
    if sequence_length is None:
        return decode_image(data, img_size)
    generator = np.random.default_rng([int(seed), zlib.crc32(key.encode())])
    return decode_video(data, img_size, sequence_length, decoder_type, generator)


@torch.no_grad()
def encode_batch(net, keys: list[str], pixels: list[torch.Tensor], captions: list[str], tar: tarfile.TarFile) -> None:
    latents = net.encode_images(torch.stack(pixels), sample=False).float().cpu()
    embeddings = {k: v.float().cpu() for k, v in net.encode_text(captions).items()}
    for i, key in enumerate(keys):  # clone: a view would serialise the whole batch's storage
        _add(tar, f"{key}.latent.pth", _tensor_bytes(latents[i].clone()))
        _add(tar, f"{key}.txt_emb.pth", _tensor_bytes({k: v[i].clone() for k, v in embeddings.items()}))
        _add(tar, f"{key}.txt", captions[i].encode())


def precompute_shard(net, shard_url: str, out_path: str, *, img_size, media_key: str = "jpg",
                     caption_key: str = "txt", batch_size: int = 16, open_fn: Callable = open_shard,
                     progress=None, sequence_length: int | None = None, decoder_type: str = "segment",
                     seed: int = 0) -> dict:
    """Encode one shard into `out_path` (atomic); returns counts {"written", "skipped"}. `media_key` names the image
    or video file of a sample ("jpg", "png", "mp4", ...); `sequence_length` switches to video decoding."""
    counts = {"written": 0, "skipped": 0}
    tmp = f"{out_path}.tmp{os.getpid()}"
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    try:
        with tarfile.open(tmp, "w") as tar:
            keys, pixels, captions = [], [], []
            for _, sample in iter_shard(shard_url, open_fn):
                try:
                    media = decode_media(sample[media_key], sample["__key__"], img_size, sequence_length,
                                         decoder_type, seed)
                    caption = decode_text(sample[caption_key])
                except (KeyError, DecodeError) as error:
                    counts["skipped"] += 1
                    logger.warning(f"{shard_url}: sample {sample.get('__key__')} skipped ({error!r})")
                    continue
                keys.append(sample["__key__"])
                pixels.append(media)
                captions.append(caption)
                if len(keys) == batch_size:
                    encode_batch(net, keys, pixels, captions, tar)
                    counts["written"] += len(keys)
                    if progress is not None:
                        progress.update(len(keys))
                    keys, pixels, captions = [], [], []
            if keys:
                encode_batch(net, keys, pixels, captions, tar)
                counts["written"] += len(keys)
                if progress is not None:
                    progress.update(len(keys))
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return counts


def precompute(net, shards: list[str], out_dir: str, *, rank: int = 0, world_size: int = 1, show_progress=True,
               **kwargs) -> dict:
    """This rank's shards (i % world_size == rank) -> `out_dir` (a folder or an s3:// prefix: each shard is written
    locally, uploaded as one object, then removed); finished outputs are skipped. Returns counts."""
    from tqdm import tqdm

    if kwargs.get("sequence_length") is not None:
        check_video_input(net, kwargs["sequence_length"], kwargs["img_size"])

    remote = is_s3_url(out_dir)
    client = S3Client() if remote else None
    staging = os.path.join(output_root(), ".cache", "precompute", str(rank)) if remote else out_dir

    def finished(shard: str) -> bool:
        name = os.path.basename(shard)
        return client.exists(f"{out_dir.rstrip('/')}/{name}") if remote else os.path.isfile(output_path(out_dir, shard))

    mine = [s for i, s in enumerate(shards) if i % world_size == rank]
    todo = [s for s in mine if not finished(s)]
    totals = {"shards_done": 0, "shards_skipped": len(mine) - len(todo), "written": 0, "skipped": 0}
    with tqdm(total=None, unit="sample", desc=f"rank {rank}: {len(todo)} shards", disable=not show_progress) as bar:
        for shard in todo:
            local = output_path(staging, shard)
            counts = precompute_shard(net, shard, local, progress=bar, **kwargs)
            if remote:  # one PUT: the object appears complete or not at all
                client.upload_file(local, f"{out_dir.rstrip('/')}/{os.path.basename(shard)}")
                os.remove(local)
            totals["shards_done"] += 1
            totals["written"] += counts["written"]
            totals["skipped"] += counts["skipped"]
    return totals
