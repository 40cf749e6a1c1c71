"""`SampleReader`: one reader's infinite stream of raw samples (dicts of file bytes) in its deterministic order.

It realises the order described in order.py: work items are streamed shard by shard through webdataset's tar
iterators, samples lacking a required file are skipped and counted, a shard that is not a tar or ends early is
skipped from that point (warned once, counted), and a shuffle buffer of raw bytes (bounded memory) picks the output.
`state` always describes the samples not yet handed out, so it can be saved between any two samples.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Iterator

from loguru import logger
from webdataset.tariterators import group_by_keys, tar_file_iterator

from fastgen.datasets.wds.order import ReaderState, assignment, epoch_rng, pack_ref, unpack_ref

END_OF_ARCHIVE = bytes(1024)  # a tar ends with two zero blocks (writers pad further with zeros)


class TailTracker:
    """A read-through wrapper remembering the last 1024 bytes, to tell a complete tar from a truncated one:
    tarfile's stream mode takes a missing end-of-archive marker for a normal end."""

    def __init__(self, stream):
        self.stream, self.tail = stream, b""

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.tail = (self.tail + data[-1024:])[-1024:]
        return data

    def complete(self) -> bool:
        while self.read(1 << 20):  # padding after the end marker
            pass
        return self.tail == END_OF_ARCHIVE


def iter_shard(url: str, open_fn: Callable) -> Iterator[tuple[int, dict]]:
    """(offset, sample) pairs of one shard in tar order; tar errors (truncation included) propagate."""
    with open_fn(url) as stream:
        tracked = TailTracker(stream)
        files = ({**item, "__url__": url} for item in tar_file_iterator(tracked))
        yield from enumerate(group_by_keys(files))
        if not tracked.complete():
            raise tarfile.ReadError("the shard ends without the tar end-of-archive blocks (truncated)")


class SampleReader:
    """Iterating yields ((shard, offset), sample) forever; `state` is the position after the last yielded sample."""

    def __init__(self, shards: list[str], state: ReaderState, *, seed: int, reader: int, num_readers: int,
                 shuffle_size: int, required: tuple[str, ...], keep: tuple[str, ...], open_fn: Callable):
        self.shards, self.state, self.seed = shards, state, int(seed)
        self.reader, self.num_readers = int(reader), int(num_readers)
        self.shuffle_size = max(1, int(shuffle_size))
        self.required, self.keep, self.open_fn = tuple(required), tuple(keep), open_fn
        self.rng = epoch_rng(self.seed, state.epoch, self.reader, self.num_readers, state.generation)
        if state.rng is not None:
            self.rng.bit_generator.state = state.rng

    def snapshot(self) -> dict:
        """The reader's state as plain data (generator state included)."""
        self.state.rng = self.rng.bit_generator.state
        return self.state.to_dict()

    def _slim(self, sample: dict) -> dict:
        return {key: sample[key] for key in (*self.keep, "__key__", "__url__") if key in sample}

    def _refill(self, refs: list) -> list:
        """Raw samples for buffered references (a resumed reader re-reads them once)."""
        refs = [unpack_ref(r) for r in refs]
        wanted: dict[int, set] = {}
        for shard, offset in refs:
            wanted.setdefault(int(shard), set()).add(int(offset))
        found = {}
        for shard, offsets in wanted.items():
            for offset, sample in iter_shard(self.shards[shard], self.open_fn):
                if offset in offsets:
                    found[(shard, offset)] = self._slim(sample)
                if offset >= max(offsets):
                    break
        return [found[(int(s), int(o))] for s, o in refs]

    def _item_samples(self, item: list) -> Iterator[tuple[tuple[int, int], dict]]:
        """Samples of one work item from its cursor on, advancing the cursor as offsets are considered."""
        shard, start, extras, cursor = item
        extras = set(extras)
        url = self.shards[shard]
        try:
            for offset, sample in iter_shard(url, self.open_fn):
                if offset < cursor:
                    continue
                item[3] = offset + 1
                if offset < start and offset not in extras:
                    continue
                if any(key not in sample for key in self.required):
                    self.state.counts["missing"] += 1
                    if self.state.counts["missing"] == 1:
                        absent = [k for k in self.required if k not in sample]
                        logger.warning(f"sample {sample.get('__key__')} in {url} lacks {absent}: skipped (counted; "
                                       "further ones are counted silently)")
                    continue
                yield (shard, offset), self._slim(sample)
        except (tarfile.TarError, EOFError, ValueError, OSError) as error:
            if "S3Error" in type(error).__name__:
                raise
            self.state.counts["bad_shards"] += 1
            logger.warning(f"shard {url} is unreadable from sample {item[3]} on ({type(error).__name__}: "
                           f"{str(error)[:120]}); skipping the rest of it (counted)")

    def __iter__(self) -> Iterator[tuple[tuple[int, int], dict]]:
        state = self.state
        buffer = list(zip([unpack_ref(r) for r in state.buffer], self._refill(state.buffer)))
        delivered_in_epoch, had_items = 0, False  # only epochs begun here are checked for having any sample
        source = None  # the live generator over state.current (kept across picks: a shard is streamed once)
        while True:
            while True:
                if source is None and state.current is None and state.items:
                    shard, start, extras = state.items.pop(0)
                    state.current = [shard, start, list(extras), 0]
                if source is None and state.current is not None:
                    source = self._item_samples(state.current)
                if len(buffer) >= self.shuffle_size or source is None:
                    break
                nxt = next(source, None)
                if nxt is None:
                    source, state.current = None, None
                    continue
                buffer.append(nxt)
                state.buffer.append(pack_ref(*nxt[0]))
            if buffer:
                pick = int(self.rng.integers(len(buffer)))
                buffer[pick], buffer[-1] = buffer[-1], buffer[pick]
                state.buffer[pick], state.buffer[-1] = state.buffer[-1], state.buffer[pick]
                ref, sample = buffer.pop()
                state.buffer.pop()
                delivered_in_epoch += 1
                yield ref, sample
                continue
            if had_items and delivered_in_epoch == 0:
                raise RuntimeError(f"WDS reader {self.reader} found no readable sample in a whole epoch of its "
                                   "shards; check the shards (see the warnings above) and key_map")
            state.epoch += 1
            carried = state.carry.pop(state.epoch, None)
            state.items = carried if carried is not None else assignment(
                self.seed, state.epoch, len(self.shards), self.reader, self.num_readers)
            self.rng = epoch_rng(self.seed, state.epoch, self.reader, self.num_readers, state.generation)
            delivered_in_epoch, had_items = 0, bool(state.items)
