"""Two datasets read side by side in one batch: e.g. real images for DMD2's GAN beside teacher (noise, image) pairs for
its regression loss (Yin et al. 2024a, DMD), with one resumable position.

Global position p reads item `primary_stream(p)` of the primary dataset and item `secondary_stream(p)` of the secondary
one; the secondary's keys get a prefix (default "pair_"). Each stream is its own epoch-permutation of its dataset
(`samplers.IndexStream`, seeds `seed` and `seed_from(seed, 1)`; an infinite dataset is read at the position itself),
so the two datasets may differ in length and the
combined order is still a pure function of (seed, p): resuming from the position continues both exactly, whatever the
world size (the loader's only state is the position, as for every `InfiniteLoader`).
"""

from __future__ import annotations

from collections.abc import Mapping

from omegaconf import DictConfig, OmegaConf

from fastgen.datasets.loader import InfiniteLoader, dataset_length, fetch_items
from fastgen.datasets.samplers import IndexStream, seed_from

DEFAULT_PREFIX = "pair_"


class ZippedDataset:
    """Infinite dataset (no `__len__`): items are global positions, each the merge of one item of both datasets."""

    def __init__(self, primary, secondary, prefix: str = DEFAULT_PREFIX, seed: int = 0,
                 shuffle_primary: bool = True, shuffle_secondary: bool = True):
        if not prefix:
            raise ValueError("ZipLoader needs a non-empty prefix for the secondary dataset's keys (e.g. 'pair_')")
        self.primary, self.secondary, self.prefix = primary, secondary, str(prefix)
        self.primary_stream = IndexStream(dataset_length(primary), seed=seed, shuffle=shuffle_primary)
        self.secondary_stream = IndexStream(dataset_length(secondary), seed=seed_from(seed, 1),
                                            shuffle=shuffle_secondary)

    def __getitems__(self, positions: list[int]) -> dict:
        first = fetch_items(self.primary, self.primary_stream.indices(positions))
        second = fetch_items(self.secondary, self.secondary_stream.indices(positions))
        return merge_prefixed(first, second, self.prefix)

    def __getitem__(self, position: int) -> dict:
        return {k: v[0] for k, v in self.__getitems__([position]).items()}


def merge_prefixed(first: Mapping, second: Mapping, prefix: str) -> dict:
    """`first` plus `second`'s entries under `prefix + key`; a clash is an error, never a silent overwrite."""
    merged = dict(first)
    for key, value in second.items():
        name = prefix + key
        if name in merged:
            raise ValueError(f"ZipLoader: the primary batch already has a key {name!r}; choose another prefix")
        merged[name] = value
    return merged


class ZipLoader(InfiniteLoader):
    """Batches of `primary`'s keys plus `secondary`'s keys under `prefix`, forever.

    `primary` and `secondary` are built loaders (nested LazyCalls in a config); only their datasets and shuffle flags
    are used: this loader's batch_size, seed, position, rank and world size govern both.
    """

    def __init__(self, primary: InfiniteLoader, secondary: InfiniteLoader, batch_size: int,
                 prefix: str = DEFAULT_PREFIX, seed: int = 0, sampler_start_idx: int | None = None,
                 rank: int | None = None, world_size: int | None = None, num_workers: int = 0):
        for name, loader in (("primary", primary), ("secondary", secondary)):
            if not isinstance(loader, InfiniteLoader):
                raise TypeError(f"ZipLoader's {name} must be a loader (an InfiniteLoader, e.g. a nested LazyCall of "
                                f"one); got {type(loader).__name__}")
        dataset = ZippedDataset(primary.dataset, secondary.dataset, prefix, seed=seed,
                                shuffle_primary=primary.shuffle, shuffle_secondary=secondary.shuffle)
        super().__init__(dataset, batch_size=batch_size, seed=seed, shuffle=False,
                         sampler_start_idx=sampler_start_idx, rank=rank, world_size=world_size,
                         num_workers=num_workers)
        self.prefix = dataset.prefix
        for attr in ("label_dim", "t_list"):  # what callers read off the primary loader (e.g. KD's t_list)
            if hasattr(primary, attr):
                setattr(self, attr, getattr(primary, attr))

    @classmethod
    def smoke_batch(cls, kwargs: dict, batch_size: int) -> dict:
        """`train.py --smoke`: both nested loaders' synthetic batches (each given the tiny input_shape/label_dim)."""
        shared = {k: kwargs[k] for k in ("input_shape", "label_dim") if kwargs.get(k) is not None}
        batches = [_nested_smoke_batch(kwargs[name], shared, batch_size) for name in ("primary", "secondary")]
        return merge_prefixed(*batches, kwargs.get("prefix") or DEFAULT_PREFIX)


def _nested_smoke_batch(node, shared: dict, batch_size: int) -> dict:
    from fastgen.utils import locate

    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node)
    if not isinstance(node, Mapping) or "_target_" not in node:
        raise ValueError(f"ZipLoader.smoke_batch needs nested loader configs (LazyCalls); got {type(node).__name__}")
    target = node["_target_"]
    factory = locate(target) if isinstance(target, str) else target
    if not hasattr(factory, "smoke_batch"):
        raise ValueError(f"nested loader {target} declares no smoke_batch(kwargs, batch_size) for --smoke")
    kwargs = {k: v for k, v in node.items() if k not in ("_target_", "batch_size")}
    kwargs = {**shared, **{k: v for k, v in kwargs.items() if v is not None}}
    if "input_shape" in shared:  # the tiny shape always wins, as for a top-level loader
        kwargs["input_shape"] = shared["input_shape"]
    return factory.smoke_batch(kwargs, batch_size)
