"""Deterministic, resumable sample order over tar shards, split over ranks and dataloader workers.

Readers: a run has R = world_size * max(1, num_workers) readers; reader j = rank * workers + worker. In epoch e the
shards are permuted by (seed, e) and reader j reads every R-th shard of that permutation (`assignment`), so readers
never share a shard and every sample is read once per epoch. Inside a reader, samples pass a shuffle buffer of
`shuffle_size` raw samples; the pick is drawn from a generator seeded by (seed, epoch, reader, R), and the buffer is
drained at the end of the reader's epoch so epochs never mix.

A reader's position is a small `ReaderState`: its epoch, the work items not yet read, the cursor in the item being
read, the (shard, offset) references of the samples in the buffer and the generator state. It is a pure
description: re-reading the referenced samples rebuilds the buffer, so a resumed reader continues exactly where the
killed one stopped. A resumed run with another layout (world size or workers) turns all readers' states into the
per-epoch set of samples not yet seen (`remaining_work`) and deals it out to the new readers: nothing is read twice
and nothing skipped in those epochs; later epochs use the new layout's assignment.

A work item (shard, start, extras) means the samples of `shard` at offsets >= start plus those listed in extras.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fastgen.datasets.samplers import epoch_permutation


def assignment(seed: int, epoch: int, num_shards: int, reader: int, num_readers: int) -> list[list]:
    """Reader `reader`'s work items in `epoch` for a fresh (not resumed) epoch."""
    perm = epoch_permutation(seed, epoch, num_shards)
    return [[int(shard), 0, []] for shard in perm[reader::num_readers]]


def epoch_rng(seed: int, epoch: int, reader: int, num_readers: int, generation: int = 0) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, epoch, reader, num_readers, generation])))


@dataclass
class ReaderState:
    """Everything needed to continue one reader (plain lists and ints: picklable, torch.save-able, JSON-able)."""

    epoch: int
    items: list                       # work items not started in this epoch: [shard, start, extras]
    current: list | None = None       # [shard, start, extras, cursor] being read (cursor: next offset to consider)
    buffer: list = field(default_factory=list)  # ref codes (pack_ref) of the samples waiting in the shuffle buffer
    rng: dict | None = None           # numpy bit-generator state of the pick generator (None: fresh for the epoch)
    carry: dict = field(default_factory=dict)  # epoch -> work items dealt out on a re-layout (later epochs)
    generation: int = 0               # number of re-layouts behind this state (salts the pick generator)
    counts: dict = field(default_factory=lambda: {"ok": 0, "missing": 0, "failed": 0, "bad_shards": 0})

    def to_dict(self) -> dict:
        """A copy as plain data (hand-written: dataclasses.asdict deep-copies element by element, too slow per batch)."""
        return {"epoch": self.epoch, "items": [[s, st, list(ex)] for s, st, ex in self.items],
                "current": None if self.current is None else [*self.current[:2], list(self.current[2]), self.current[3]],
                "buffer": list(self.buffer), "rng": self.rng, "generation": self.generation,
                "carry": {e: [[s, st, list(ex)] for s, st, ex in items] for e, items in self.carry.items()},
                "counts": dict(self.counts)}

    @classmethod
    def from_dict(cls, state: dict) -> ReaderState:
        state = dict(state)
        state["carry"] = {int(k): v for k, v in state.get("carry", {}).items()}
        return cls(**state)


REF_BITS = 32


def pack_ref(shard: int, offset: int) -> int:
    """(shard, offset-in-shard) as one int: buffer snapshots copy a flat list of ints (cheap per batch)."""
    return (int(shard) << REF_BITS) | int(offset)


def unpack_ref(code: int) -> tuple[int, int]:
    return int(code) >> REF_BITS, int(code) & ((1 << REF_BITS) - 1)


def fresh_state(seed: int, num_shards: int, reader: int, num_readers: int) -> ReaderState:
    return ReaderState(epoch=0, items=assignment(seed, 0, num_shards, reader, num_readers))


def _item_remaining(item: list, cursor: int) -> list:
    """What is left of work item [shard, start, extras] once offsets < cursor were considered."""
    shard, start, extras = item[0], item[1], item[2]
    left = [x for x in extras if x >= cursor]
    return [shard, max(start, cursor), left]


def reader_remaining(state: ReaderState) -> dict[int, list]:
    """Epoch -> work items this reader has not yet delivered (in its current epoch and carried ones)."""
    items = [list(it) for it in state.items]
    if state.current is not None:
        items.append(_item_remaining(state.current[:3], state.current[3]))
    by_shard: dict[int, list] = {}
    for shard, offset in map(unpack_ref, state.buffer):
        by_shard.setdefault(int(shard), []).append(int(offset))
    for shard, offsets in by_shard.items():
        items.append([shard, 1 << 62, sorted(offsets)])  # start past the end: only the listed offsets
    out = {state.epoch: items}
    for epoch, carried in state.carry.items():
        out[int(epoch)] = [list(it) for it in carried]
    return out


def merge_items(items: list) -> list:
    """Union of work items per shard (sorted by shard): offsets >= min start plus all extras below it."""
    merged: dict[int, list] = {}
    for shard, start, extras in items:
        if shard not in merged:
            merged[shard] = [shard, start, set(extras)]
            continue
        entry = merged[shard]
        entry[2].update(extras)
        entry[1] = min(entry[1], start)
    return [[shard, start, sorted(x for x in extras if x < start)] for shard, (shard, start, extras) in
            sorted(merged.items())]


def remaining_work(seed: int, num_shards: int, states: dict[int, ReaderState], num_readers: int) -> dict[int, list]:
    """Epoch -> merged work items nobody delivered yet, over all readers of a saved layout.

    A reader that is behind another's epoch has not touched that epoch: its full assignment there is still due.
    """
    if len(states) != num_readers:
        raise ValueError(f"saved loader state has {len(states)} reader states for {num_readers} readers")
    last = max(max([s.epoch, *s.carry]) for s in states.values())
    work: dict[int, list] = {}
    for reader, state in states.items():
        own = reader_remaining(state)
        for epoch in range(min(s.epoch for s in states.values()), last + 1):
            if epoch in own:
                work.setdefault(epoch, []).extend(own[epoch])
            elif epoch > state.epoch:
                work.setdefault(epoch, []).extend(assignment(seed, epoch, num_shards, reader, num_readers))
    return {epoch: merge_items(items) for epoch, items in work.items() if items}


def relayout(seed: int, num_shards: int, states: dict[int, ReaderState], old_readers: int,
             new_readers: int) -> dict[int, ReaderState]:
    """Deal the not-yet-delivered work of a saved layout out to `new_readers` readers."""
    work = remaining_work(seed, num_shards, states, old_readers)
    generation = 1 + max(s.generation for s in states.values())
    counts = {key: sum(s.counts.get(key, 0) for s in states.values()) for key in ReaderState(0, []).counts}
    first_epoch = min(s.epoch for s in states.values())  # all may have just finished an epoch: work can be empty
    epochs = list(range(first_epoch, max(work, default=first_epoch) + 1))
    out = {}
    for reader in range(new_readers):  # every epoch up to the last touched one is carried, even if empty here
        share = {epoch: work.get(epoch, [])[reader::new_readers] for epoch in epochs}
        first = epochs[0]
        out[reader] = ReaderState(epoch=first, items=share[first], carry={e: share[e] for e in epochs[1:]},
                                  generation=generation,
                                  counts=dict(counts) if reader == 0 else {k: 0 for k in counts})
    return out
