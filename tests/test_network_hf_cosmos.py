"""Cosmos-Predict2 through HFNetwork: forward == the bare CosmosTransformer3DModel as the pipelines call it (flow on rf,
timestep t, condition mask, first frames clean at the conditioning time), teacher sampling == Cosmos2VideoToWorldPipeline
(video2world) and Cosmos2TextToImagePipeline (text2world, 1 frame), the Karras sigma grid, conditioning frames pinned
to the given latents in every prediction type and in training batches."""

import diffusers
import pytest
import torch
from _hf_models import tiny_net

from fastgen.networks.hf import CosmosPredict2
from fastgen.networks.hf.cosmos import GuardrailNotRun
from fastgen.networks.hf.tiny import tiny_components

PROMPTS = ["a red cat", "two dogs"]


@pytest.fixture(scope="module")
def v2w():
    return tiny_net("cosmos_predict2", seed=3, is_video2world=True)


@pytest.fixture(scope="module")
def t2w(v2w):
    """The same weights and encoders, text2world."""
    net = CosmosPredict2(model_id="tiny/cosmos", **CosmosPredict2.smoke_overrides({})).eval()
    net.load_state_dict(v2w.state_dict())
    net.encoders = v2w.encoders
    return net


def _bare(net, x, frame_t, cond, n=0, clean=None):
    """The transformer called as Cosmos2VideoToWorldPipeline calls it (timestep [B, 1, T, 1, 1])."""
    b, _, frames, h, w = x.shape
    mask = torch.zeros(b, 1, frames, h, w)
    mask[:, :, :n] = 1
    if n:
        x = torch.cat([clean.expand(b, -1, -1, -1, -1), x[:, :, n:]], 2)
    return net.denoiser(hidden_states=x, timestep=frame_t[:, None, :, None, None].float(),
                        encoder_hidden_states=cond["prompt_embeds"], fps=24, condition_mask=mask,
                        padding_mask=torch.zeros(1, 1, h, w), return_dict=False)[0]


def test_text2world_forward_equals_transformer_and_converts(t2w):
    torch.manual_seed(1)
    x, t = torch.randn(2, 4, 3, 8, 8), torch.tensor([0.3, 0.8], dtype=torch.float64)
    cond = t2w.encode_text(PROMPTS)
    with torch.no_grad():
        v = t2w(x, t, cond)
        assert torch.equal(v, _bare(t2w, x, t[:, None].expand(2, 3), cond))
        x0 = t2w(x, t, cond, fwd_pred_type="x0")
        per_frame = t2w(x, t[:, None].expand(2, 3), cond)  # t per latent frame
    torch.testing.assert_close(x0, x - t.view(-1, 1, 1, 1, 1).float() * v, atol=1e-6, rtol=1e-6)  # rf: v = eps - x0
    assert torch.equal(per_frame, v)
    with pytest.raises(ValueError, match="text2world .* is_video2world=True"):
        t2w(x, t, {**cond, "conditioning_latents": x[:, :, :1]})


