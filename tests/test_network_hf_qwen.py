"""Qwen-Image through HFNetwork: forward == the bare transformer (packed latents, image shapes, text mask),
sampling == QwenImagePipeline with true CFG (norm-rescaled), the video-style VAE's latent normalisation."""

import diffusers
import pytest
import torch
from _hf_models import capture, tiny_net

PROMPTS = ["a red cat", "two dogs"]


@pytest.fixture(scope="module")
def qwen():
    return tiny_net("qwen_image")


def test_qwen_forward_equals_transformer_and_sampling_equals_pipeline(qwen):
    torch.manual_seed(4)
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([0.3, 0.8], dtype=torch.float64)
    cond = qwen.encode_text(PROMPTS)
    P = diffusers.QwenImagePipeline
    with torch.no_grad():
        ours = qwen(x, t, cond)
        bare = qwen.denoiser(hidden_states=P._pack_latents(x, 2, 4, 8, 8), timestep=t.float(),
                             encoder_hidden_states=cond["prompt_embeds"],
                             encoder_hidden_states_mask=cond["prompt_embeds_mask"],
                             img_shapes=[[(1, 4, 4)]] * 2).sample
    assert torch.equal(ours, P._unpack_latents(bare, 8, 8, 1).squeeze(2))
    enc = qwen.encoders
    pipe = P(transformer=qwen.denoiser, vae=enc["vae"], text_encoder=enc["text_encoder"], tokenizer=enc["tokenizer"],
             scheduler=diffusers.FlowMatchEulerDiscreteScheduler.from_config(qwen.scheduler_config))
    pipe.set_progress_bar_config(disable=True)
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    vsf = qwen.adapter.vae_scale_factor(qwen)
    ref = pipe(prompt=PROMPTS, negative_prompt=["", ""], true_cfg_scale=4.0, num_inference_steps=3,
               latents=P._pack_latents(noise, 2, 4, 8, 8), output_type="latent", height=8 * vsf, width=8 * vsf,
               max_sequence_length=512).images
    ref = P._unpack_latents(ref, 8 * vsf, 8 * vsf, vsf).squeeze(2)
    ours = qwen.sample(noise, PROMPTS, neg_condition=["", ""], guidance_scale=4.0, num_steps=3)
    assert (ours - ref).abs().max() <= 1e-4 and (ours - noise).abs().max() > 0.1


def test_qwen_vae_round_trip_uses_latent_normalisation(qwen):
    vae = qwen.encoders["vae"]
    images = torch.rand(1, 3, 16, 16) * 2 - 1
    z = qwen.encode_images(images, sample=False)
    raw = vae.encode(images.unsqueeze(2)).latent_dist.mode()
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    assert torch.allclose(z, ((raw - mean) / std).squeeze(2), atol=1e-6)
    assert torch.allclose(qwen.decode_latents(z), vae.decode(raw).sample.squeeze(2), atol=1e-5)


def test_qwen_features_equal_hooks_and_stop_early(qwen):
    torch.manual_seed(6)
    x, t = torch.randn(2, 4, 8, 8), torch.full((2,), 0.4, dtype=torch.float64)
    cond = qwen.encode_text(PROMPTS)
    blocks = list(qwen.denoiser.transformer_blocks)
    with torch.no_grad():
        (_, feats), ref = capture(blocks, lambda: qwen(x, t, cond, feature_indices=[1, 0]), lambda o: o[1])
        early = qwen(x, t, cond, feature_indices={0}, return_features_early=True)
    assert [tuple(f.shape) for f in feats] == [(2, 32, 4, 4)] * 2  # sorted indices, [B, inner_dim, H/2, W/2]
    assert torch.equal(feats[0].flatten(2).transpose(1, 2), ref[0])
    assert torch.equal(feats[1].flatten(2).transpose(1, 2), ref[1])
    assert torch.equal(early[0], feats[0])


def test_prompts_without_encoders_are_one_line_error():
    net = tiny_net("qwen_image", enable_preprocessors=False)
    with pytest.raises(ValueError, match="holds prompts but QwenImage has no text encoders"):
        net.preprocess_batch({"real": torch.zeros(1, 4, 8, 8), "condition": ["a cat"]})
    latents = {"real": torch.zeros(1, 4, 8, 8), "condition": {"prompt_embeds": torch.zeros(1, 3, 32)}}
    assert net.preprocess_batch(latents) is latents
