"""scripts/precompute_latents.py on a tiny SD15 (random VAE + CLIP text encoder) and a tiny Wan (video VAE + UMT5):
latent/embedding shards equal the network's own encodings, ranks split the shards, finished shards are skipped, and
the latent loaders read them."""

import importlib.util
import os

import numpy as np
import torch
from _hf_models import tiny_net
from _wds_shards import mp4_bytes, png_bytes, write_shard

from fastgen.datasets.wds.decode import decode_image
from fastgen.datasets.wds.loaders import WDSLoader
from fastgen.datasets.wds.precompute import precompute
from fastgen.datasets.wds.shards import list_shards

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = '''
from fastgen.configs.experiments.Toy import config_sft
from fastgen.configs.net import SD15Config


def create_config():
    config = config_sft.create_config()
    config.model.net = SD15Config
    return config
'''


def image_caption_shards(root):
    rng = np.random.default_rng(0)
    pixels = {}
    for s in range(2):
        samples = []
        for i in range(3):
            key = f"{s}{i:03d}"
            pixels[key] = png_bytes(rng.integers(0, 255, (20, 18, 3), dtype=np.uint8))
            samples.append({"__key__": key, "png": pixels[key], "txt": f"a photo number {s} {i}".encode()})
        samples.append({"__key__": f"{s}999", "png": pixels[key]})  # no caption: skipped, counted
        write_shard(os.path.join(root, f"shard-{s:04d}.tar"), samples)
    return pixels


def test_precompute_values_ranks_and_loader(tmp_path):
    pixels = image_caption_shards(str(tmp_path / "in"))
    net = tiny_net("sd15")
    shards = list_shards([f"WDS:{tmp_path / 'in'}"])
    out = str(tmp_path / "out")
    for rank in range(2):  # two ranks, one shard each
        totals = precompute(net, shards, out, rank=rank, world_size=2, img_size=16, media_key="png", batch_size=2,
                            show_progress=False)
        assert totals == {"shards_done": 1, "shards_skipped": 0, "written": 3, "skipped": 1}
    again = precompute(net, shards, out, rank=0, world_size=1, img_size=16, media_key="png", show_progress=False)
    assert again["shards_done"] == 0 and again["shards_skipped"] == 2  # resumable: finished shards skipped

    loader = WDSLoader([f"WDS:{out}"], batch_size=6, key_map={"real": "latent.pth", "condition": "txt_emb.pth",
                                                               "caption": "txt"},
                       num_workers=0, rank=0, world_size=1, credential_file=None)
    batch = next(iter(loader))
    assert sorted(batch["fname"]) == sorted(pixels)
    images = torch.stack([decode_image(pixels[k], 16) for k in batch["fname"]])
    torch.testing.assert_close(batch["real"], net.encode_images(images, sample=False), atol=1e-5, rtol=1e-5)
    expected = net.encode_text(batch["caption"])
    assert set(batch["condition"]) == set(expected)
    for name, value in expected.items():
        torch.testing.assert_close(batch["condition"][name], value, atol=1e-5, rtol=1e-5)


