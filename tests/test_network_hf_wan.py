"""Wan 2.1 T2V through HFNetwork: forward == the bare WanTransformer3DModel (timestep = 1000 sigma, flow on rf),
teacher sampling == WanPipeline (UniPC multistep, flow shift, CFG), feature taps == hooks, VAE normalisation,
loading from a hub cache with LOCAL_FILES_ONLY."""

import json
import os

import diffusers
import pytest
import torch
from _hf_models import capture, tiny_net

from fastgen.networks.hf import Wan
from fastgen.networks.hf.tiny import tiny_components

PROMPTS = ["a red cat", "two dogs"]


@pytest.fixture(scope="module")
def wan():
    return tiny_net("wan")


def _bare(net, x, t, cond):
    return net.denoiser(hidden_states=x, timestep=(t * 1000).float(), encoder_hidden_states=cond["prompt_embeds"],
                        return_dict=False)[0]


def test_wan_forward_equals_transformer_and_converts_pred_types(wan):
    torch.manual_seed(1)
    x, t = torch.randn(2, 4, 5, 8, 8), torch.tensor([0.3, 0.8], dtype=torch.float64)
    cond = wan.encode_text(PROMPTS)
    with torch.no_grad():
        v = wan(x, t, cond)
        assert torch.equal(v, _bare(wan, x, t, cond))
        x0 = wan(x, t, cond, fwd_pred_type="x0")
    tt = t.view(-1, 1, 1, 1, 1).float()
    torch.testing.assert_close(x0, x - tt * v, atol=1e-5, rtol=1e-5)  # rf: x = (1-t) x0 + t eps, v = eps - x0
    with pytest.raises(ValueError, match=r"video latents \[B, 4, T, H, W\].*\(1, 2, 2\)"):
        wan(torch.randn(1, 4, 5, 7, 8), t[:1], {k: c[:1] for k, c in cond.items()})


def test_wan_features_equal_hooks_and_stop_early(wan):
    torch.manual_seed(2)
    x, t = torch.randn(2, 4, 5, 8, 8), torch.full((2,), 0.5, dtype=torch.float64)
    cond = wan.encode_text(PROMPTS)
    with torch.no_grad():
        _, feats = wan(x, t, cond, feature_indices={1, 0})
        _, ref = capture(list(wan.denoiser.blocks), lambda: _bare(wan, x, t, cond), lambda o: o)
        early = wan(x, t, cond, feature_indices={0}, return_features_early=True)
    inner = wan.denoiser.config.num_attention_heads * wan.denoiser.config.attention_head_dim
    for f, r in zip(feats, ref):
        assert f.shape == (2, inner, 5, 4, 4)  # [B, inner_dim, T', h, w]; token (f, i, j) = pixel (f, i, j)
        assert torch.equal(f.flatten(2).transpose(1, 2), r)
    assert not torch.equal(feats[0], feats[1]) and torch.equal(early[0], feats[0])


def test_wan_sampling_equals_pipeline_with_cfg(wan):
    enc = wan.encoders
    pipe = diffusers.WanPipeline(transformer=wan.denoiser, vae=enc["vae"], text_encoder=enc["text_encoder"],
                                 tokenizer=enc["tokenizer"],
                                 scheduler=diffusers.UniPCMultistepScheduler.from_config(wan.scheduler_config))
    pipe.set_progress_bar_config(disable=True)
    noise = torch.randn(2, 4, 5, 8, 8, generator=torch.Generator().manual_seed(3))
    ref = pipe(prompt=PROMPTS, negative_prompt=["", ""], num_inference_steps=4, guidance_scale=5.0, latents=noise,
               height=16, width=16, num_frames=9, output_type="latent").frames
    ours = wan.sample(noise, PROMPTS, guidance_scale=5.0, num_steps=4)
    assert (ours - ref).abs().max() <= 1e-4 and (ours - noise).abs().max() > 0.1


