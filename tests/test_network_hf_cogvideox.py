"""CogVideoX through HFNetwork: forward == the bare CogVideoXTransformer3DModel (frames-first layout permuted, v on
the cogvideox schedule with the scheduler's SNR shift), 5B-style rotary embeddings, teacher sampling ==
CogVideoXPipeline with its DDIM scheduler and with its stochastic DPM scheduler (same generator), features."""

import diffusers
import pytest
import torch
from _hf_models import capture, tiny_net

from fastgen.networks.hf.tiny import tiny_components

PROMPTS = ["a red cat", "two dogs"]


@pytest.fixture(scope="module")
def cog():
    return tiny_net("cogvideox")


@pytest.fixture(scope="module")
def cog5b():
    """The 5B layout: 3-D rotary embeddings instead of sin-cos positions, SNR shift 1.0, the DPM scheduler."""
    comps = tiny_components("cogvideox")
    comps["transformer"]["use_rotary_positional_embeddings"] = True
    comps["scheduler"].update(snr_shift_scale=1.0, _class_name="CogVideoXDPMScheduler")
    return tiny_net("cogvideox", seed=1, component_configs=comps)


def _pipe(net):
    enc = net.encoders
    sched = net.adapter.make_scheduler(net)
    pipe = diffusers.CogVideoXPipeline(transformer=net.denoiser, vae=enc["vae"], text_encoder=enc["text_encoder"],
                                       tokenizer=enc["tokenizer"], scheduler=sched)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _bare(net, x, t, cond, rotary=None):
    out = net.denoiser(hidden_states=x.permute(0, 2, 1, 3, 4), timestep=(t * 1000).float(),
                       encoder_hidden_states=cond["prompt_embeds"], image_rotary_emb=rotary, return_dict=False)[0]
    return out.permute(0, 2, 1, 3, 4)


def test_cogvideox_forward_equals_transformer_and_schedule_follows_scheduler(cog, cog5b):
    torch.manual_seed(1)
    x, t = torch.randn(2, 4, 5, 8, 8), torch.tensor([0.3, 0.8], dtype=torch.float64)
    cond = cog.encode_text(PROMPTS)
    with torch.no_grad():
        v = cog(x, t, cond)
        assert torch.equal(v, _bare(cog, x, t, cond))
        x0 = cog(x, t, cond, fwd_pred_type="x0")
    # v prediction on the scheduler's alpha-bar table: x0 = sqrt(abar) x - sqrt(1 - abar) v at timestep 1000 t
    sched = cog.adapter.make_scheduler(cog)
    abar = sched.alphas_cumprod.double()[[300, 800]].view(-1, 1, 1, 1, 1)
    torch.testing.assert_close(x0.double(), abar.sqrt() * x - (1 - abar).sqrt() * v, atol=1e-5, rtol=1e-5)
    assert cog.noise_scheduler.snr_shift_scale == 3.0 and cog5b.noise_scheduler.snr_shift_scale == 1.0
    cond5 = cog5b.encode_text(PROMPTS)
    pipe = _pipe(cog5b)
    vsf = pipe.vae_scale_factor_spatial
    rotary = pipe._prepare_rotary_positional_embeddings(8 * vsf, 8 * vsf, 5, x.device)
    with torch.no_grad():
        v5 = cog5b(x, t, cond5)
        assert torch.equal(v5, _bare(cog5b, x, t, cond5, rotary))
        assert not torch.equal(v5, _bare(cog5b, x, t, cond5, None))  # the rotary tables matter


def test_cogvideox_features_equal_hooks(cog):
    torch.manual_seed(2)
    x, t = torch.randn(2, 4, 5, 8, 8), torch.full((2,), 0.5, dtype=torch.float64)
    cond = cog.encode_text(PROMPTS)
    with torch.no_grad():
        _, feats = cog(x, t, cond, feature_indices={0, 1})
        _, ref = capture(list(cog.denoiser.transformer_blocks), lambda: _bare(cog, x, t, cond), lambda o: o[0])
        early = cog(x, t, cond, feature_indices={0}, return_features_early=True)
    for f, r in zip(feats, ref):
        assert f.shape == (2, 32, 5, 4, 4)  # [B, inner_dim, T, H/2, W/2]
        assert torch.equal(f.flatten(2).transpose(1, 2), r)
    assert torch.equal(early[0], feats[0])


@pytest.mark.parametrize("which", ["ddim", "dpm"])
def test_cogvideox_sampling_equals_pipeline(cog, cog5b, which):
    net = cog if which == "ddim" else cog5b
    pipe = _pipe(net)
    vsf = pipe.vae_scale_factor_spatial
    noise = torch.randn(2, 4, 5, 8, 8, generator=torch.Generator().manual_seed(3))
    ref = pipe(prompt=PROMPTS, negative_prompt=["", ""], num_inference_steps=3, guidance_scale=6.0,
               latents=noise.permute(0, 2, 1, 3, 4), height=8 * vsf, width=8 * vsf, num_frames=9,
               generator=torch.Generator().manual_seed(4), output_type="latent").frames.permute(0, 2, 1, 3, 4)
    ours = net.sample(noise, PROMPTS, guidance_scale=6.0, num_steps=3, generator=torch.Generator().manual_seed(4))
    assert (ours - ref).abs().max() <= 1e-4 and (ours - noise).abs().max() > 0.1
    if which == "dpm":  # stochastic: another generator gives another sample
        other = net.sample(noise, PROMPTS, guidance_scale=6.0, num_steps=3, generator=torch.Generator().manual_seed(5))
        assert (other - ref).abs().max() > 1e-3


def test_cogvideox_vae_uses_scaling_factor(cog):
    vae = cog.encoders["vae"]
    video = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    z = cog.encode_images(video, sample=False)
    raw = vae.encode(video).latent_dist.mode()
    assert z.shape == (1, 4, 5, 8, 8) and torch.allclose(z, raw * vae.config.scaling_factor, atol=1e-6)
