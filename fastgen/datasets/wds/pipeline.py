"""Worker side of the WebDataset loaders: reader -> decode -> batch, each batch tagged with the reader's state.

`BatchStream` is a torch IterableDataset; in a DataLoader with N workers, worker w serves reader
`rank * N + (w + rotation) % N`, where `rotation` is the number of batches this rank had taken when the iterator was
made, modulo N: torch hands out workers' batches round-robin from worker 0, so the rotation makes a resumed run
take its next batch from the same reader the killed run would have used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from loguru import logger
from torch.utils.data import IterableDataset, default_collate, get_worker_info

from fastgen.datasets.wds.decode import VIDEO_EXTS, DecodeError, decode_file, extension
from fastgen.datasets.wds.order import ReaderState
from fastgen.datasets.wds.shards import open_shard
from fastgen.datasets.wds.stream import SampleReader
from fastgen.utils.s3 import S3Client, is_s3_url


@dataclass
class DecodeSpec:
    """How one rank turns raw samples into batch entries (picklable: it travels to the worker processes)."""

    key_map: dict
    constants: dict = field(default_factory=dict)     # batch key -> value shared by every sample (files_map, presets)
    img_size: object = None
    sequence_length: int | None = None
    decoder_type: str = "segment"
    sample_shapes: dict | None = None
    seed: int = 0

    def decode(self, ref: tuple[int, int], sample: dict, epoch: int) -> dict:
        out = {}
        for batch_key, file_key in self.key_map.items():
            ext = extension(file_key)
            generator = None
            if ext in VIDEO_EXTS:  # the segment drawn depends only on (seed, epoch, sample): layouts agree
                generator = np.random.default_rng([self.seed, epoch, ref[0], ref[1]])
            value = decode_file(sample[file_key], ext, img_size=self.img_size, sequence_length=self.sequence_length,
                                decoder_type=self.decoder_type, generator=generator)
            expected = (self.sample_shapes or {}).get(batch_key)
            if expected is not None and isinstance(value, torch.Tensor) and list(value.shape) != list(expected):
                raise DecodeError(f"{file_key} has shape {list(value.shape)}, sample_shapes says {list(expected)}")
            out[batch_key] = value
        out.update(self.constants)
        out["fname"] = str(sample.get("__key__", ""))
        out["shard"] = str(sample.get("__url__", ""))
        return out


MIN_SAMPLES_FOR_FAIL_CHECK = 32


def check_failures(counts: dict, max_fail_fraction: float) -> None:
    """Stop (RuntimeError) once more than `max_fail_fraction` of the samples seen (at least 32) failed."""
    bad = counts["failed"] + counts["missing"]
    seen = bad + counts["ok"]
    if seen >= MIN_SAMPLES_FOR_FAIL_CHECK and bad > max_fail_fraction * seen:
        raise RuntimeError(f"WDS loader: {bad} of {seen} samples failed ({counts['missing']} lacked a key_map file, "
                           f"{counts['failed']} did not decode), more than max_fail_fraction={max_fail_fraction}; "
                           "fix the shards or key_map (or raise max_fail_fraction)")


class BatchStream(IterableDataset):
    """Infinite batches `(batch, (reader, state dict))` of one rank (all its readers when num_workers == 0)."""

    def __init__(self, shards: list[str], states: dict[int, dict], spec: DecodeSpec, *, rank: int, workers: int,
                 num_readers: int, batch_size: int, shuffle_size: int, rotation: int = 0, s3_options=None,
                 max_fail_fraction: float = 1.0):
        self.shards, self.states, self.spec = shards, states, spec
        self.rank, self.workers, self.num_readers = rank, max(1, workers), num_readers
        self.batch_size, self.shuffle_size, self.rotation = batch_size, shuffle_size, rotation
        self.s3_options = s3_options or {}
        self.max_fail_fraction = max_fail_fraction
        required = tuple(spec.key_map.values())
        self.required = required

    def _open(self, url: str):
        options = dict(self.s3_options)
        credential_file = options.pop("credential_file", None)
        if is_s3_url(url) and getattr(self, "_client", None) is None:  # one client per worker process
            self._client = S3Client(credential_file=credential_file)
        return open_shard(url, client=getattr(self, "_client", None), **options)

    def reader_id(self) -> int:
        info = get_worker_info()
        worker = 0 if info is None else info.id
        return self.rank * self.workers + (worker + self.rotation) % self.workers

    def batches(self, reader: int):
        state = ReaderState.from_dict(self.states[reader])
        source = SampleReader(self.shards, state, seed=self.spec.seed, reader=reader, num_readers=self.num_readers,
                              shuffle_size=self.shuffle_size, required=self.required, keep=self.required,
                              open_fn=self._open)
        items, epoch, ok_in_epoch, whole_epoch = [], state.epoch, 0, False
        for ref, sample in source:
            if state.epoch != epoch:  # a whole epoch of this reader without one decodable sample would loop forever
                if whole_epoch and ok_in_epoch == 0:
                    raise RuntimeError(f"WDS reader {reader}: no sample of a whole epoch decoded (see the warnings "
                                       "above); fix the shards, key_map or sample_shapes")
                epoch, ok_in_epoch, whole_epoch = state.epoch, 0, True
            try:
                items.append(self.spec.decode(ref, sample, state.epoch))
                state.counts["ok"] += 1
                ok_in_epoch += 1
            except DecodeError as error:
                state.counts["failed"] += 1
                check_failures(state.counts, self.max_fail_fraction)
                if state.counts["failed"] <= 3:
                    logger.warning(f"sample {sample.get('__key__')} in {sample.get('__url__')} skipped: {error}")
                continue
            if len(items) == self.batch_size:
                yield default_collate(items), (reader, source.snapshot())
                items = []

    def __iter__(self):
        return self.batches(self.reader_id())
