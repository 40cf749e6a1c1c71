"""WebDataset loaders on shards written here: batch keys/dtypes/values per loader, full coverage without duplicates
over 2 ranks x 2 workers, kill-and-resume (same and other layout), and bad input."""

import io
import os

import numpy as np
import pytest
import torch
from _wds_shards import image_shards, mp4_bytes, png_bytes, sample_id, tensor_bytes, tensor_shards, write_shard

from fastgen.configs import data as data_configs
from fastgen.datasets.wds.loaders import ImageWDSLoader, VideoWDSLoader, WDSLoader
from fastgen.datasets.wds.presets import PRESET_CONSTANTS
from fastgen.utils import instantiate

COMMON = dict(rank=0, world_size=1, credential_file=None)


def ids_of(batch) -> list[int]:
    return [int(name) for name in batch["fname"]]


def take(loader, steps: int) -> list[dict]:
    iterator = iter(loader)
    return [next(iterator) for _ in range(steps)]


def all_ids(num_shards, per_shard):
    return sorted(sample_id(s, i) for s in range(num_shards) for i in range(per_shard))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("img"))
    image_shards(root, num_shards=8, per_shard=6)
    return root


def image_loader(root, **kw):
    args = dict(batch_size=4, key_map={"real": "png", "condition": "txt"}, img_size=8, shuffle_size=5,
                num_workers=0, presets={"neg_condition": "empty_string"}, **COMMON)
    args.update(kw)
    return ImageWDSLoader([f"WDS:{root}"], **args)


def test_image_loader_values(images):
    batch = take(image_loader(images), 1)[0]
    assert set(batch) == {"real", "condition", "neg_condition", "fname", "shard"}
    assert batch["real"].dtype == torch.float32 and batch["real"].shape == (4, 3, 8, 8)
    for k, ident in enumerate(ids_of(batch)):  # constant images: resize + crop keep the grey level
        torch.testing.assert_close(batch["real"][k], torch.full((3, 8, 8), (ident % 251) / 127.5 - 1), atol=1e-5,
                                   rtol=0)
        assert batch["condition"][k] == f"caption {ident}"
    assert batch["neg_condition"] == [""] * 4


def test_config_names_build(images, tmp_path):
    """The reference's config names instantiate against shards (datatags overridden)."""
    cfg = data_configs.ImageLoaderConfig
    loader = instantiate(cfg, datatags=[f"WDS:{images}"], key_map={"real": "png", "condition": "txt"}, img_size=8,
                         num_workers=0, batch_size=2, **COMMON)
    assert take(loader, 1)[0]["real"].shape == (2, 3, 8, 8)
    for name in ("ImageLatentLoaderConfig", "VideoLoaderConfig", "VideoLatentLoaderConfig", "PairLoaderConfig",
                 "PathLoaderConfig"):
        assert getattr(data_configs, name)["_target_"].startswith("fastgen.datasets.wds.loaders.")


def test_latent_pair_path_loaders(tmp_path):
    root = str(tmp_path / "lat")
    tensor_shards(root, 2, 4, {"latent.pth": (4, 2, 2), "real.pth": (4, 2, 2), "txt_emb.pth": (3, 5), "noise.pth": (4, 2, 2),
                               "path.pth": (3, 4, 2, 2)})
    neg = tmp_path / "neg.npy"
    np.save(neg, np.full((3, 5), -7.0, dtype=np.float32))
    loader = instantiate(data_configs.ImageLatentLoaderConfig, datatags=[f"WDS:{root}"], batch_size=2,
                         files_map={"neg_condition": str(neg)}, num_workers=0, **COMMON)
    batch = take(loader, 1)[0]
    ids = torch.tensor(ids_of(batch), dtype=torch.float32)
    torch.testing.assert_close(batch["real"], ids.view(2, 1, 1, 1).expand(2, 4, 2, 2))
    torch.testing.assert_close(batch["condition"], ids.view(2, 1, 1).expand(2, 3, 5))
    torch.testing.assert_close(batch["neg_condition"], torch.full((2, 3, 5), -7.0))
    for name, extra in (("PairLoaderConfig", "noise"), ("PathLoaderConfig", "path")):
        batch = take(instantiate(getattr(data_configs, name), datatags=[f"WDS:{root}"], num_workers=0, **COMMON), 1)[0]
        assert set(batch) == {"real", extra, "condition", "fname", "shard"}
        ids = torch.tensor(ids_of(batch), dtype=torch.float32)
        assert torch.equal(batch[extra].flatten(1).mean(1), ids)
    # a shape contract: samples whose tensor disagrees with sample_shapes are skipped and counted
    loader = instantiate(data_configs.PairLoaderConfig, datatags=[f"WDS:{root}"], num_workers=0,
                         sample_shapes={"noise": [4, 3, 3]}, max_fail_fraction=1.0, **COMMON)
    with pytest.raises(RuntimeError, match="no sample of a whole epoch decoded"):
        take(loader, 1)
    loader = instantiate(data_configs.PairLoaderConfig, datatags=[f"WDS:{root}"], num_workers=2,
                         sample_shapes={"noise": [4, 3, 3]}, max_fail_fraction=1.0, **COMMON)
    with pytest.raises(RuntimeError, match="decoded .* sample_shapes [(]raised in a DataLoader worker[)]$"):
        take(loader, 1)  # a worker's error arrives as its own one-line reason