def test_wan_vae_round_trip_uses_latent_normalisation(wan):
    vae = wan.encoders["vae"]
    video = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    z = wan.encode_images(video, sample=False)
    raw = vae.encode(video).latent_dist.mode()
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    assert z.shape == (1, 4, 5, 8, 8) and torch.allclose(z, (raw - mean) / std, atol=1e-6)
    assert torch.allclose(wan.decode_latents(z), vae.decode(raw).sample, atol=1e-5)


def test_wan_loads_from_hub_cache_with_local_files_only(wan, tmp_path, monkeypatch):
    model_id, rev = "tiny-org/tiny-wan", "0" * 40
    repo = tmp_path / "hub" / "models--tiny-org--tiny-wan"
    snap = repo / "snapshots" / rev
    wan.denoiser.save_pretrained(snap / "transformer")
    for name in ("vae", "text_encoder", "tokenizer"):
        wan.encoders[name].save_pretrained(snap / name)
    os.makedirs(snap / "scheduler")
    (snap / "scheduler" / "scheduler_config.json").write_text(
        json.dumps({"_class_name": "UniPCMultistepScheduler", **wan.scheduler_config, "flow_shift": 5.0}))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(rev)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("LOCAL_FILES_ONLY", "1")
    loaded = Wan(model_id=model_id, enable_preprocessors=True)
    sa, sb = loaded.state_dict(), wan.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert loaded.scheduler_config["flow_shift"] == 5.0 and loaded.net_pred_type == "flow"
    assert torch.equal(loaded.encode_text(PROMPTS)["prompt_embeds"], wan.encode_text(PROMPTS)["prompt_embeds"])
    # encoders_dtype reads the text encoder's weights in bf16 (the VAE stays fp32 unless named); the denoiser and
    # its state_dict are untouched, and the bf16 embeddings are the fp32 ones rounded
    half = Wan(model_id=model_id, enable_preprocessors=True, encoders_dtype="bfloat16")
    assert half.encoders["text_encoder"].dtype == torch.bfloat16 and half.encoders["vae"].dtype == torch.float32
    assert all(torch.equal(v, sb[k]) for k, v in half.state_dict().items())
    ref, emb = wan.encode_text(PROMPTS)["prompt_embeds"], half.encode_text(PROMPTS)["prompt_embeds"]
    assert emb.dtype == torch.bfloat16 and 0 < (emb.float() - ref).abs().max() <= 0.02 * ref.abs().max()
    x, t = torch.randn(2, 4, 5, 8, 8), torch.full((2,), 0.5, dtype=torch.float64)
    with torch.no_grad():  # bf16 conditions reach the fp32 denoiser cast to its dtype
        torch.testing.assert_close(half(x, t, {"prompt_embeds": emb}), wan(x, t, {"prompt_embeds": emb.float()}))
    vae16 = Wan(model_id=model_id, enable_preprocessors=True, encoders_dtype={"vae": "bfloat16"})
    assert vae16.encoders["vae"].dtype == torch.bfloat16 and vae16.encoders["text_encoder"].dtype == torch.float32
    with pytest.raises(ValueError, match="encoders_dtype: 'bf16' for 'text_encoder' is not a torch floating dtype"):
        Wan(model_id=model_id, encoders_dtype="bf16")


def test_wan_preprocess_batch_encodes_pixel_videos_and_prompts(wan):
    video = torch.rand(2, 3, 9, 16, 16) * 2 - 1
    torch.manual_seed(0)  # the VAE samples its latent distribution
    out = wan.preprocess_batch({"real": video, "condition": PROMPTS})
    assert torch.equal(out["real_raw"], video) and out["condition_raw"] == PROMPTS
    torch.manual_seed(0)
    assert out["real"].shape == (2, 4, 5, 8, 8) and torch.equal(out["real"], wan.encode_images(video))
    assert torch.equal(out["condition"]["prompt_embeds"], wan.encode_text(PROMPTS)["prompt_embeds"])
    assert torch.equal(out["neg_condition"]["prompt_embeds"], wan.encode_text(["", ""])["prompt_embeds"])
    latents = {"real": out["real"], "condition": out["condition"]}
    assert wan.preprocess_batch(latents)["real"] is out["real"]  # latents pass unchanged


