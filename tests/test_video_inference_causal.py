"""`video_model_inference.py --causal` on tiny random causal Wan nets: streaming generation writes every asked frame
(past the training length, through the rolling cache window), T2V's first chunks equal a non-streaming generation,
I2V (Wan 2.1, Wan 2.2) and V2V (VACE) stream each chunk with its part of the condition and equal causal_generate on
the whole video decoded at once, the chunk-by-chunk VAE decode equals the whole-video decode, and bad input is one
line with exit 2."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from fastgen.cli import run_cli
from fastgen.utils.video import read_video, video_to_uint8, write_video


def causal_config(method: str, net: str, family: str, chunk: int, frames: int, size: int) -> str:
    """A tiny causal experiment file (tests/_tiny_sd15.py's template): chunking, a 2-step student grid and CFG 3
    (SFT: sampling's CFG; CausVid: the teacher's, unused here)."""
    from _tiny_sd15 import config_text

    return config_text(method, family, net=net, input_shape=[4, frames, size, size], extra=[
        f"config.model.net.chunk_size, config.model.net.total_num_frames = {chunk}, {frames}",
        "config.model.sample_t_cfg.t_list = [0.999, 0.5, 0.0]",
        "config.model.student_sample_steps = 2",
        "config.model.guidance_scale = 3.0"])


# T2V: chunks of 2 of 4 latent frames = 7 pixel frames (tiny VAE: 2x in time)
CONFIG = causal_config("causvid", "CausalWan_1_3B_Config", "wan", chunk=2, frames=4, size=8)
# I2V / V2V: the tiny VAE (2x in time) encodes 1 + 4k pixel frames to 1 + 2k latent frames (Wan's encoder reads 4
# frames at a time), so the image / control latents have an odd frame count: chunks of 1 of 3 latent frames
CONDITIONED = {  # family: (net config, latent size (Wan 2.2's VAE is 4x in space), conditioning flag, method)
    "wan": ("CausalWan_1_3B_Config", 8, None, "causvid"),
    "wan_i2v": ("CausalWan21_I2V_14B_480P_Config", 8, "--image", "sft_causal"),  # CFG 3 from the config
    "wan22_i2v": ("CausalWan22_I2V_5B_Config", 4, "--image", "causvid"),  # no CFG
    "vace_wan": ("CausalVACE_Wan_1_3B_Config", 8, "--control_video", "causvid"),  # --guidance_scale=3
}


@pytest.fixture(scope="module")
def script(video_inference_script):
    return video_inference_script


def write_student(tmp_path, text: str, name: str = "causal"):
    """A config file of `text` and a checkpoint of its (seeded random) network."""
    from fastgen.configs.config_utils import import_config_from_python_file
    from fastgen.utils import instantiate

    path = tmp_path / f"config_tiny_{name}.py"
    path.write_text(text)
    config = import_config_from_python_file(str(path))
    torch.manual_seed(1)
    ckpt = tmp_path / f"{name}.pth"
    torch.save({"model": {"net": instantiate(config.model.net).state_dict()}, "iteration": 1}, ckpt)
    return str(path), str(ckpt), config


@pytest.fixture()
def student(tmp_path):
    return write_student(tmp_path, CONFIG)


def conditioned_student(tmp_path, family: str):
    net, size, _, method = CONDITIONED[family]
    return write_student(tmp_path, causal_config(method, net, family, chunk=1, frames=3, size=size), family)


def condition_files(tmp_path, control_frames: int = 9) -> dict:
    """A random 16x16 image and a random control clip of `control_frames` frames (lossless) for the flags."""
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "first.png")
    clip = torch.from_numpy(rng.uniform(-1, 1, (3, control_frames, 16, 16)).astype(np.float32))
    write_video(tmp_path / "clip.mp4", clip, fps=8, layout="CTHW", lossless=True)
    return {"--image": str(tmp_path / "first.png"), "--control_video": str(tmp_path / "clip.mp4")}


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


def script_condition(script, net, flag: str, path: str, frames: int = 9, size: int = 16) -> dict:
    """The condition the script builds for one prompt "a cat": text, then the image / control video read and encoded
    by the network for the whole video."""
    cond = net.encode_text(["a cat"])
    if flag == "--image":
        cond.update(net.encode_image_condition(script.read_image(path, size, size), frames))
    else:
        cond["control_hidden_states"] = net.encode_control(script.read_control_video(path, frames, size, size))
    return cond


@pytest.mark.parametrize("family", ["wan_i2v", "wan22_i2v", "vace_wan"])
def test_causal_i2v_v2v_stream_each_chunk_with_its_condition_and_equal_whole_generation(script, tmp_path, capsys,
                                                                                       family):
    """9 pixel frames = 5 latent frames, 5 chunks past the 3 trained (rolling window of 2); with CFG (its negative
    keeps the image / control, swapping only the prompt) from --guidance_scale (VACE) or, for a CausalSFT config,
    from model.guidance_scale (Wan 2.1 I2V)."""
    from fastgen.export.student import build_student, checkpoint_network_state
    from fastgen.inference_causal import setup_causal, stream_videos
    from fastgen.networks.causal_sampling import causal_generate

    cfg, ckpt, config = conditioned_student(tmp_path, family)
    _, size, flag, _ = CONDITIONED[family]
    path = condition_files(tmp_path)[flag]
    guidance = None if family == "wan22_i2v" else 3.0
    out = tmp_path / "out"
    torch.manual_seed(0)
    code = run_cli(script.main, [f"--config={cfg}", f"--ckpt_path={ckpt}", "--prompt=a cat", "--seeds=3", "--causal",
                                 "--num_frames=9", "--lossless", f"--out_dir={out}", f"{flag}={path}",
                                 *(["--guidance_scale=3"] if family == "vace_wan" else [])])
    err = capsys.readouterr().err
    assert code == 0 and "streaming 5 chunks of 1 latent frames" in err and "rolling cache window of 2" in err, err
    assert ("CFG 3.0" in err) == (guidance is not None)
    frames = read_video(out / "videos" / "000_a-cat_s3.mp4").frames
    assert frames.shape == (9, 16, 16, 3)

    torch.manual_seed(0)  # the script's encoders: the same global seed before the build
    net = build_student(config, checkpoint_network_state(ckpt)[0], ckpt)
    t_list, scale, _ = setup_causal(config, net, 5, None, guidance_scale=3.0 if family == "vace_wan" else None)
    assert scale == guidance
    assert net.max_cache_frames == 2
    cond = script_condition(script, net, flag, path)
    noise = torch.randn((4, 5, size, size), generator=torch.Generator().manual_seed(3))[None]  # the script's draw
    neg = None if guidance is None else {**cond, **net.encode_text([""])}
    with torch.no_grad():
        streamed = stream_videos(config, net, noise, cond, t_list, [str(tmp_path / "again.mp4")], 16.0, True,
                                 guidance, torch.Generator().manual_seed(0))
        latents = causal_generate(net, noise, cond, t_list=t_list, neg_condition=neg, guidance_scale=guidance,
                                  generator=torch.Generator().manual_seed(0))
        whole = net.decode_latents(latents).clamp(-1, 1)
    assert streamed.shape == whole.shape == (1, 3, 9, 16, 16) and (streamed - whole).abs().max() <= 1e-5
    assert np.array_equal(frames, video_to_uint8(streamed[0], "CTHW"))  # the script streamed the same video

    with torch.no_grad():
        if family == "wan22_i2v":  # the first latent frame is the image latent, its pixels the image's decode
            image = cond["first_frame_cond"]
            assert torch.equal(latents[:, :, :1], image)
            assert (whole[:, :, :1] - net.decode_latents(image).clamp(-1, 1)).abs().max() <= 1e-5
        key = "control_hidden_states" if family == "vace_wan" else "first_frame_cond"
        changed = {**cond, key: cond[key].clone()}
        if family == "vace_wan":  # chunk k takes the control frames of chunk k: later control, later chunks only
            changed[key][:, :, 3:] += 1.0
        else:  # the image counts
            changed[key] = -changed[key]
        other_neg = None if neg is None else {**neg, key: changed[key]}
        other = causal_generate(net, noise, changed, t_list=t_list, neg_condition=other_neg, guidance_scale=guidance,
                                generator=torch.Generator().manual_seed(0))
    if family == "vace_wan":
        assert torch.equal(other[:, :, :3], latents[:, :, :3])
        assert (other[:, :, 3:] - latents[:, :, 3:]).abs().max() > 1e-3
    else:
        assert (other[:, :, :1] - latents[:, :, :1]).abs().max() > 1e-3


@pytest.mark.parametrize("family, flags, message", [
    ("wan_i2v", [], "CausalWanI2V is an image-to-video network: pass --image PATH"),
    ("wan22_i2v", [], "CausalWan22I2V is an image-to-video network: pass --image PATH"),
    ("vace_wan", [], "CausalVACEWan is a video-to-video network: pass --control_video PATH"),
    ("vace_wan", ["--control_video"], "has 5 frames, fewer than the 9 asked: pass a longer video or --num_frames of "
                                      "at most 5"),
    ("wan", ["--image"], "--image needs an image-to-video network (WanI2V); CausalWan is text-to-video"),
    ("wan", ["--control_video"], "--control_video (video-to-video) needs a VACE network (VACEWan); CausalWan takes"),
])
def test_causal_conditioning_bad_input_exits_2_with_one_line(script, tmp_path, capsys, family, flags, message):
    cfg, ckpt, _ = conditioned_student(tmp_path, family)
    paths = condition_files(tmp_path, control_frames=5)
    code = run_cli(script.main, [f"--config={cfg}", f"--ckpt_path={ckpt}", "--prompt=x", "--causal", "--num_frames=9",
                                 f"--out_dir={tmp_path / 'o'}", "--log_level=WARNING",
                                 *(f"{flag}={paths[flag]}" for flag in flags)])
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