def test_video_loader_segment_and_full(tmp_path):
    root = str(tmp_path / "vid")
    samples = [{"__key__": f"{k:06d}", "mp4": mp4_bytes(6, 16, 24, first_value=10 * k), "txt": f"clip {k}".encode()}
               for k in range(2)]
    samples.append({"__key__": "000002", "mp4": b"\x00\x00\x00\x18ftypmp42 truncated", "txt": b"broken"})
    write_shard(os.path.join(root, "shard-0000.tar"), samples)
    for decoder_type in ("full", "segment"):
        loader = VideoWDSLoader([f"WDS:{root}"], batch_size=2, sequence_length=4, img_size=(8, 8),
                                decoder_type=decoder_type, num_workers=0, presets={"neg_condition": "neg_prompt_wan"},
                                max_fail_fraction=1.0, **COMMON)
        batch = take(loader, 1)[0]
        assert batch["real"].shape == (2, 3, 4, 8, 8) and batch["real"].dtype == torch.float32
        assert batch["neg_condition"] == [PRESET_CONSTANTS["neg_prompt_wan"]] * 2
        for k, ident in enumerate(ids_of(batch)):
            levels = (batch["real"][k].mean(dim=(0, 2, 3)) + 1) * 127.5 - 10 * ident  # grey 20 t per frame
            frames = (levels / 20).round()
            torch.testing.assert_close(levels, frames * 20, atol=2.0, rtol=0)
            if decoder_type == "full":  # 4 frames spread over 6: 0, 2, 3, 5
                assert frames.tolist() == [0, 2, 3, 5]
            else:  # a window of 4 consecutive frames
                assert torch.equal(frames - frames[0], torch.arange(4.0))
        assert batch["condition"] == [f"clip {i}" for i in ids_of(batch)]
    take(loader, 1)  # a batch of epoch 1: epoch 0, with its broken clip, is behind
    assert loader.counts()["failed"] >= 1


def test_two_ranks_two_workers_cover_epoch_once(images):
    """8 shards x 6 samples over 4 readers: each rank's first 6 batches of 4 are exactly its readers' epoch 0."""
    seen = []
    for rank in range(2):
        loader = image_loader(images, num_workers=2, rank=rank, world_size=2, credential_file=None)
        seen += [i for batch in take(loader, 6) for i in ids_of(batch)]
    assert sorted(seen) == all_ids(8, 6)


@pytest.mark.parametrize("workers", [0, 2])
def test_kill_and_resume_continues_exactly(images, workers):
    reference = [ids_of(b) for b in take(image_loader(images, num_workers=workers), 9)]
    first = image_loader(images, num_workers=workers)
    head = [ids_of(b) for b in take(first, 5)]
    saved = torch.load(io.BytesIO(_saved(first.position)), weights_only=True)  # as a checkpoint would hold it
    tail = [ids_of(b) for b in take(image_loader(images, num_workers=workers, sampler_start_idx=saved), 4)]
    assert head + tail == reference


