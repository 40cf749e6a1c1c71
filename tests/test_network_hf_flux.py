"""Flux through HFNetwork: forward == the bare transformer (packed latents, image ids, distilled guidance),
sampling == FluxPipeline, shifted-flow grids (Flux and Qwen-Image) == FlowMatchEulerDiscreteScheduler, features."""

import diffusers
import numpy as np
import pytest
import torch
from _hf_models import capture, tiny_net

from fastgen.networks.hf import schedules

PROMPTS = ["a red cat", "two dogs"]


@pytest.fixture(scope="module")
def flux():
    return tiny_net("flux")


@pytest.mark.parametrize("cfg", [
    dict(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096),
    dict(use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9, base_image_seq_len=256, max_image_seq_len=8192,
         shift_terminal=0.02, time_shift_type="exponential"),
    dict(shift=3.0),
])
def test_shifted_flow_sigmas_equal_scheduler(cfg):
    sched = diffusers.FlowMatchEulerDiscreteScheduler.from_config(cfg)
    for n, seq_len in ((1, 16), (4, 64), (28, 4096), (50, 1024)):
        if n == 1 and cfg.get("shift_terminal"):  # the scheduler gives NaN there; we refuse
            with pytest.raises(ValueError, match="at least 2"):
                schedules.flow_t_list(n, sched.config, seq_len)
            continue
        kw = {"mu": schedules.flow_shift_mu(seq_len, sched.config)} if cfg.get("use_dynamic_shifting") else {}
        sched.set_timesteps(sigmas=np.linspace(1.0, 1.0 / n, n), **kw)
        t_list, to_x0 = schedules.flow_t_list(n, sched.config, seq_len)
        assert to_x0 and np.abs(t_list - sched.sigmas.double().numpy()).max() <= 1e-6


def _bare_flux(net, x, t, cond, guidance):
    b, c, h, w = x.shape
    P = diffusers.FluxPipeline
    out = net.denoiser(hidden_states=P._pack_latents(x, b, c, h, w), timestep=t.float(),
                       guidance=torch.full((b,), guidance), pooled_projections=cond["pooled_prompt_embeds"],
                       encoder_hidden_states=cond["prompt_embeds"],
                       txt_ids=torch.zeros(cond["prompt_embeds"].shape[1], 3),
                       img_ids=P._prepare_latent_image_ids(b, h // 2, w // 2, x.device, x.dtype)).sample
    return P._unpack_latents(out, h * 2, w * 2, 2)


def test_flux_forward_equals_transformer_with_guidance(flux):
    torch.manual_seed(1)
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([0.3, 0.8], dtype=torch.float64)
    cond = flux.encode_text(PROMPTS)
    with torch.no_grad():
        v = flux(x, t, cond)
        assert torch.equal(v, _bare_flux(flux, x, t, cond, 3.5))
        assert torch.equal(flux(x, t, {**cond, "guidance": 5.0}), _bare_flux(flux, x, t, cond, 5.0))
        assert not torch.equal(v, _bare_flux(flux, x, t, cond, 5.0))
        x0 = flux(x, t, cond, fwd_pred_type="x0")
    tt = t.view(-1, 1, 1, 1).float()
    torch.testing.assert_close(x0, x - tt * v, atol=1e-5, rtol=1e-5)  # rf: x = (1-t) x0 + t eps, v = eps - x0


def test_flux_features_equal_hooks(flux):
    torch.manual_seed(2)
    x, t = torch.randn(2, 4, 8, 8), torch.full((2,), 0.5, dtype=torch.float64)
    cond = flux.encode_text(PROMPTS)
    tr = flux.denoiser
    blocks = [*tr.transformer_blocks, *tr.single_transformer_blocks]
    with torch.no_grad():
        _, feats = flux(x, t, cond, feature_indices={0, 1})
        _, ref = capture(blocks, lambda: _bare_flux(flux, x, t, cond, 3.5), lambda o: o[1])
        early = flux(x, t, cond, feature_indices={0}, return_features_early=True)
    inner = tr.config.num_attention_heads * tr.config.attention_head_dim
    for f, r in zip(feats, ref):
        assert f.shape == (2, inner, 4, 4)
        # token (i, j) of the packed 4x4 grid is the feature map's pixel (i, j)
        assert torch.equal(f.flatten(2).transpose(1, 2), r)
    assert torch.equal(early[0], feats[0])


def test_flux_sampling_equals_pipeline(flux):
    enc = flux.encoders
    pipe = diffusers.FluxPipeline(
        transformer=flux.denoiser, vae=enc["vae"], text_encoder=enc["text_encoder"],
        text_encoder_2=enc["text_encoder_2"], tokenizer=enc["tokenizer"], tokenizer_2=enc["tokenizer_2"],
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler.from_config(flux.scheduler_config))
    pipe.set_progress_bar_config(disable=True)
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    b, c, h, w = noise.shape
    ref = pipe(prompt=PROMPTS, num_inference_steps=4, guidance_scale=3.5, latents=pipe._pack_latents(noise, b, c, h, w),
               output_type="latent", height=16, width=16, max_sequence_length=512).images
    ref = pipe._unpack_latents(ref, 16, 16, 2)
    ours = flux.sample(noise, PROMPTS, num_steps=4)
    assert (ours - ref).abs().max() <= 1e-4 and (ours - noise).abs().max() > 0.1