def load_script():
    spec = importlib.util.spec_from_file_location("precompute_latents", os.path.join(REPO, "scripts",
                                                                                     "precompute_latents.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_precompute_script_smoke_and_bad_input(tmp_path, monkeypatch, capsys):
    image_caption_shards(str(tmp_path / "in"))
    config = tmp_path / "config_sd15_tiny.py"
    config.write_text(CONFIG)
    script = load_script()
    monkeypatch.chdir(REPO)
    args = [f"--config={config}", "--input", f"WDS:{tmp_path / 'in'}", "--output", str(tmp_path / "out"),
            "--img_size", "16", "--image_key", "png", "--smoke", "--device", "cpu"]
    assert script.main(args) == 0
    assert sorted(os.listdir(tmp_path / "out")) == ["shard-0000.tar", "shard-0001.tar"]
    assert script.main(args) == 0 and "2 already done" in capsys.readouterr().out
    assert script.main([args[0], "--input", str(tmp_path / "in"), *args[3:]]) == 2
    assert 'must look like "WDS:' in capsys.readouterr().err


def test_dmd2_trains_from_precomputed_shards(tmp_path):
    """The latent loader's batches (latents, embedding dicts, a files_map negative embedding) feed a DMD2 step of a
    tiny SD15 student directly: the precomputed shards are training data as they stand."""
    from test_hf_training import dmd2_sd15_config

    from fastgen.methods import DMD2Model

    image_caption_shards(str(tmp_path / "in"))
    torch.manual_seed(0)
    model = DMD2Model(dmd2_sd15_config().model)
    precompute(model.net, list_shards([f"WDS:{tmp_path / 'in'}"]), str(tmp_path / "out"), img_size=16,
               media_key="png", show_progress=False)
    torch.save({k: v[0] for k, v in model.net.encode_text([""]).items()}, tmp_path / "neg.pth")
    loader = WDSLoader([f"WDS:{tmp_path / 'out'}"], batch_size=2, key_map={"real": "latent.pth",
                                                                            "condition": "txt_emb.pth"},
                       files_map={"neg_condition": str(tmp_path / "neg.pth")}, num_workers=0, rank=0, world_size=1,
                       credential_file=None)
    data = model.encode_batch(next(iter(loader)))
    assert data["real"].shape == (2, 4, 8, 8) and set(data["neg_condition"]) == set(data["condition"])
    for iteration in (1, 5):  # critic step, then generator step
        loss_map, _ = model.single_train_step(data, iteration)
        assert torch.isfinite(loss_map["total_loss"])
        loss_map["total_loss"].backward()


WAN_CONFIG = '''
from fastgen.configs.experiments.Toy import config_sft
from fastgen.configs.net import Wan_1_3B_Config


def create_config():
    config = config_sft.create_config()
    config.model.net = Wan_1_3B_Config
    return config
'''


def video_caption_shards(root):
    """2 shards x 2 clips of 7 frames at 16x16 (frame t of clip n: grey 10 n + 20 t) + one clip without caption."""
    clips, captions = {}, {}
    for s in range(2):
        samples = []
        for i in range(2):
            key = f"{s}{i:03d}"
            clips[key], captions[key] = mp4_bytes(7, 16, 16, first_value=10 * (2 * s + i)), f"a clip number {s} {i}"
            samples.append({"__key__": key, "mp4": clips[key], "txt": captions[key].encode()})
        samples.append({"__key__": f"{s}999", "mp4": clips[key]})  # no caption: skipped, counted
        write_shard(os.path.join(root, f"shard-{s:04d}.tar"), samples)
    return clips, captions


def test_precompute_video_values_rerun_and_latent_loader(tmp_path):
    """Wan (tiny VAE: 2x in time and space, patch 2): latents == encode_images of the same decoded window, embeddings
    == encode_text of the captions, read back by VideoLatentLoaderConfig; reruns skip, and re-encoding is identical."""
    from fastgen.configs.data import VideoLatentLoaderConfig
    from fastgen.datasets.wds.precompute import decode_media
    from fastgen.utils import instantiate

    clips, captions = video_caption_shards(str(tmp_path / "in"))
    net = tiny_net("wan")
    shards = list_shards([f"WDS:{tmp_path / 'in'}"])
    out = tmp_path / "out"
    options = dict(img_size=16, media_key="mp4", sequence_length=5, decoder_type="segment", seed=3, batch_size=2,
                   show_progress=False)
    totals = precompute(net, shards, str(out), **options)
    assert totals == {"shards_done": 2, "shards_skipped": 0, "written": 4, "skipped": 2}
    assert precompute(net, shards, str(out), **options)["shards_skipped"] == 2  # resumable
    first = (out / "shard-0000.tar").read_bytes()
    (out / "shard-0000.tar").unlink()
    assert precompute(net, shards, str(out), **options)["shards_done"] == 1
    assert (out / "shard-0000.tar").read_bytes() == first  # deterministic: VAE mean, window seeded by (seed, key)

    loader = instantiate(VideoLatentLoaderConfig, datatags=[f"WDS:{out}"], batch_size=4, files_map=None,
                         num_workers=0, rank=0, world_size=1, credential_file=None)
    batch = next(iter(loader))
    assert sorted(batch["fname"]) == sorted(clips)
    videos = torch.stack([decode_media(clips[k], k, 16, 5, "segment", seed=3) for k in batch["fname"]])
    assert videos.shape == (4, 3, 5, 16, 16) and batch["real"].shape == (4, 4, 3, 8, 8)
    torch.testing.assert_close(batch["real"], net.encode_images(videos, sample=False), atol=1e-5, rtol=1e-5)
    expected = net.encode_text([captions[k] for k in batch["fname"]])
    assert set(batch["condition"]) == set(expected) == {"prompt_embeds"}
    torch.testing.assert_close(batch["condition"]["prompt_embeds"], expected["prompt_embeds"], atol=1e-5, rtol=1e-5)


def test_precompute_script_video_and_bad_shapes(tmp_path, monkeypatch, capsys):
    video_caption_shards(str(tmp_path / "in"))
    config = tmp_path / "config_wan_tiny.py"
    config.write_text(WAN_CONFIG)
    script = load_script()
    monkeypatch.chdir(REPO)
    args = [f"--config={config}", "--input", f"WDS:{tmp_path / 'in'}", "--output", str(tmp_path / "out"), "--smoke",
            "--device", "cpu", "--img_size", "16"]
    assert script.main([*args, "--sequence_length", "5", "--decoder_type", "full"]) == 0
    assert "4 samples, 2 skipped" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path / "out")) == ["shard-0000.tar", "shard-0001.tar"]
    assert script.main([*args, "--sequence_length", "4"]) == 2  # the tiny VAE's temporal factor is 2
    assert "num_frames=4 is not of the form (T-1)*2+1" in capsys.readouterr().err
    assert script.main([*args[:-1], "18", "--sequence_length", "5"]) == 2  # VAE 2 x patch 2
    assert "resolution 18x18 (HxW) is not divisible by 4" in capsys.readouterr().err
