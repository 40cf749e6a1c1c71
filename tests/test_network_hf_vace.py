"""Wan 2.1 VACE through VACEWan: forward == the bare WanVACETransformer3DModel with the same control inputs, teacher
sampling == WanVACEPipeline (control video + mask, CFG keeping the control), depth control == the Depth-Anything
model + per-frame normalisation by hand, the training batch's control latents, loading the depth model from a local
folder, and V2V inference (`--control_video`, `--control_mask`, `--reference_image`) to mp4."""

import numpy as np
import pytest
import torch
from _hf_models import tiny_net
from PIL import Image

from fastgen.cli import run_cli
from fastgen.networks.hf import VACEWan
from fastgen.networks.hf.tiny import tiny_components

PROMPTS = ["a red cat", "two dogs"]


@pytest.fixture(scope="module")
def vace():
    return tiny_net("vace_wan", seed=0)


@pytest.fixture(scope="module")
def vace_depth():
    return tiny_net("vace_wan", seed=1, control_type="depth")


def _video(seed, frames=9, size=16):
    return torch.rand(1, 3, frames, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_vace_forward_equals_transformer_with_control_and_context_scale(vace):
    video, mask = _video(1).expand(2, -1, -1, -1, -1), torch.zeros(2, 1, 9, 16, 16)
    mask[:, :, 2:, 4:12] = 1  # generate a band, keep the rest
    control = vace.encode_control(video, mask)
    assert control.shape == (2, 4 + 4 + 4, 5, 8, 8)  # inactive + reactive latents, 2x2 mask folded to 4 channels
    cond = {**vace.encode_text(PROMPTS), "control_hidden_states": control}
    torch.manual_seed(2)
    x, t = torch.randn(2, 4, 5, 8, 8), torch.tensor([0.3, 0.8], dtype=torch.float64)

    def bare(scale):
        return vace.denoiser(hidden_states=x, timestep=(t * 1000).float(), encoder_hidden_states=cond["prompt_embeds"],
                            control_hidden_states=control, control_hidden_states_scale=torch.full((2,), scale),
                            return_dict=False)[0]

    with torch.no_grad():
        assert torch.equal(vace(x, t, cond), bare(1.0))
        vace.options["context_scale"] = 0.5
        try:
            half = vace(x, t, cond)
        finally:
            vace.options["context_scale"] = 1.0
        assert torch.equal(half, bare(0.5)) and not torch.equal(half, bare(1.0))
    with pytest.raises(ValueError, match=r"control_hidden_states \[B, 12, T, H, W\] on the latent grid"):
        vace(x[:, :, :3], t, cond)
    with pytest.raises(ValueError, match="condition mapping with keys"):
        vace(x, t, vace.encode_text(PROMPTS))


def test_vace_sampling_equals_pipeline_with_mask_and_cfg(vace):
    import diffusers

    pixels = torch.randint(0, 256, (9, 16, 16, 3), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)
    mask_pixels = np.zeros((9, 16, 16), np.uint8)
    mask_pixels[1:, 4:12, 2:14] = 255  # white = generate
    enc = vace.encoders
    pipe = diffusers.WanVACEPipeline(
        transformer=vace.denoiser, vae=enc["vae"], text_encoder=enc["text_encoder"], tokenizer=enc["tokenizer"],
        scheduler=diffusers.UniPCMultistepScheduler.from_config(vace.scheduler_config))
    pipe.set_progress_bar_config(disable=True)
    noise = torch.randn(1, 4, 5, 8, 8, generator=torch.Generator().manual_seed(4))
    prompt, negative = vace.encode_text(PROMPTS[:1]), vace.encode_text([""])
    # prompt embeddings passed in: diffusers 0.42's VACE prompt cleaning needs the optional ftfy package
    ref = pipe(video=[Image.fromarray(f.numpy()) for f in pixels],
               mask=[Image.fromarray(m, mode="L") for m in mask_pixels], prompt_embeds=prompt["prompt_embeds"],
               negative_prompt_embeds=negative["prompt_embeds"], num_inference_steps=3, guidance_scale=5.0,
               latents=noise, height=16, width=16, num_frames=9, output_type="latent").frames
    video = pixels.permute(3, 0, 1, 2)[None].float() / 255 * 2 - 1
    mask = torch.from_numpy(mask_pixels).float()[None, None] / 255
    cond = {**prompt, "control_hidden_states": vace.encode_control(video, mask)}
    ours = vace.sample(noise, cond, neg_condition=[""], guidance_scale=5.0, num_steps=3)
    assert (ours - ref).abs().max() <= 1e-4 and (ours - noise).abs().max() > 0.1
    other = {**prompt, "control_hidden_states": vace.encode_control(-video, mask)}
    assert (vace.sample(noise, other, neg_condition=[""], guidance_scale=5.0, num_steps=3) - ours).abs().max() > 1e-3
    # explicit t_list (first-order) sampling: CFG's negative also keeps the control, swapping only the prompt
    t = torch.full((1,), 0.999, dtype=torch.float64)
    one_step = vace.sample(noise, cond, neg_condition=[""], guidance_scale=5.0, t_list=[0.999, 0.0])
    with torch.no_grad():
        pos = vace(noise, t, cond, fwd_pred_type="x0")
        neg = vace(noise, t, {**negative, "control_hidden_states": cond["control_hidden_states"]}, fwd_pred_type="x0")
    torch.testing.assert_close(one_step, neg + 5.0 * (pos - neg), atol=1e-5, rtol=1e-5)


def test_vace_reference_images_lead_the_control_as_in_the_pipeline(vace):
    import diffusers

    pixels = torch.randint(0, 256, (10, 16, 16, 3), generator=torch.Generator().manual_seed(12), dtype=torch.uint8)
    enc = vace.encoders
    pipe = diffusers.WanVACEPipeline(
        transformer=vace.denoiser, vae=enc["vae"], text_encoder=enc["text_encoder"], tokenizer=enc["tokenizer"],
        scheduler=diffusers.UniPCMultistepScheduler.from_config(vace.scheduler_config))
    pipe.set_progress_bar_config(disable=True)
    noise = torch.randn(1, 4, 6, 8, 8, generator=torch.Generator().manual_seed(13))  # 1 reference + 5 video frames
    prompt = vace.encode_text(PROMPTS[:1])
    ref = pipe(video=[Image.fromarray(f.numpy()) for f in pixels[:9]], reference_images=Image.fromarray(
        pixels[9].numpy()), prompt_embeds=prompt["prompt_embeds"], num_inference_steps=2, guidance_scale=1.0,
        latents=noise, height=16, width=16, num_frames=9, output_type="latent").frames
    video = pixels.permute(3, 0, 1, 2)[None].float() / 255 * 2 - 1
    control = vace.encode_control(video[:, :, :9], reference_images=video[:, :, 9:].transpose(1, 2))
    assert control.shape == (1, 12, 6, 8, 8) and not control[:, 4:, 0].any()  # reference: latent, no reactive/mask
    ours = vace.sample(noise, {**prompt, "control_hidden_states": control}, num_steps=2)
    assert (ours - ref).abs().max() <= 1e-4 and (ours - noise).abs().max() > 0.1


def _depth_by_hand(net, video):
    """Depth-Anything on the 8-bit frames, resized back (bicubic), min-max per frame to [-1, 1], 3 channels."""
    processor, model = net.encoders["depth_processor"], net.encoders["depth_model"]
    frames = [np.floor(f.permute(1, 2, 0).numpy().astype(np.float64) * 127.5 + 128).clip(0, 255).astype(np.uint8)
              for f in video[0].unbind(1)]
    with torch.no_grad():
        depth = model(pixel_values=processor(images=frames, return_tensors="pt").pixel_values).predicted_depth
    depth = torch.nn.functional.interpolate(depth[:, None], size=(16, 16), mode="bicubic", align_corners=False)[:, 0]
    low = depth.amin(dim=(1, 2), keepdim=True)
    unit = (depth - low) / (depth.amax(dim=(1, 2), keepdim=True) - low)
    return (unit * 2 - 1)[None, None].expand(1, 3, -1, -1, -1)


def test_depth_control_is_the_depth_model_normalised_per_frame(vace_depth, vace):
    assert "depth_model" in vace_depth.encoders and "depth_model" not in vace.encoders
    assert not any("depth" in k for k in vace_depth.state_dict())  # frozen encoder, never checkpointed
    video = _video(5)
    control_video = vace_depth.control_video(video)
    torch.testing.assert_close(control_video, _depth_by_hand(vace_depth, video), atol=1e-5, rtol=1e-5)
    assert control_video.amin(dim=(1, 3, 4)).eq(-1).all() and control_video.amax(dim=(1, 3, 4)).eq(1).all()
    direct = vace_depth.adapter.encode_control(vace_depth, control_video)
    assert torch.equal(vace_depth.encode_control(video), direct)
    # training batches: the control latents of real's depth, in condition and neg_condition alike
    batch = vace_depth.preprocess_batch({"real": video.expand(2, -1, -1, -1, -1).clone(), "condition": PROMPTS})
    for key in ("condition", "neg_condition"):
        torch.testing.assert_close(batch[key]["control_hidden_states"], direct.expand(2, -1, -1, -1, -1))
    assert batch["real"].shape == (2, 4, 5, 8, 8)
    # control_type="video" takes the batch's control_video as is, and needs one
    given = vace.preprocess_batch({"real": video, "control_video": -video, "condition": PROMPTS[:1]})
    assert torch.equal(given["condition"]["control_hidden_states"], vace.encode_control(-video))
    with pytest.raises(ValueError, match="control_type='video'.* needs a `control_video`"):
        vace.preprocess_batch({"real": video, "condition": PROMPTS[:1]})


def test_depth_model_loads_from_a_local_folder(vace_depth, tmp_path):
    vace_depth.encoders["depth_model"].save_pretrained(tmp_path / "depth")
    vace_depth.encoders["depth_processor"].save_pretrained(tmp_path / "depth")
    comps = {k: v for k, v in tiny_components("vace_wan").items() if not k.startswith("depth")}
    torch.manual_seed(1)
    net = VACEWan("tiny/vace", load_pretrained=False, component_configs=comps, enable_preprocessors=True,
                  control_type="depth", depth_model_path=str(tmp_path / "depth"))
    video = _video(6)
    assert torch.equal(net.control_video(video), vace_depth.control_video(video))
    with pytest.raises(ValueError, match="depth_model_path=.* is set but control_type='video'"):
        VACEWan("tiny/vace", component_configs=comps, depth_model_path=str(tmp_path / "depth"))
    with pytest.raises(ValueError, match="control_type must be one of"):
        VACEWan("tiny/vace", component_configs=comps, control_type="canny")
    with pytest.raises(ValueError, match="expand_timesteps must stay False"):
        VACEWan("tiny/vace", component_configs=comps, expand_timesteps=True)


# -- video-to-video inference (scripts/inference/video_model_inference.py --control_video) --
@pytest.fixture(scope="module")
def script(video_inference_script):
    return video_inference_script


@pytest.fixture(scope="module")
def v2v(tmp_path_factory):
    """A tiny VACE DMD2 config + student checkpoint, and control clips: 11 frames at 20x24 (cut and resized to the
    9 x 16x16 asked), a 5-frame one and a broken file."""
    from test_video_inference import student

    from fastgen.utils.video import encode_mp4, write_bytes_atomic

    folder = tmp_path_factory.mktemp("v2v")
    cfg, ckpt, config = student(folder, "vace_wan")
    rng = np.random.default_rng(7)
    for name, frames in (("clip.mp4", 11), ("short.mp4", 5)):
        pixels = rng.integers(0, 256, (frames, 20, 24, 3), dtype=np.uint8)
        write_bytes_atomic(folder / name, encode_mp4(pixels, fps=8, lossless=True))
    (folder / "broken.mp4").write_bytes(b"not an mp4")
    mask = np.zeros((10, 16, 16, 3), np.uint8)  # an inpainting mask: a band that grows frame by frame
    for k in range(10):
        mask[k, 4:12, :k + 6] = 255
    write_bytes_atomic(folder / "mask.mp4", encode_mp4(mask, fps=8, lossless=True))
    Image.fromarray(mask[5, :, :, 0]).save(folder / "mask.png")  # one grey-level image for every frame
    for name, size in (("ref.png", (16, 16)), ("wide.png", (8, 16))):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / name)
    return folder, cfg, ckpt, config


