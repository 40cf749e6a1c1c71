"""ZipLoader: two datasets in one batch (the secondary's keys prefixed), each read in its own seeded order, resumable
from one position and the same whatever the world size; built from nested LazyCalls of real loaders; `--smoke`
batches from the nested loaders' own smoke batches."""

import pytest
import torch
from test_resume import assert_equal_tree

from fastgen.datasets.gaussian_mixture import GaussianMixtureLoader
from fastgen.datasets.kd_dataset import TeacherPairLoader, save_shard
from fastgen.datasets.loader import InfiniteLoader
from fastgen.datasets.samplers import IndexStream, seed_from
from fastgen.datasets.zip_loader import ZipLoader
from fastgen.utils import LazyCall as L
from fastgen.utils import instantiate


class Numbers(torch.utils.data.Dataset):
    """Item i = {"value": offset + i}: the value tells which item was read."""

    def __init__(self, n: int, offset: float, key: str = "value"):
        self.n, self.offset, self.key = n, offset, key

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {self.key: torch.tensor(self.offset + i)}


def zip_of(n1=7, n2=5, batch_size=3, seed=4, **kw):
    return ZipLoader(InfiniteLoader(Numbers(n1, 0.0), 1), InfiniteLoader(Numbers(n2, 100.0), 1),
                     batch_size=batch_size, seed=seed, **kw)


def take(loader, k):
    it = iter(loader)
    return [next(it) for _ in range(k)]


def test_each_dataset_in_its_own_seeded_order():
    batches = take(zip_of(), 4)  # 12 positions: the primary wraps into epoch 1, the secondary into epoch 2
    first = torch.cat([b["value"] for b in batches]).tolist()
    second = torch.cat([b["pair_value"] for b in batches]).tolist()
    assert first == [float(i) for i in IndexStream(7, seed=4).indices(range(12))]
    assert second == [100.0 + i for i in IndexStream(5, seed=seed_from(4, 1)).indices(range(12))]
    assert sorted(first[:7]) == [float(i) for i in range(7)]  # one epoch = every item once
    assert sorted(second[:5]) == [100.0 + i for i in range(5)]


def test_resume_from_position_and_world_size_invariance():
    loader = zip_of()
    straight = take(loader, 5)
    resumed = zip_of(sampler_start_idx=3 * 3)
    for got, want in zip(take(resumed, 2), straight[3:]):
        assert torch.equal(got["value"], want["value"]) and torch.equal(got["pair_value"], want["pair_value"])
    assert loader.position == 15 and loader.state_dict()["position"] == 15
    wide = take(zip_of(batch_size=4), 2)
    ranks = [take(zip_of(batch_size=2, rank=r, world_size=2), 2) for r in (0, 1)]
    for step in range(2):
        for key in ("value", "pair_value"):
            joined = torch.cat([ranks[0][step][key], ranks[1][step][key]])
            assert torch.equal(joined, wide[step][key])


def test_key_clash_and_non_loader_are_errors():
    with pytest.raises(ValueError, match="non-empty prefix"):
        zip_of(prefix="")
    clash = ZipLoader(InfiniteLoader(Numbers(3, 0.0, key="pair_value"), 1), InfiniteLoader(Numbers(3, 0.0), 1),
                      batch_size=2)
    with pytest.raises(ValueError, match="already has a key 'pair_value'"):
        next(iter(clash))
    with pytest.raises(TypeError, match="secondary must be a loader"):
        ZipLoader(InfiniteLoader(Numbers(3, 0.0), 1), Numbers(3, 0.0), batch_size=2)


def test_nested_lazycalls_of_real_loaders(tmp_path):
    """Gaussian-mixture samples (an infinite dataset: read at the position itself) beside a real KD shard."""
    n = 6
    noise = torch.randn(n, 2, generator=torch.Generator().manual_seed(0))
    shard = str(tmp_path / "pairs.safetensors")
    save_shard({"noise": noise, "real": noise * 2, "t_list": torch.tensor([80.0, 0.0])}, shard)
    cfg = L(ZipLoader)(
        primary=L(GaussianMixtureLoader)(gmm_name="ring8", batch_size=99, seed=1),
        secondary=L(TeacherPairLoader)(path=shard, batch_size=99, use_path=False),
        batch_size=4, seed=2,
    )
    batch = next(iter(instantiate(cfg)))
    assert batch["real"].shape == (4, 2) and batch["pair_noise"].shape == (4, 2)
    assert torch.equal(batch["pair_real"], batch["pair_noise"] * 2)  # pairs stay pairs
    order = IndexStream(n, seed=seed_from(2, 1)).indices(range(4))
    assert torch.equal(batch["pair_noise"], noise[order])
    mixture = next(iter(GaussianMixtureLoader(gmm_name="ring8", batch_size=4, seed=1)))
    assert torch.equal(batch["real"], mixture["real"])  # positions 0..3 of the same stream


def test_smoke_batch_merges_the_nested_smoke_batches():
    cfg = L(ZipLoader)(
        primary=L("fastgen.datasets.idx_loader.FashionMNISTLoader")(root=None, batch_size=8),
        secondary=L(TeacherPairLoader)(path="unused", batch_size=8, use_path=False),
        batch_size=8,
    )
    kwargs = {k: v for k, v in cfg.items() if k != "_target_"}
    batch = ZipLoader.smoke_batch({**kwargs, "input_shape": [1, 4, 4], "label_dim": 10}, 3)
    assert batch["real"].shape == (3, 1, 4, 4) and batch["condition"].shape == (3, 10)
    assert batch["pair_noise"].shape == (3, 1, 4, 4) and batch["pair_condition"].shape == (3, 10)
    assert "pair_path" not in batch


def test_trainer_resume_with_a_zip_loader_is_bit_identical(tmp_path, monkeypatch):
    """Toy DMD2 with the regression term, fed by a ZipLoader (ring8 samples + a KD shard): 8 iterations straight equal
    4, a stop, and a resume in a fresh model and trainer (weights, optimizers, RNG and the loader's one position)."""
    from fastgen.configs.experiments.Toy import config_dmd2
    from fastgen.trainer import Trainer

    noise = torch.randn(10, 2, generator=torch.Generator().manual_seed(0))
    shard = str(tmp_path / "pairs.safetensors")
    save_shard({"noise": noise, "real": noise * 0.5, "t_list": torch.tensor([80.0, 0.0])}, shard)

    def run(root, max_iter):
        monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(root))
        config = config_dmd2.create_config()
        config.model.regression_loss_weight = 0.5
        config.dataloader_train = L(ZipLoader)(
            primary=L(GaussianMixtureLoader)(gmm_name="ring8", batch_size=1, seed=1),
            secondary=L(TeacherPairLoader)(path=shard, batch_size=1, use_path=False),
            batch_size=8, seed=3,
        )
        config.trainer.max_iter, config.trainer.save_ckpt_iter, config.trainer.logging_iter = max_iter, 4, 4
        config.trainer.validation_iter = 100
        torch.manual_seed(0)
        model = instantiate(config.model_class, config=config.model)
        Trainer(config).run(model)
        (ckpt,) = root.rglob(f"{max_iter:07d}.pth")
        return torch.load(ckpt, weights_only=True)

    straight = run(tmp_path / "a", 8)
    run(tmp_path / "b", 4)
    resumed = run(tmp_path / "b", 8)
    assert straight["data"] == resumed["data"] == {"train": 8 * 8}  # the loader's position: 8 batches of 8
    for key in ("model", "optimizer", "rng"):
        assert_equal_tree(straight[key], resumed[key], key)

