"""scripts/inference/video_model_inference.py on a tiny random Wan (T2V and I2V): the mp4s PyAV reads back have the
asked frames, size and fps and equal (lossless) the network's own decode of the student sample; bad input exits 2
with one line and writes nothing."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from fastgen.cli import run_cli
from fastgen.utils.video import read_video, video_to_uint8


@pytest.fixture(scope="module")
def script(video_inference_script):
    return video_inference_script


@pytest.fixture()
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def student(tmp_path, family):
    """A tiny Wan DMD2 config file and a checkpoint of its (seeded random) student."""
    from _tiny_sd15 import tiny_config, write_config

    from fastgen.utils import instantiate

    config = tiny_config("dmd2", tmp_path, family=family)
    torch.manual_seed(1)
    net = instantiate(config.model.net)
    ckpt = tmp_path / f"{family}.pth"
    torch.save({"model": {"net": net.state_dict()}, "iteration": 1}, ckpt)
    return write_config(tmp_path, "dmd2", family), str(ckpt), config


def expected_video(config, ckpt, prompt, seed, image=None, control=None, mask=None, references=None):
    """The 1-step student sample of (prompt, seed) decoded by the network's VAE, as uint8 [T, H, W, 3] (encoders
    built like the script's: the same global seed before the build); I2V's image, V2V's control video, mask and
    reference images (PIL, fitted by the network; R extra leading latent frames, in the noise, dropped before
    decoding)."""
    from fastgen.export.student import build_student, checkpoint_network_state

    torch.manual_seed(0)
    net = build_student(config, checkpoint_network_state(ckpt)[0], ckpt)
    refs = None if references is None else net.fit_reference_images(references, 16, 16)
    extra = 0 if refs is None else refs.shape[1]
    noise = torch.randn((4, 5 + extra, 8, 8), generator=torch.Generator().manual_seed(seed))[None]
    t = torch.as_tensor(list(config.model.sample_t_cfg.t_list or net.noise_scheduler.get_t_list(1)),
                        dtype=torch.float64)[:1]
    x = net.noise_scheduler.latents(noise, t)  # noise * sigma(t) in float64, as the student sampler starts
    with torch.no_grad():
        cond = net.encode_text([prompt])
        if image is not None:
            cond.update(net.encode_image_condition(image, 9))
        if control is not None:
            cond["control_hidden_states"] = net.encode_control(control, mask, refs)
        x0 = net(x, t, condition=cond, fwd_pred_type="x0")[:, :, extra:]
        video = net.decode_latents(x0).clamp(-1, 1)[0]
    return video_to_uint8(video, "CTHW")


def test_t2v_writes_one_mp4_per_prompt_and_seed_equal_to_the_decoded_sample(script, tmp_path, capsys, one_thread):
    cfg, ckpt, config = student(tmp_path, "wan")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red cat\n\ntwo dogs\n")
    out = tmp_path / "out"
    torch.manual_seed(0)
    code = run_cli(script.main, [f"--config={cfg}", f"--ckpt_path={ckpt}", f"--prompts={prompts}", "--seeds=3,5",
                                 "--num_steps=1", "--fps=12", "--lossless", f"--out_dir={out}"])
    assert code == 0 and "wrote 4 videos in" in capsys.readouterr().err
    assert sorted(os.listdir(out / "videos")) == ["000_a-red-cat_s3.mp4", "000_a-red-cat_s5.mp4",
                                                  "001_two-dogs_s3.mp4", "001_two-dogs_s5.mp4"]
    data = read_video(out / "videos" / "001_two-dogs_s5.mp4")
    assert data.frames.shape == (9, 16, 16, 3) and data.fps == 12.0
    expected = expected_video(config, ckpt, "two dogs", 5)
    assert np.array_equal(data.frames, expected)  # lossless: bit-exact
    # contact sheet: a row per video (4), 8 of the 9 frames per row, 16x16 tiles with 2-pixel padding
    assert np.asarray(Image.open(out / "contact_sheet.png")).shape == (4 * 18 + 2, 8 * 18 + 2, 3)


def test_teacher_sampling_with_cfg_equals_the_networks_own_sample(script, tmp_path, one_thread):
    """--sampler_type teacher: the network's sample() (shipped UniPC scheduler, CFG against the empty prompt)."""
    from fastgen.export.student import build_student, checkpoint_network_state

    cfg, ckpt, config = student(tmp_path, "wan")
    out = tmp_path / "teacher"
    torch.manual_seed(0)
    code = run_cli(script.main, [f"--config={cfg}", f"--ckpt_path={ckpt}", "--prompt=a cat", "--seeds=1",
                                 "--sampler_type=teacher", "--num_steps=2", "--guidance_scale=4.0", "--lossless",
                                 f"--out_dir={out}"])
    assert code == 0
    torch.manual_seed(0)
    net = build_student(config, checkpoint_network_state(ckpt)[0], ckpt)
    noise = torch.randn((4, 5, 8, 8), generator=torch.Generator().manual_seed(1))[None]
    latents = net.sample(noise, net.encode_text(["a cat"]), guidance_scale=4.0, num_steps=2)
    expected = video_to_uint8(net.decode_latents(latents).clamp(-1, 1)[0], "CTHW")
    assert np.array_equal(read_video(out / "videos" / "000_a-cat_s1.mp4").frames, expected)