def test_v2v_inference_writes_the_controlled_sample(script, v2v, tmp_path, one_thread):
    from test_video_inference import expected_video

    from fastgen.utils.video import read_video

    folder, cfg, ckpt, config = v2v
    torch.manual_seed(0)
    code = run_cli(script.main, [f"--config={cfg}", f"--ckpt_path={ckpt}", "--prompt=a cat", "--seeds=2,3",
                                 f"--control_video={folder / 'clip.mp4'}", "--num_steps=1", "--fps=10", "--lossless",
                                 f"--out_dir={tmp_path}"])
    assert code == 0
    data = read_video(tmp_path / "videos" / "000_a-cat_s3.mp4")
    assert data.frames.shape == (9, 16, 16, 3) and data.fps == 10.0
    control = script.read_control_video(str(folder / "clip.mp4"), 9, 16, 16)
    frames = read_video(folder / "clip.mp4").frames[:9]
    first = np.asarray(Image.fromarray(frames[0]).resize((16, 16), Image.BICUBIC), dtype=np.float32) / 127.5 - 1
    assert control.shape == (1, 3, 9, 16, 16)
    assert torch.equal(control[0, :, 0], torch.from_numpy(first).permute(2, 0, 1))
    assert np.array_equal(data.frames, expected_video(config, ckpt, "a cat", 3, control=control))
    assert not np.array_equal(data.frames, expected_video(config, ckpt, "a cat", 3, control=-control))