def _saved(state) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def test_resume_on_another_world_size_sees_each_sample_once(images):
    """2 ranks x 2 workers read part of epoch 0; one rank with one reader then delivers exactly the rest."""
    consumed, states = [], {}
    for rank in range(2):
        loader = image_loader(images, num_workers=2, rank=rank, world_size=2)
        consumed += [i for batch in take(loader, 3) for i in ids_of(batch)]
        states.update(loader.position["readers"])
    saved = {**loader.position, "readers": states}
    resumed = image_loader(images, num_workers=0, batch_size=2, sampler_start_idx=saved)
    rest = [i for batch in take(resumed, (48 - len(consumed)) // 2) for i in ids_of(batch)]
    assert len(consumed) == 24 and sorted(consumed + rest) == all_ids(8, 6)


def test_resume_when_readers_are_in_different_epochs(tmp_path):
    """3 ranks over shards of 2, 6 and 6 samples: after 3 batches the small shard's reader is in epoch 1, the others
    in epoch 0. One reader resuming from that state delivers the rest of epochs 0 and 1: with what was read before,
    every sample exactly twice."""
    import collections

    for s, size in enumerate((2, 6, 6)):
        write_shard(str(tmp_path / f"shard-{s:04d}.tar"),
                    [{"__key__": f"{s}{i:03d}", "real.pth": tensor_bytes(torch.zeros(1))} for i in range(size)])

    def loader(rank, world, **kw):
        return WDSLoader([f"WDS:{tmp_path}"], batch_size=1, key_map={"real": "real.pth"}, num_workers=0,
                         shuffle_size=3, rank=rank, world_size=world, credential_file=None, **kw)

    before, readers = [], {}
    for rank in range(3):
        ld = loader(rank, 3)
        before += [n for batch in take(ld, 3) for n in batch["fname"]]
        readers.update(ld.position["readers"])
    assert sorted(state["epoch"] for state in readers.values()) == [0, 0, 1]
    resumed = loader(0, 1, sampler_start_idx={**ld.position, "readers": readers})
    after = [n for batch in take(resumed, 28 - len(before)) for n in batch["fname"]]
    assert set(collections.Counter(before + after).values()) == {2} and len(set(before + after)) == 14


def test_bad_input(images, tmp_path):
    with pytest.raises(ValueError, match='must look like "WDS:'):
        image_loader(images, num_workers=0).__class__(images, batch_size=1, **COMMON)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no .tar shards"):
        image_loader(str(empty))
    with pytest.raises(ValueError, match="cannot feed"):
        image_loader(images, num_workers=8, world_size=2)
    root = tmp_path / "bad"
    image_shards(str(root), num_shards=2, per_shard=4)
    good = (root / "shard-0001.tar").read_bytes()
    (root / "shard-0001.tar").write_bytes(good[: len(good) // 2 + 100])  # truncated mid-shard
    (root / "shard-0002.tar").write_bytes(b"this is not a tar file" * 50)
    write_shard(str(root / "shard-0003.tar"), [
        {"__key__": "003000", "png": png_bytes(np.zeros((8, 8, 3), np.uint8))},  # no caption: missing, counted
        {"__key__": "003001", "png": b"not an image", "txt": b"broken"},  # does not decode: failed, counted
    ])
    loader = image_loader(str(root), batch_size=1, max_fail_fraction=1.0)
    ids = [i for batch in take(loader, 6) for i in ids_of(batch)]
    assert sorted(ids) == [0, 1, 2, 3, 1000, 1001]  # the truncated shard's first half survives
    take(loader, 1)  # a batch of epoch 1: epoch 0 has been read to its end
    counts = loader.counts()  # epoch 0 exactly, plus what epoch 1 read before its first good sample
    assert counts["ok"] == 7 and counts["failed"] in (1, 2) and counts["bad_shards"] in (2, 3, 4)
    assert counts["missing"] in (2, 3, 4)  # 003000 without caption, 001002 cut after its image
    strict = image_loader(str(root), batch_size=1, max_fail_fraction=0.0)
    with pytest.raises(RuntimeError, match="max_fail_fraction"):
        take(strict, 40)


def test_smoke_batch_matches_real_batch(images):
    kwargs = dict(data_configs.ImageLoaderConfig)
    smoke = ImageWDSLoader.smoke_batch(kwargs, 3)
    real = take(image_loader(images, batch_size=3), 1)[0]
    assert set(smoke) == set(real)
    assert smoke["real"].dtype == real["real"].dtype and smoke["real"].min() >= -1 and smoke["real"].max() <= 1
    assert smoke["neg_condition"] == [""] * 3 and isinstance(smoke["condition"], list)
    with pytest.raises(ValueError, match="sample_shapes"):
        WDSLoader.smoke_batch(dict(data_configs.PairLoaderConfig), 2)
    pair = WDSLoader.smoke_batch({**data_configs.PairLoaderConfig, "sample_shapes": {
        "real": [4, 2, 2], "noise": [4, 2, 2], "condition": {"prompt_embeds": [3, 5], "pooled": [5]}}}, 2)
    assert pair["noise"].shape == (2, 4, 2, 2) and pair["condition"]["pooled"].shape == (2, 5)
    video = VideoWDSLoader.smoke_batch(dict(data_configs.VideoLoaderConfig), 2)
    assert video["real"].shape == (2, 3, 5, 16, 16)


def test_trainer_resume_with_wds_loader_is_bit_identical(tmp_path):
    """A toy KD run reading (noise, real) pairs from tar shards: stopped at iteration 3 and resumed to 6 it ends with
    the weights of the run that never stopped (the loader's reader states travel in the checkpoint)."""
    from test_ddp import toy_kd_config, train

    from fastgen.utils import LazyCall

    root = tmp_path / "pairs"
    for s in range(4):
        gen = torch.Generator().manual_seed(s)
        write_shard(str(root / f"shard-{s:04d}.tar"), [
            {"__key__": f"{s}{i:03d}", "real.pth": tensor_bytes(torch.randn(2, generator=gen)),
             "noise.pth": tensor_bytes(torch.randn(2, generator=gen))} for i in range(8)])

    def config(name, max_iter):
        cfg = toy_kd_config(str(tmp_path / "out"), pairs="unused", batch_size=4, max_iter=max_iter, save_ckpt_iter=3,
                            name=name)
        cfg.dataloader_train = LazyCall(WDSLoader)(
            datatags=[f"WDS:{root}"], batch_size=4, key_map={"real": "real.pth", "noise": "noise.pth"},
            shuffle_size=5, num_workers=0, credential_file=None)
        return cfg

    straight = train(config("straight", 6))
    train(config("resumed", 3))
    resumed = train(config("resumed", 6))
    for a, b in zip(straight.net.state_dict().values(), resumed.net.state_dict().values()):
        assert torch.equal(a, b)
    saved = torch.load(tmp_path / "out" / "resumed" / "checkpoints" / "0000003.pth", weights_only=True)
    assert saved["data"]["train"]["kind"] == "wds" and saved["data"]["train"]["steps"] == 3


def test_relayout_pure_functions():
    """Re-dealing is exact on hand-made states: buffered refs, cursor, untouched shards, and an empty remainder."""
    from fastgen.datasets.wds.order import ReaderState, pack_ref, relayout, remaining_work

    mid = ReaderState(epoch=0, items=[[3, 0, []]], current=[1, 0, [], 4], buffer=[pack_ref(1, 2), pack_ref(0, 7)])
    done = ReaderState(epoch=0, items=[])
    work = remaining_work(seed=0, num_shards=4, states={0: mid, 1: done}, num_readers=2)
    assert work == {0: [[0, 1 << 62, [7]], [1, 4, [2]], [3, 0, []]]}
    new = relayout(0, 4, {0: done, 1: ReaderState(epoch=0, items=[])}, 2, 3)  # nothing left: fresh next epoch
    assert [(s.epoch, s.items, s.carry) for s in new.values()] == [(0, [], {})] * 3


def _two_rank_epoch(rank: int, root: str, out: str) -> None:
    """Spawned: rank `rank` of 2 (gloo) reads 3 batches in-process; `position` gathers both ranks' readers."""
    loader = image_loader(root, num_workers=0, rank=None, world_size=None)
    seen = [i for batch in take(loader, 3) for i in ids_of(batch)]
    state = loader.position  # collective: every rank takes part
    torch.save({"seen": seen, "state": state}, os.path.join(out, f"rank{rank}.pt"))


def test_position_gathers_all_ranks_under_torch_distributed(images, tmp_path):
    from fastgen.utils.distributed.launch import spawn_local

    spawn_local(_two_rank_epoch, 2, args=(images, str(tmp_path)))
    parts = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert parts[0]["state"] == parts[1]["state"] and sorted(parts[0]["state"]["readers"]) == [0, 1]
    seen = parts[0]["seen"] + parts[1]["seen"]
    resumed = image_loader(images, num_workers=0, batch_size=4, sampler_start_idx=parts[0]["state"])
    rest = [i for batch in take(resumed, (48 - len(seen)) // 4) for i in ids_of(batch)]
    assert len(seen) == 24 and sorted(seen + rest) == all_ids(8, 6)  # re-dealt from 2 readers to 1