@pytest.fixture(scope="module")
def wan22():
    """Wan 2.2 TI2V-5B layout: per-token time, the residual patchified VAE (12 = 3 x 2 x 2 channels in, 4x space)."""
    comps = tiny_components("wan")
    comps["vae"].update(is_residual=True, patch_size=2, in_channels=12, out_channels=12, dim_mult=[2, 2],
                        scale_factor_spatial=4)
    return tiny_net("wan", seed=5, component_configs=comps, expand_timesteps=True)


def test_wan22_per_token_time_forward_and_sampling_equal_pipeline(wan22, wan):
    torch.manual_seed(6)
    x = torch.randn(2, 4, 5, 8, 8)
    t = torch.tensor([[0.9, 0.7, 0.5, 0.3, 0.1], [0.2] * 5], dtype=torch.float64)  # per latent frame
    cond = wan22.encode_text(PROMPTS)
    tokens = (t * 1000).float()[:, :, None].expand(2, 5, 16).reshape(2, 80)  # frame-major, 4x4 tokens per frame
    with torch.no_grad():
        v = wan22(x, t, cond)
        bare = wan22.denoiser(hidden_states=x, timestep=tokens, encoder_hidden_states=cond["prompt_embeds"],
                              return_dict=False)[0]
        assert torch.equal(v, bare)
        x0 = wan22(x, t, cond, fwd_pred_type="x0")
        torch.testing.assert_close(x0, x - t[:, None, :, None, None].float() * v, atol=1e-5, rtol=1e-5)
        assert torch.equal(wan22(x, t[:, 0], cond), wan22(x, t[:, :1].expand(2, 5), cond))
    with pytest.raises(ValueError, match="per-frame t .* needs a per-token-time model"):
        wan(x, t, wan.encode_text(PROMPTS))
    enc = wan22.encoders
    pipe = diffusers.WanPipeline(transformer=wan22.denoiser, vae=enc["vae"], text_encoder=enc["text_encoder"],
                                 tokenizer=enc["tokenizer"], expand_timesteps=True,
                                 scheduler=diffusers.UniPCMultistepScheduler.from_config(wan22.scheduler_config))
    pipe.set_progress_bar_config(disable=True)
    noise = torch.randn(2, 4, 5, 8, 8, generator=torch.Generator().manual_seed(7))
    ref = pipe(prompt=PROMPTS, negative_prompt=["", ""], num_inference_steps=3, guidance_scale=5.0, latents=noise,
               height=32, width=32, num_frames=9, output_type="latent").frames
    ours = wan22.sample(noise, PROMPTS, guidance_scale=5.0, num_steps=3)
    assert (ours - ref).abs().max() <= 1e-4 and (ours - noise).abs().max() > 0.1
    video = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    assert wan22.encode_images(video, sample=False).shape == (1, 4, 5, 8, 8)


@pytest.fixture(scope="module")
def wan_i2v():
    return tiny_net("wan_i2v", seed=8)