def test_v2v_inpainting_mask_and_reference_images_equal_the_networks_sample(script, v2v, tmp_path, one_thread):
    """--control_mask (white = generate: the pipeline's convention) and --reference_image: the script's video equals
    the student sample with encode_control(video, mask, references) on the same noise (references: extra leading
    latent frames, dropped), --num_frames frames long."""
    from test_video_inference import expected_video

    from fastgen.utils.video import read_video

    folder, cfg, ckpt, config = v2v
    mask = script.read_control_mask(str(folder / "mask.mp4"), 9, 16, 16)
    expected_mask = torch.zeros(1, 1, 9, 16, 16)
    for k in range(9):
        expected_mask[:, :, k, 4:12, :k + 6] = 1
    assert torch.equal(mask, expected_mask)  # lossless: exactly 0 / 1
    still = script.read_control_mask(str(folder / "mask.png"), 9, 16, 16)
    assert torch.equal(still, expected_mask[:, :, 5:6].expand(-1, -1, 9, -1, -1))
    # references: fitted onto a white canvas of the video size, aspect kept (8x16 -> white bands above and below)
    wide = Image.open(folder / "wide.png")
    fitted = script.read_reference_images([str(folder / "wide.png")], script_net(config, ckpt), 16, 16)
    assert fitted.shape == (1, 1, 3, 16, 16) and fitted[..., :4, :].eq(1).all() and fitted[..., 12:, :].eq(1).all()
    torch.testing.assert_close(fitted[0, 0, :, 4:12], torch.from_numpy(np.asarray(wide, np.float32)).permute(
        2, 0, 1) / 127.5 - 1, atol=1e-6, rtol=0)

    control = script.read_control_video(str(folder / "clip.mp4"), 9, 16, 16)
    base = [f"--config={cfg}", f"--ckpt_path={ckpt}", "--prompt=a cat", "--seeds=3", "--num_steps=1", "--lossless",
            f"--control_video={folder / 'clip.mp4'}", f"--control_mask={folder / 'mask.mp4'}"]
    refs = [Image.open(folder / "ref.png"), wide]
    for name, extra, references in (("mask", [], None), ("refs", [f"--reference_image={folder / 'ref.png'}",
                                                                   f"--reference_image={folder / 'wide.png'}"], refs)):
        torch.manual_seed(0)
        assert run_cli(script.main, [*base, *extra, f"--out_dir={tmp_path / name}"]) == 0
        frames = read_video(tmp_path / name / "videos" / "000_a-cat_s3.mp4").frames
        assert frames.shape == (9, 16, 16, 3)  # --num_frames, the reference frames dropped
        expected = expected_video(config, ckpt, "a cat", 3, control=control, mask=mask, references=references)
        assert np.array_equal(frames, expected), name
    assert not np.array_equal(frames, expected_video(config, ckpt, "a cat", 3, control=control, references=refs))


