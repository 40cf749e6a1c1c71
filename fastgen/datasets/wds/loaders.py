"""WebDataset loaders: infinite, resumable batches from tar shards on disk or S3 (configs in fastgen/configs/data.py).

`WDSLoader` reads any files by `key_map` (batch key -> file extension in the sample: "latent.pth", "txt_emb.pth",
"noise.pth", ...); `ImageWDSLoader` and `VideoWDSLoader` add pixel decoding options. The order and its resumable
position are described in order.py; `position` / `state_dict()` is the state of every reader of every rank (a
collective when torch.distributed is initialised: call it on all ranks, as the trainer does), and passing it back as
`sampler_start_idx` (or to `load_state_dict`) continues with the next unseen samples on any world size.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import torch
from loguru import logger
from torch.utils.data import DataLoader

from fastgen.datasets.loader import resolve_rank_world
from fastgen.datasets.wds.decode import IMAGE_EXTS, TEXT_EXTS, VIDEO_EXTS, DecodeError, decode_file, extension, size_hw
from fastgen.datasets.wds.order import ReaderState, fresh_state, relayout
from fastgen.datasets.wds.pipeline import BatchStream, DecodeSpec, check_failures
from fastgen.datasets.wds.presets import resolve_presets
from fastgen.datasets.wds.shards import list_shards
from fastgen.utils.env import DEFAULT_S3_CREDENTIAL
from fastgen.utils.s3 import cached_download_rank0_first, is_s3_url

STATE_KIND = "wds"
SMOKE_IMG_SIZE = 16
SMOKE_FRAMES = 5


def load_shared_files(files_map: dict | None) -> dict:
    """files_map {batch key: local path or s3:// URL} -> decoded values added to every sample."""
    out = {}
    for key, path in (files_map or {}).items():
        local = cached_download_rank0_first(path) if is_s3_url(path) else os.path.expanduser(str(path))
        if not os.path.isfile(local):
            raise FileNotFoundError(f"files_map[{key!r}] = {path!r} does not exist; create it or drop the entry")
        with open(local, "rb") as handle:
            try:
                out[key] = decode_file(handle.read(), extension(local))
            except DecodeError as error:
                raise ValueError(f"files_map[{key!r}] = {path!r}: {error}") from None
    return out


class WDSLoader:
    """Yields batch dicts forever: one entry per key_map / files_map / presets key, plus `fname` and `shard` lists."""

    def __init__(
        self,
        datatags,
        batch_size: int,
        key_map: dict,
        files_map: dict | None = None,
        presets: dict | None = None,
        seed: int = 0,
        shuffle_size: int = 1000,
        num_workers: int = 2,
        sampler_start_idx=None,
        rank: int | None = None,
        world_size: int | None = None,
        max_fail_fraction: float = 0.01,
        sample_shapes: dict | None = None,
        prefetch_factor: int = 2,
        pin_memory: bool = False,
        credential_file: str | None = DEFAULT_S3_CREDENTIAL,
        s3_max_retries: int = 5,
        s3_backoff_s: float = 0.2,
        img_size=None,
        sequence_length: int | None = None,
        decoder_type: str = "segment",
    ):
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not key_map:
            raise ValueError('key_map is empty; map batch keys to sample files, e.g. {"real": "jpg", "condition": "txt"}')
        if not 0.0 <= float(max_fail_fraction) <= 1.0:
            raise ValueError(f"max_fail_fraction must be in [0, 1], got {max_fail_fraction}")
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.key_map = dict(key_map)
        self.shuffle_size, self.num_workers = int(shuffle_size), int(num_workers)
        self.prefetch_factor, self.pin_memory = prefetch_factor, bool(pin_memory)
        self.max_fail_fraction = float(max_fail_fraction)
        self.rank, self.world_size = resolve_rank_world(rank, world_size)
        self.workers = max(1, self.num_workers)
        self.num_readers = self.world_size * self.workers
        self.s3_options = {"max_retries": s3_max_retries, "backoff_s": s3_backoff_s, "credential_file": credential_file}
        self.shards = list_shards(datatags, credential_file=credential_file)
        if len(self.shards) < self.num_readers:
            raise ValueError(f"{len(self.shards)} shards cannot feed {self.num_readers} readers (world size "
                             f"{self.world_size} x {self.workers} workers); lower num_workers or write more shards")
        constants = {**resolve_presets(presets), **load_shared_files(files_map)}
        self.spec = DecodeSpec(self.key_map, constants, img_size=img_size, sequence_length=sequence_length,
                               decoder_type=decoder_type, sample_shapes=sample_shapes, seed=self.seed)
        self._states: dict[int, dict] = {}
        self._steps = 0
        self.load_state_dict(sampler_start_idx)

    # --- position ---------------------------------------------------------------------------------------------
    def _my_readers(self) -> range:
        return range(self.rank * self.workers, (self.rank + 1) * self.workers)

    def shards_digest(self) -> str:
        """Identifies the shard list (names only), so a state is never applied to other data by mistake."""
        return hashlib.sha256("\n".join(os.path.basename(s) for s in self.shards).encode()).hexdigest()[:16]

    @property
    def position(self) -> dict:
        """Every rank's reader states (collective under torch.distributed); pass back as `sampler_start_idx`."""
        local = {j: self._states[j] for j in self._my_readers()}
        if torch.distributed.is_available() and torch.distributed.is_initialized() and self.world_size > 1:
            gathered: list = [None] * self.world_size
            torch.distributed.all_gather_object(gathered, local)
            merged = {j: s for part in gathered for j, s in part.items()}
        else:
            merged = local
        return {"kind": STATE_KIND, "seed": self.seed, "num_shards": len(self.shards), "digest": self.shards_digest(),
                "world_size": self.world_size, "workers": self.workers, "steps": self._steps, "readers": merged}

    def state_dict(self) -> dict:
        return self.position

    def load_state_dict(self, state) -> None:
        """Start fresh (None / 0), or continue from a saved `position` (same or another layout)."""
        self._steps = 0
        if isinstance(state, dict) and state.get("position") == 0:  # the trainer's "rewind" (validation loaders)
            state = None
        if state is None or (isinstance(state, int) and state == 0):
            self._states = {j: fresh_state(self.seed, len(self.shards), j, self.num_readers).to_dict()
                            for j in self._my_readers()}
            return
        if not isinstance(state, dict) or state.get("kind") != STATE_KIND:
            raise ValueError("a WebDataset loader resumes from its saved state dict (loader.position), not from "
                             f"{type(state).__name__} {str(state)[:40]!r}; resume from a checkpoint written by it")
        for key, mine in (("seed", self.seed), ("num_shards", len(self.shards)), ("digest", self.shards_digest())):
            if state[key] != mine:
                raise ValueError(f"saved loader state has {key}={state[key]!r}, this loader has {mine!r}: the data "
                                 "or seed changed, so the saved position means nothing here")
        readers = {int(j): s for j, s in state["readers"].items()}
        if state["world_size"] == self.world_size and state["workers"] == self.workers:
            self._states = {j: readers[j] for j in self._my_readers()}
            self._steps = int(state["steps"])
            return
        logger.info(f"WDS loader: re-dealing the unseen samples of {state['world_size']}x{state['workers']} readers "
                    f"to {self.world_size}x{self.workers}")
        old = {j: ReaderState.from_dict(s) for j, s in readers.items()}
        new = relayout(self.seed, len(self.shards), old, len(old), self.num_readers)
        self._states = {j: new[j].to_dict() for j in self._my_readers()}

    # --- iteration ---------------------------------------------------------------------------------------------
    def counts(self) -> dict:
        """This rank's sample counts: ok, missing (a key_map file absent), failed (decode), bad_shards."""
        total: dict = {}
        for state in self._states.values():
            for key, value in state["counts"].items():
                total[key] = total.get(key, 0) + value
        return total

    def __iter__(self) -> Iterator[dict]:
        stream = BatchStream(self.shards, dict(self._states), self.spec, rank=self.rank, workers=self.workers,
                             num_readers=self.num_readers, batch_size=self.batch_size,
                             shuffle_size=self.shuffle_size, rotation=self._steps % self.workers,
                             s3_options=self.s3_options, max_fail_fraction=self.max_fail_fraction)
        if self.num_workers == 0:
            source = stream.batches(self.rank)
        else:
            kwargs = {"prefetch_factor": self.prefetch_factor} if self.prefetch_factor else {}
            source = DataLoader(stream, batch_size=None, num_workers=self.num_workers, pin_memory=self.pin_memory,
                                **kwargs)
        return self._track(source)

    def _track(self, source) -> Iterator[dict]:
        iterator = iter(source)
        while True:
            try:
                batch, (reader, state) = next(iterator)
            except RuntimeError as error:  # torch wraps a worker's error in a multi-line traceback: keep the reason
                text = str(error).strip()
                if "DataLoader worker process" not in text:
                    raise
                reason = text.splitlines()[-1].split(": ", 1)[-1]
                raise RuntimeError(f"{reason} (raised in a DataLoader worker)") from None
            self._states[int(reader)] = state
            self._steps += 1
            check_failures(self.counts(), self.max_fail_fraction)
            yield batch

    # --- smoke ----------------------------------------------------------------------------------------------------
    @classmethod
    def smoke_batch(cls, kwargs: dict, batch_size: int) -> dict:
        """A synthetic batch with the keys and dtypes this loader yields, at reduced size (train.py --smoke).

        Pixels are 16x16 (videos 5 frames); tensor files (latents, embeddings) take their shape from
        `sample_shapes` {batch key: shape or {name: shape}}, which the config must then give.
        """
        generator = torch.Generator().manual_seed(0)
        shapes = kwargs.get("sample_shapes") or {}
        frames = min(int(kwargs.get("sequence_length") or SMOKE_FRAMES), SMOKE_FRAMES)
        batch: dict = {}

        def tensor_for(key: str):
            shape = shapes.get(key)
            if shape is None:
                raise ValueError(f"{cls.__name__}.smoke_batch needs sample_shapes[{key!r}] (the per-sample shape of "
                                 "that tensor file) in the loader config to build a synthetic batch")
            if isinstance(shape, dict):
                return {name: torch.randn(batch_size, *s, generator=generator) for name, s in shape.items()}
            return torch.randn(batch_size, *shape, generator=generator)

        for key, file_key in (kwargs.get("key_map") or {}).items():
            ext = extension(file_key)
            if ext in IMAGE_EXTS:
                batch[key] = torch.rand(batch_size, 3, SMOKE_IMG_SIZE, SMOKE_IMG_SIZE, generator=generator) * 2 - 1
            elif ext in VIDEO_EXTS:
                batch[key] = torch.rand(batch_size, 3, frames, SMOKE_IMG_SIZE, SMOKE_IMG_SIZE, generator=generator) * 2 - 1
            elif ext in TEXT_EXTS:
                batch[key] = [f"smoke caption {i}" for i in range(batch_size)]
            else:
                batch[key] = tensor_for(key)
        for key, text in resolve_presets(kwargs.get("presets")).items():
            batch[key] = [text] * batch_size
        for key in kwargs.get("files_map") or {}:
            batch[key] = tensor_for(key)
        batch["fname"] = [f"smoke-{i:06d}" for i in range(batch_size)]
        batch["shard"] = ["smoke.tar"] * batch_size
        return batch


class ImageWDSLoader(WDSLoader):
    """Images (jpg/png/...) resized (bicubic, shorter side) and centre-cropped to `img_size` (int or (W, H)), in
    [-1, 1]; captions as lists of strings."""

    def __init__(self, datatags, batch_size: int, key_map: dict | None = None, img_size=512, **kwargs):
        size_hw(img_size)
        super().__init__(datatags, batch_size, key_map or {"real": "jpg", "condition": "txt"}, img_size=img_size,
                         **kwargs)


class VideoWDSLoader(WDSLoader):
    """Videos decoded with PyAV to (C, T, H, W) in [-1, 1]: `sequence_length` frames ("segment": a random window,
    "full": spread over the clip), resized and centre-cropped to `img_size` = (W, H)."""

    def __init__(self, datatags, batch_size: int, key_map: dict | None = None, sequence_length: int = 81,
                 img_size=(832, 480), decoder_type: str = "segment", **kwargs):
        if decoder_type not in ("segment", "full"):
            raise ValueError(f"decoder_type must be 'segment' or 'full', got {decoder_type!r}")
        if int(sequence_length) < 1:
            raise ValueError(f"sequence_length must be >= 1, got {sequence_length}")
        super().__init__(datatags, batch_size, key_map or {"real": "mp4", "condition": "txt"}, img_size=img_size,
                         sequence_length=int(sequence_length), decoder_type=decoder_type, **kwargs)