def test_wan_i2v_image_condition_forward_and_sampling_equal_pipeline(wan_i2v):
    from PIL import Image

    pixels = torch.randint(0, 256, (16, 16, 3), generator=torch.Generator().manual_seed(9), dtype=torch.uint8)
    pil = Image.fromarray(pixels.numpy())
    image = pixels.permute(2, 0, 1)[None].float() / 255 * 2 - 1  # [1, 3, 16, 16] in [-1, 1]
    enc = wan_i2v.encoders
    pipe = diffusers.WanImageToVideoPipeline(
        transformer=wan_i2v.denoiser, vae=enc["vae"], text_encoder=enc["text_encoder"], tokenizer=enc["tokenizer"],
        image_encoder=enc["image_encoder"], image_processor=enc["image_processor"],
        scheduler=diffusers.UniPCMultistepScheduler.from_config(wan_i2v.scheduler_config))
    pipe.set_progress_bar_config(disable=True)
    img_cond = wan_i2v.encode_image_condition(image, num_frames=9)
    torch.testing.assert_close(img_cond["image_embeds"], pipe.encode_image(pil, "cpu"), atol=1e-5, rtol=1e-5)
    ffc = img_cond["first_frame_cond"]
    assert ffc.shape == (1, 2 + 4, 5, 8, 8) and torch.equal(ffc[:, :2, 0], torch.ones(1, 2, 8, 8))
    assert not ffc[:, :2, 1:].any()  # the mask marks the first latent frame only
    cond = {**wan_i2v.encode_text(PROMPTS), **{k: v.expand(2, *v.shape[1:]) for k, v in img_cond.items()}}
    torch.manual_seed(10)
    x, t = torch.randn(2, 4, 5, 8, 8), torch.tensor([0.3, 0.8], dtype=torch.float64)
    with torch.no_grad():
        bare = wan_i2v.denoiser(hidden_states=torch.cat([x, cond["first_frame_cond"]], 1), timestep=(t * 1000).float(),
                                encoder_hidden_states=cond["prompt_embeds"],
                                encoder_hidden_states_image=cond["image_embeds"], return_dict=False)[0]
        assert torch.equal(wan_i2v(x, t, cond), bare)
    noise = torch.randn(2, 4, 5, 8, 8, generator=torch.Generator().manual_seed(11))
    # prompt embeddings passed in: diffusers 0.42's I2V prompt cleaning needs the optional ftfy package
    ref = pipe(image=pil, prompt_embeds=cond["prompt_embeds"], negative_prompt_embeds=wan_i2v.encode_text(["", ""])[
        "prompt_embeds"], num_inference_steps=3, guidance_scale=5.0, latents=noise, height=16, width=16,
        num_frames=9, output_type="latent").frames
    ours = wan_i2v.sample(noise, cond, neg_condition=["", ""], guidance_scale=5.0, num_steps=3)
    assert (ours - ref).abs().max() <= 1e-4 and (ours - noise).abs().max() > 0.1
    # an explicit t_list (first-order steps) also keeps the image parts in CFG's negative
    euler = wan_i2v.sample(noise, cond, neg_condition=["", ""], guidance_scale=5.0, t_list=[0.999, 0.5, 0.0])
    assert (euler - noise).abs().max() > 0.1


def test_wan_i2v_bf16_image_encoder_gives_the_rounded_image_embeddings(wan_i2v):
    half = tiny_net("wan_i2v", seed=8, encoders_dtype="bfloat16")
    assert half.encoders["image_encoder"].dtype == torch.bfloat16 and half.encoders["vae"].dtype == torch.float32
    image = torch.rand(1, 3, 16, 16) * 2 - 1
    ref, got = wan_i2v.encode_image_condition(image, 9), half.encode_image_condition(image, 9)
    assert torch.equal(got["first_frame_cond"], ref["first_frame_cond"])  # the fp32 VAE's latents
    err = (got["image_embeds"].float() - ref["image_embeds"]).abs().max()
    assert 0 < err <= 0.03 * ref["image_embeds"].abs().max()


def test_wan_i2v_preprocess_batch_adds_the_first_frame_condition(wan_i2v):
    video = torch.rand(2, 3, 9, 16, 16) * 2 - 1
    out = wan_i2v.preprocess_batch({"real": video, "condition": PROMPTS})
    ref = wan_i2v.encode_image_condition(video[:, :, 0], 9)
    for key in ("condition", "neg_condition"):  # the negative differs only in its prompt
        assert torch.equal(out[key]["first_frame_cond"], ref["first_frame_cond"])
        assert torch.equal(out[key]["image_embeds"], ref["image_embeds"])
    assert not torch.equal(out["condition"]["prompt_embeds"], out["neg_condition"]["prompt_embeds"])
    with torch.no_grad():  # the completed conditions drive the network
        assert wan_i2v(out["real"], torch.full((2,), 0.5), out["neg_condition"]).shape == (2, 4, 5, 8, 8)