def test_video2world_forward_pins_the_conditioning_frames(v2w):
    torch.manual_seed(2)
    x, t = torch.randn(2, 4, 3, 8, 8), torch.tensor([0.3, 0.8], dtype=torch.float64)
    clean = torch.randn(2, 4, 1, 8, 8)
    cond = {**v2w.encode_text(PROMPTS), "conditioning_latents": clean}
    t_cond = torch.tensor(1e-4, dtype=torch.float32) / (1 + torch.tensor(1e-4, dtype=torch.float32))
    frame_t = torch.cat([t_cond.double().expand(2, 1), t[:, None].expand(2, 2)], 1)
    with torch.no_grad():
        v = v2w(x, t, cond)
        bare = _bare(v2w, x, frame_t, cond, n=1, clean=clean)
        x0 = v2w(x, t, cond, fwd_pred_type="x0")
        eps = v2w(x, t, cond, fwd_pred_type="eps")
    assert torch.equal(v[:, :, 1:], bare[:, :, 1:])  # generated frames: the transformer's own output
    assert torch.equal(x0[:, :, :1], clean)  # conditioning frames: exactly the given latents
    tt = t.view(-1, 1, 1, 1, 1).float()
    torch.testing.assert_close(x0[:, :, 1:], x[:, :, 1:] - tt * v[:, :, 1:], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(eps[:, :, :1], (x[:, :, :1] - (1 - tt) * clean) / tt, atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="needs condition\\['conditioning_latents'\\]"):
        v2w(x, t, v2w.encode_text(PROMPTS))
    with pytest.raises(ValueError, match=r"must be \[B, 4, n, 8, 8\]"):
        v2w(x, t, {**cond, "conditioning_latents": torch.randn(2, 4, 1, 4, 4)})


def test_karras_grid_and_schedule_range(v2w):
    sched = v2w.adapter.pipeline_scheduler(v2w)
    sched.set_timesteps(sigmas=torch.linspace(0, 1, 5, dtype=torch.float64))
    ramp = torch.linspace(0, 1, 5, dtype=torch.float64)
    karras = (80 ** (1 / 7) + ramp * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7  # EDM, rho 7, sigma 80 -> 0.002
    torch.testing.assert_close(sched.sigmas[:5].double(), karras, atol=1e-6, rtol=1e-6)
    assert v2w.noise_scheduler.max_t == pytest.approx(80 / 81) and v2w.net_pred_type == "flow"


def _pipeline(cls, net, denoiser=None):
    enc = net.encoders
    pipe = cls(text_encoder=enc["text_encoder"], tokenizer=enc["tokenizer"], transformer=denoiser or net.denoiser,
               vae=enc["vae"], scheduler=diffusers.FlowMatchEulerDiscreteScheduler.from_config(net.scheduler_config),
               safety_checker=GuardrailNotRun())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_video2world_sampling_equals_pipeline_and_keeps_frames_clean(v2w):
    from PIL import Image

    pixels = torch.randint(0, 256, (16, 16, 3), generator=torch.Generator().manual_seed(4), dtype=torch.uint8)
    pil = Image.fromarray(pixels.numpy())
    pipe = _pipeline(diffusers.Cosmos2VideoToWorldPipeline, v2w)
    pos, neg = v2w.encode_text(PROMPTS)["prompt_embeds"], v2w.encode_text(["", ""])["prompt_embeds"]
    noise = torch.randn(2, 4, 5, 8, 8, generator=torch.Generator().manual_seed(5))
    video = pipe.video_processor.preprocess(pil, 16, 16).unsqueeze(2)
    clean = pipe.prepare_latents(video, 2, 4, 16, 16, 9, True, torch.float32, "cpu",
                                 torch.Generator().manual_seed(6), noise)[1][:, :, :1]  # the pipeline's own draw
    ref = pipe(image=pil, prompt_embeds=pos, negative_prompt_embeds=neg, num_inference_steps=3, guidance_scale=2.0,
               latents=noise, height=16, width=16, num_frames=9, fps=24, generator=torch.Generator().manual_seed(6),
               output_type="latent").frames
    seen = []
    hook = v2w.denoiser.register_forward_hook(
        lambda m, a, kw, o: seen.append((kw["hidden_states"][:, :, :1], kw["condition_mask"])), with_kwargs=True)
    try:  # the pipeline's g = our g - 1 (it mixes cond + g (cond - uncond))
        ours = v2w.sample(noise, {"prompt_embeds": pos, "conditioning_latents": clean}, {"prompt_embeds": neg},
                          guidance_scale=3.0, num_steps=3)
    finally:
        hook.remove()
    assert (ours - ref).abs().max() <= 1e-4 and (ours - noise).abs().max() > 0.1
    assert len(seen) == 6  # 3 steps x (cond, uncond)
    for first, mask in seen:  # every call sees the conditioning frame clean and marked
        assert torch.equal(first, clean.expand(2, -1, -1, -1, -1))
        assert torch.equal(mask[:, :, 0], torch.ones(2, 1, 8, 8)) and not mask[:, :, 1:].any()


def test_text2world_sampling_equals_text2image_pipeline():
    """Text2world on the Text2Image layout (no condition-mask channel), 1 latent frame, against
    Cosmos2TextToImagePipeline: the only diffusers pipeline that runs Cosmos-Predict2 without conditioning frames."""
    comps = tiny_components("cosmos_predict2")
    comps["transformer"]["in_channels"] = 4
    net = tiny_net("cosmos_predict2", seed=7, component_configs=comps)
    pipe = _pipeline(diffusers.Cosmos2TextToImagePipeline, net)
    pos, neg = net.encode_text(PROMPTS)["prompt_embeds"], net.encode_text(["", ""])["prompt_embeds"]
    noise = torch.randn(2, 4, 1, 8, 8, generator=torch.Generator().manual_seed(8))
    ref = pipe(prompt_embeds=pos, negative_prompt_embeds=neg, num_inference_steps=3, guidance_scale=2.0,
               latents=noise, height=16, width=16, output_type="latent").images
    ours = net.sample(noise, {"prompt_embeds": pos}, {"prompt_embeds": neg}, guidance_scale=3.0, num_steps=3)
    assert (ours[:, :, 0] - ref).abs().max() <= 1e-4 and (ours - noise).abs().max() > 0.1


def test_video2world_batches_carry_first_frames_and_their_loss_is_zero(v2w):
    video = torch.rand(2, 3, 9, 16, 16) * 2 - 1
    out = v2w.preprocess_batch({"real": video, "condition": PROMPTS})
    real = out["real"]
    for key in ("condition", "neg_condition"):  # the negative differs only in its prompt
        assert torch.equal(out[key]["conditioning_latents"], real[:, :, :1])
    torch.manual_seed(9)
    eps, t = torch.randn_like(real), torch.tensor([0.2, 0.9], dtype=torch.float64)
    tt = t.view(-1, 1, 1, 1, 1).float()
    x_t = (1 - tt) * real + tt * eps
    with torch.no_grad():
        flow = v2w(x_t, t, out["condition"])
        x0 = v2w(x_t, t, out["neg_condition"], fwd_pred_type="x0")
    # SFT's flow target eps - x0 and DMD2's x0 targets: no error on the conditioning frame
    torch.testing.assert_close(flow[:, :, :1], (eps - real)[:, :, :1], atol=1e-5, rtol=1e-5)
    assert torch.equal(x0[:, :, :1], real[:, :, :1])
    for frames, pulls in ((slice(0, 1), False), (slice(1, None), True)):  # no gradient from the conditioning frame
        v2w.zero_grad(set_to_none=True)
        (v2w(x_t, t, out["condition"], fwd_pred_type="x0")[:, :, frames] - real[:, :, frames]).square().sum().backward()
        assert any(p.grad is not None and p.grad.any() for p in v2w.parameters()) == pulls
    v2w.zero_grad(set_to_none=True)
    image = video[:, :, 0]  # inference's --image: the same latents as the video's first frame (mode)
    ref = v2w.encode_images(video[:, :, :1], sample=False)
    assert torch.equal(v2w.encode_image_condition(image)["conditioning_latents"], ref)


def _cosmos_config_file(tmp_path, video2world: bool) -> str:
    """A tiny Cosmos-Predict2 DMD2 experiment file (tests/_tiny_sd15.py's template) for the inference script."""
    from _tiny_sd15 import config_text

    text = config_text("dmd2", "cosmos_predict2", net="CosmosPredict2_2B_Config", input_shape=[4, 3, 8, 8],
                       extra=[f"config.model.net.is_video2world = {video2world}"])
    path = tmp_path / f"config_cosmos_{video2world}.py"
    path.write_text(text)
    return str(path)


def test_video_inference_video2world_starts_from_the_image(tmp_path, capsys, video_inference_script):
    """scripts/inference/video_model_inference.py: --image becomes the pinned first latent frame, so the mp4's first
    frame is the VAE's reconstruction of the image exactly; text2world refuses --image."""

    import numpy as np
    from PIL import Image

    from fastgen.cli import run_cli
    from fastgen.configs.config_utils import import_config_from_python_file
    from fastgen.export.student import build_student
    from fastgen.utils import instantiate
    from fastgen.utils.video import read_video, video_to_uint8

    cfg = _cosmos_config_file(tmp_path, True)
    config = import_config_from_python_file(cfg)
    torch.manual_seed(1)
    ckpt = tmp_path / "student.pth"
    torch.save({"model": {"net": instantiate(config.model.net).state_dict()}, "iteration": 1}, ckpt)
    pixels = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "first.png")
    out = tmp_path / "v2w"
    torch.manual_seed(0)
    code = run_cli(video_inference_script.main, [f"--config={cfg}", f"--ckpt_path={ckpt}", "--prompt=a cat", "--seeds=2",
                                 f"--image={tmp_path / 'first.png'}", "--num_steps=1", "--lossless", f"--out_dir={out}"])
    assert code == 0
    frames = read_video(out / "videos" / "000_a-cat_s2.mp4").frames
    torch.manual_seed(0)
    net = build_student(config, torch.load(ckpt, weights_only=True)["model"]["net"], str(ckpt))
    image = torch.from_numpy(pixels.astype(np.float32)).permute(2, 0, 1)[None] / 127.5 - 1
    first = net.decode_latents(net.encode_image_condition(image)["conditioning_latents"]).clamp(-1, 1)[0]
    assert frames.shape == (5, 16, 16, 3) and np.array_equal(frames[0], video_to_uint8(first, "CTHW")[0])
    capsys.readouterr()
    code = run_cli(video_inference_script.main, [f"--config={_cosmos_config_file(tmp_path, False)}", f"--ckpt_path={ckpt}",
                                 "--prompt=a cat", f"--image={tmp_path / 'first.png'}", f"--out_dir={tmp_path / 'no'}"])
    assert code == 2 and "--image needs an image-to-video network" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()


def test_loads_a_saved_cosmos2_pipeline_folder(v2w, tmp_path):
    """What Cosmos2VideoToWorldPipeline.save_pretrained writes (its scheduler config then holds the EDM constants the
    pipeline registered) loads back: same weights, same prompt embeddings, the same sampler grid."""
    _pipeline(diffusers.Cosmos2VideoToWorldPipeline, v2w).save_pretrained(tmp_path / "pipe")
    loaded = CosmosPredict2(model_id=str(tmp_path / "pipe"), is_video2world=True, enable_preprocessors=True)
    sa, sb = loaded.state_dict(), v2w.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert loaded.scheduler_config["sigma_max"] == 80.0 and loaded.noise_scheduler.max_t == pytest.approx(80 / 81)
    assert torch.equal(loaded.encode_text(PROMPTS)["prompt_embeds"], v2w.encode_text(PROMPTS)["prompt_embeds"])