def script_net(config, ckpt):
    from fastgen.export.student import build_student, checkpoint_network_state

    return build_student(config, checkpoint_network_state(ckpt)[0], ckpt)


@pytest.mark.parametrize("extra, message", [
    ([], "VACEWan is a video-to-video network: pass --control_video PATH"),
    (["--control_video=clip.mp4", "--control_mask=short.mp4"], "--control_mask short.mp4 has 5 frames, fewer than "
                                                               "the 9 asked"),
    (["--control_video=clip.mp4", "--control_mask=broken.mp4"], "--control_mask broken.mp4 is not a readable image "
                                                                "or video"),
    (["--control_video=clip.mp4", "--reference_image=broken.mp4"], "--reference_image broken.mp4 is not a readable "
                                                                   "image"),
    (["--control_video=clip.mp4", "--reference_image=ref.png", "--causal"], "--reference_image is not supported "
                                                                            "with --causal"),
    (["--control_video=short.mp4"], "--control_video short.mp4 has 5 frames, fewer than the 9 asked"),
    (["--control_video=broken.mp4"], "--control_video broken.mp4 is not a readable video"),
    (["--control_video=missing.mp4"], "--control_video missing.mp4 is not a readable video (video file missing.mp4 "
                                      "does not exist)"),
])
def test_v2v_bad_input_exits_2_with_one_line_and_writes_nothing(script, v2v, capsys, monkeypatch, extra, message):
    folder, cfg, ckpt, _ = v2v
    monkeypatch.chdir(folder)
    args = [f"--config={cfg}", f"--ckpt_path={ckpt}", f"--out_dir={folder / 'out'}", "--num_steps=1", "--prompt=a cat"]
    assert run_cli(script.main, args + extra) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in err, err
    assert not (folder / "out").exists()
