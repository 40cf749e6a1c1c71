"""`video_model_inference.py --causal` on a tiny random CausalWan: streaming generation writes every asked frame (past
the training length, through the rolling cache window), its first chunks equal a non-streaming generation, the
chunk-by-chunk VAE decode equals the whole-video decode, and bad input is one line with exit 2."""

from __future__ import annotations

import os
import textwrap

import numpy as np
import pytest
import torch

from fastgen.cli import run_cli
from fastgen.utils.video import read_video, video_to_uint8

CONFIG = textwrap.dedent('''
    from fastgen.configs.methods import config_causvid
    from fastgen.configs.net import CausalWan_1_3B_Config
    from fastgen.networks.hf.tiny import tiny_components


    def create_config():
        config = config_causvid.create_config()
        config.model.net = CausalWan_1_3B_Config
        config.model.net.load_pretrained = False
        config.model.net.component_configs = tiny_components("wan")
        config.model.net.chunk_size, config.model.net.total_num_frames = 2, 4
        config.model.input_shape = [4, 4, 8, 8]  # 4 latent frames = 7 pixel frames (tiny VAE: 2x in time)
        config.model.sample_t_cfg.t_list = [0.999, 0.5, 0.0]
        config.model.student_sample_steps = 2
        config.model.device = "cpu"
        return config
''')


@pytest.fixture(scope="module")
def script(video_inference_script):
    return video_inference_script


@pytest.fixture()
def student(tmp_path):
    from fastgen.configs.config_utils import import_config_from_python_file
    from fastgen.utils import instantiate

    path = tmp_path / "config_tiny_causal_wan.py"
    path.write_text(CONFIG)
    config = import_config_from_python_file(str(path))
    torch.manual_seed(1)
    ckpt = tmp_path / "causal.pth"
    torch.save({"model": {"net": instantiate(config.model.net).state_dict()}, "iteration": 1}, ckpt)
    return str(path), str(ckpt), config


def test_causal_streaming_writes_every_frame_and_its_first_chunk_equals_plain_generation(script, student, tmp_path,
                                                                                         capsys):
    from fastgen.export.student import build_student, checkpoint_network_state
    from fastgen.networks.causal_sampling import causal_generate

    cfg, ckpt, config = student
    out = tmp_path / "out"
    torch.manual_seed(0)
    code = run_cli(script.main, [f"--config={cfg}", f"--ckpt_path={ckpt}", "--prompt=a red cat", "--seeds=3",
                                 "--causal", "--num_frames=11", "--lossless", f"--out_dir={out}"])
    err = capsys.readouterr().err
    assert code == 0 and "streaming 3 chunks of 2 latent frames" in err and "rolling cache window of 2" in err
    frames = read_video(out / "videos" / "000_a-red-cat_s3.mp4").frames
    assert frames.shape == (11, 16, 16, 3)  # 6 latent frames (past the 4 trained) -> 11 pixel frames
    assert not os.path.exists(out / "videos" / "000_a-red-cat_s3.mp4.tmp")

    torch.manual_seed(0)
    net = build_student(config, checkpoint_network_state(ckpt)[0], ckpt)
    noise = torch.randn((4, 6, 8, 8), generator=torch.Generator().manual_seed(3))[None, :, :4]  # the script's draw
    with torch.no_grad():
        latents = causal_generate(net, noise, net.encode_text(["a red cat"]), t_list=[0.999, 0.5, 0.0],
                                  generator=torch.Generator().manual_seed(0))
        whole = video_to_uint8(net.decode_latents(latents).clamp(-1, 1)[0], "CTHW")
    # the 2 chunks of the training length (7 pixel frames; the window of 2 frames is then the whole past) equal the
    # non-streaming generation decoded at once: lossless mp4 of the same pixels, at most a rounding step apart
    diff = np.abs(frames[:7].astype(int) - whole.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99
    assert np.abs(frames[7:].astype(int) - frames[3:7].astype(int)).mean() > 5  # chunk 3 is new content


def test_streaming_decode_equals_whole_video_decode(student):
    from fastgen.export.student import build_student
    from fastgen.networks.hf.stream_decode import WanStreamDecoder

    net = build_student(student[2], None)
    latents = torch.randn(2, 4, 6, 8, 8, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        whole = net.decode_latents(latents).clamp(-1, 1)
    decoder = WanStreamDecoder(net)
    streamed = torch.cat([decoder.decode(latents[:, :, s:s + 2]) for s in (0, 2, 4)], dim=2)
    decoder.close()
    assert streamed.shape == whole.shape == (2, 3, 11, 16, 16) and (streamed - whole).abs().max() <= 1e-5


@pytest.mark.parametrize("causal_net, frames, message", [
    (True, 9, "--num_frames: CausalWan: 5 latent frames is not a multiple of chunk_size=2"),
    (False, 7, "--causal needs a causal video network (e.g. CausalWan); the config's model.net builds Wan"),
])
def test_causal_bad_input_exits_2_with_one_line(script, student, tmp_path, capsys, causal_net, frames, message):
    cfg, ckpt, _ = student
    if not causal_net:  # the bidirectional Wan: the same state-dict keys, so the checkpoint loads
        cfg = tmp_path / "config_tiny_wan.py"
        cfg.write_text(CONFIG.replace("CausalWan_1_3B_Config", "Wan_1_3B_Config").replace(
            "config.model.net.chunk_size, config.model.net.total_num_frames = 2, 4", ""))
    code = run_cli(script.main, [f"--config={cfg}", f"--ckpt_path={ckpt}", "--prompt=x", "--causal",
                                 f"--num_frames={frames}", f"--out_dir={tmp_path / 'o'}", "--log_level=WARNING"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not os.path.exists(tmp_path / "o")


def test_mp4_writer_streams_the_same_file_as_write_video_and_abort_leaves_nothing(tmp_path):
    from fastgen.utils.video import Mp4Writer, VideoError, write_video

    video = torch.rand(3, 7, 16, 16, generator=torch.Generator().manual_seed(5)) * 2 - 1
    with Mp4Writer(tmp_path / "a.mp4", fps=8, lossless=True) as writer:
        writer.write(video[:, :3], layout="CTHW")
        assert not (tmp_path / "a.mp4").exists()  # appears complete, on close
        writer.write(video[:, 3:], layout="CTHW")
    write_video(tmp_path / "b.mp4", video, fps=8, layout="CTHW", lossless=True)
    streamed, whole = read_video(tmp_path / "a.mp4"), read_video(tmp_path / "b.mp4")
    assert np.array_equal(streamed.frames, whole.frames) and streamed.fps == whole.fps == 8
    assert np.array_equal(streamed.frames, video_to_uint8(video, "CTHW"))
    with pytest.raises(RuntimeError), Mp4Writer(tmp_path / "c.mp4") as writer:
        writer.write(video[:, :2], layout="CTHW")
        raise RuntimeError("generation failed")
    assert sorted(os.listdir(tmp_path)) == ["a.mp4", "b.mp4"]
    with pytest.raises(VideoError, match="no frames were written"):
        Mp4Writer(tmp_path / "d.mp4").close()