def test_i2v_conditions_on_the_image(script, tmp_path, one_thread):
    cfg, ckpt, config = student(tmp_path, "wan_i2v")
    pixels = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "first.png")
    out = tmp_path / "i2v"
    torch.manual_seed(0)
    code = run_cli(script.main, [f"--config={cfg}", f"--ckpt_path={ckpt}", "--prompt=a cat", "--seeds=2",
                                 f"--image={tmp_path / 'first.png'}", "--num_steps=1", "--lossless", f"--out_dir={out}"])
    assert code == 0
    data = read_video(out / "videos" / "000_a-cat_s2.mp4")
    image = torch.from_numpy(pixels.astype(np.float32)).permute(2, 0, 1)[None] / 127.5 - 1
    assert data.fps == 16.0 and np.array_equal(data.frames, expected_video(config, ckpt, "a cat", 2, image))
    assert not np.array_equal(data.frames, expected_video(config, ckpt, "a cat", 2, -image))  # the image counts


@pytest.mark.parametrize("family, extra, message", [
    ("wan", ["--num_frames=8"], "num_frames=8 is not of the form (T-1)*2+1 that the video VAE needs; use 7 or 9"),
    ("wan", ["--height=18"], "resolution 18x16 (HxW) is not divisible by 4"),
    ("wan", ["--control_video=clip.mp4"], "--control_video (video-to-video) needs a VACE network"),
    ("wan", ["--prompts=missing.txt"], "--prompts missing.txt does not exist"),
    ("wan", ["--prompts=empty.txt"], "--prompts empty.txt holds no prompt"),
    ("wan", ["--image=first.png"], "--image needs an image-to-video network (WanI2V)"),
    ("wan", ["--control_mask=first.png"], "--control_mask needs a VACE network (VACEWan); Wan takes no control"),
    ("wan", ["--reference_image=first.png"], "--reference_image needs a VACE network (VACEWan)"),
    ("wan_i2v", [], "WanI2V is an image-to-video network: pass --image PATH"),
    ("wan_i2v", ["--image=broken.png"], "--image broken.png is not a readable image"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(script, tmp_path, capsys, monkeypatch, family, extra,
                                                            message):
    cfg, ckpt, _ = student(tmp_path, family)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.txt").write_text("\n  \n")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "first.png")
    args = [f"--config={cfg}", f"--ckpt_path={ckpt}", f"--out_dir={tmp_path / 'out'}", "--num_steps=1"]
    if not any(e.startswith("--prompts") for e in extra):
        args.append("--prompt=a cat")
    assert run_cli(script.main, args + extra) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]  # beside INFO log lines
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()
