"""WebDataset loaders on shards written here: batch keys/dtypes/values per loader, full coverage without duplicates
over 2 ranks x 2 workers, kill-and-resume (same and other layout), and bad input."""

import io
import os

import numpy as np
import pytest
import torch
from _wds_shards import image_shards, mp4_bytes, png_bytes, sample_id, tensor_shards, write_shard

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


def test_video_loader_segment_and_full(tmp_path):
    root = str(tmp_path / "vid")
    samples = [{"__key__": f"{k:06d}", "mp4": mp4_bytes(6, 16, 24, first_value=10 * k), "txt": f"clip {k}".encode()}
               for k in range(2)]
    write_shard(os.path.join(root, "shard-0000.tar"), samples)
    for decoder_type in ("full", "segment"):
        loader = VideoWDSLoader([f"WDS:{root}"], batch_size=2, sequence_length=4, img_size=(8, 8),
                                decoder_type=decoder_type, num_workers=0, presets={"neg_condition": "neg_prompt_wan"},
                                **COMMON)
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
