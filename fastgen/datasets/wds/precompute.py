"""Image + caption shards -> latent + text-embedding shards, with a network's own VAE and text encoders.

Each input shard becomes one output shard of the same name holding, per sample, `{key}.latent.pth` (the normalised
VAE latent, [C, h, w]), `{key}.txt_emb.pth` (the text-encoder outputs the denoiser takes, a dict of tensors) and the
caption `{key}.txt`: what `ImageLatentLoaderConfig` reads. The VAE is used deterministically (the latent
distribution's mean), so a rerun writes identical shards. Shard i belongs to rank i % world_size; an output is written
to a temporary file and renamed when complete, so finished shards are skipped when a killed job is started again.
Samples lacking the image or caption, or whose image does not decode, are skipped and counted.

`net` is any object with `encode_images(images [B,3,H,W] in [-1,1], sample=False)` and `encode_text(list[str])`
(fastgen.networks.hf networks built with their encoders): this module imports no network code.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable

import torch
from loguru import logger

from fastgen.datasets.wds.decode import DecodeError, decode_image, decode_text
from fastgen.datasets.wds.shards import open_shard
from fastgen.datasets.wds.stream import iter_shard
from fastgen.utils.env import output_root
from fastgen.utils.s3 import S3Client, is_s3_url


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


@torch.no_grad()
def encode_batch(net, keys: list[str], images: list[torch.Tensor], captions: list[str], tar: tarfile.TarFile) -> None:
    latents = net.encode_images(torch.stack(images), sample=False).float().cpu()
    embeddings = {k: v.float().cpu() for k, v in net.encode_text(captions).items()}
    for i, key in enumerate(keys):  # clone: a view would serialise the whole batch's storage
        _add(tar, f"{key}.latent.pth", _tensor_bytes(latents[i].clone()))
        _add(tar, f"{key}.txt_emb.pth", _tensor_bytes({k: v[i].clone() for k, v in embeddings.items()}))
        _add(tar, f"{key}.txt", captions[i].encode())


def precompute_shard(net, shard_url: str, out_path: str, *, img_size, image_key: str = "jpg",
                     caption_key: str = "txt", batch_size: int = 16, open_fn: Callable = open_shard,
                     progress=None) -> dict:
    """Encode one shard into `out_path` (atomic); returns counts {"written", "skipped"}."""
    counts = {"written": 0, "skipped": 0}
    tmp = f"{out_path}.tmp{os.getpid()}"
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    try:
        with tarfile.open(tmp, "w") as tar:
            keys, images, captions = [], [], []
            for _, sample in iter_shard(shard_url, open_fn):
                try:
                    image = decode_image(sample[image_key], img_size)
                    caption = decode_text(sample[caption_key])
                except (KeyError, DecodeError) as error:
                    counts["skipped"] += 1
                    logger.warning(f"{shard_url}: sample {sample.get('__key__')} skipped ({error!r})")
                    continue
                keys.append(sample["__key__"])
                images.append(image)
                captions.append(caption)
                if len(keys) == batch_size:
                    encode_batch(net, keys, images, captions, tar)
                    counts["written"] += len(keys)
                    if progress is not None:
                        progress.update(len(keys))
                    keys, images, captions = [], [], []
            if keys:
                encode_batch(net, keys, images, captions, tar)
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
