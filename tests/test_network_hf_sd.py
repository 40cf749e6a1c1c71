"""SD1.5 / SDXL through HFNetwork: forward == the bare UNet, sampling == the diffusers pipelines, features,
schedules == diffusers' schedulers, encoders frozen and outside the state dict."""

import diffusers
import numpy as np
import pytest
import torch
from _hf_models import capture, tiny_net

from fastgen.networks.hf import schedules
from fastgen.networks.hf.tiny import tiny_components
from fastgen.networks.noise_schedule import get_noise_schedule

PROMPTS = ["a red cat", "two dogs"]


def _sd_scheduler():
    return diffusers.DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


@pytest.fixture(scope="module")
def sd15():
    return tiny_net("sd15")


@pytest.fixture(scope="module")
def sdxl():
    return tiny_net("sdxl")


def test_sd_schedule_equals_diffusers_alphas():
    sched = _sd_scheduler()
    abar = sched.alphas_cumprod.double()
    for name in ("sd", "sdxl"):
        ours = get_noise_schedule(name)
        t = torch.arange(1000, dtype=torch.float64) / 1000
        assert torch.allclose(ours.alpha(t) ** 2, abar, atol=1e-6, rtol=0)
        assert torch.allclose(ours.sigma(t) ** 2, 1 - abar, atol=1e-6, rtol=0)
    euler = diffusers.EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    ours = get_noise_schedule("sdxl")
    # Euler works in sigma_VE = sqrt((1 - abar) / abar), from t = 999 down to 0 (float32 there: compare abar)
    abar_euler = 1 / (1 + euler.sigmas[:-1].double().flip(0) ** 2)
    assert torch.allclose(ours.alpha(t) ** 2, abar_euler, atol=1e-6, rtol=0)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_discrete_grids_equal_schedulers(spacing):
    cfg = dict(beta_schedule="scaled_linear", steps_offset=1, timestep_spacing=spacing)
    for n in (1, 4, 25, 50):
        ddim = diffusers.DDIMScheduler.from_config(cfg)
        ddim.set_timesteps(n)
        t_list, to_x0 = schedules.ddim_t_list(n, ddim.config)
        np.testing.assert_array_equal(np.round(t_list[:-1] * 1000), ddim.timesteps.numpy())
        assert t_list[-1] == 0 and to_x0 is True  # DDIMScheduler's default set_alpha_to_one=True
        if spacing != "linspace":
            euler = diffusers.EulerDiscreteScheduler.from_config(cfg)
            euler.set_timesteps(n)
            t_list, _ = schedules.euler_discrete_t_list(n, euler.config)
            np.testing.assert_array_equal(np.round(t_list[:-1] * 1000), euler.timesteps.numpy())
    with pytest.raises(ValueError, match="not supported"):
        schedules.euler_discrete_t_list(4, {"timestep_spacing": "linspace"})


def test_forward_equals_unet_and_converts_pred_types(sd15):
    torch.manual_seed(1)
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([0.25, 0.901], dtype=torch.float64)
    cond = sd15.encode_text(PROMPTS)
    with torch.no_grad():
        eps = sd15(x, t, cond)
        bare = sd15.denoiser(x, t * 1000, encoder_hidden_states=cond["prompt_embeds"]).sample
        x0 = sd15(x, t, cond, fwd_pred_type="x0")
    assert torch.equal(eps, bare)
    abar = torch.tensor(np.interp(t.numpy() * 1000, np.arange(1000),
                                  _sd_scheduler().alphas_cumprod.numpy()))
    a, s = abar.sqrt().view(-1, 1, 1, 1), (1 - abar).sqrt().view(-1, 1, 1, 1)
    # t=0.25 lies on the grid (exact); 0.901 between entries, where we interpolate log alpha-bar instead
    torch.testing.assert_close(x0[:1], ((x - s * eps) / a)[:1].float(), atol=1e-5, rtol=1e-5)


def test_features_equal_hooks_on_bare_unet(sd15):
    torch.manual_seed(2)
    x, t = torch.randn(2, 4, 8, 8), torch.full((2,), 0.5, dtype=torch.float64)
    cond = sd15.encode_text(PROMPTS)
    unet = sd15.denoiser
    blocks = [*unet.down_blocks, unet.mid_block]
    with torch.no_grad():
        out, feats = sd15(x, t, cond, feature_indices={0, 2})
        _, ref = capture(blocks, lambda: unet(x, t * 1000, cond["prompt_embeds"]),
                         lambda o: o[0] if isinstance(o, tuple) else o)
        early = sd15(x, t, cond, feature_indices={1}, return_features_early=True)
    assert torch.equal(feats[0], ref[0]) and torch.equal(feats[1], ref[2])
    assert feats[0].shape == (2, 16, 4, 4) and feats[1].shape == (2, 32, 4, 4)
    assert isinstance(early, list) and torch.equal(early[0], ref[1])
    assert sd15(x, t, cond, feature_indices=set(), return_features_early=True) == []  # nothing asked, nothing run


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_sampling_equals_sd_pipeline_with_cfg(sd15, prediction_type):
    if prediction_type == "v_prediction":  # SD2.x 768-v: the scheduler config decides the native prediction type
        comps = tiny_components("sd15")
        comps["scheduler"]["prediction_type"] = prediction_type
        sd15 = tiny_net("sd15", component_configs=comps)
        assert sd15.net_pred_type == "v"
    enc = sd15.encoders
    pipe = diffusers.StableDiffusionPipeline(
        vae=enc["vae"], text_encoder=enc["text_encoder"], tokenizer=enc["tokenizer"], unet=sd15.denoiser,
        scheduler=diffusers.DDIMScheduler.from_config(sd15.scheduler_config), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    ref = pipe(prompt=PROMPTS, num_inference_steps=4, guidance_scale=3.0, latents=noise, output_type="latent",
               height=16, width=16).images
    ours = sd15.sample(noise, PROMPTS, guidance_scale=3.0, num_steps=4)
    assert (ours - ref).abs().max() <= 1e-4
    assert (ours - noise).abs().max() > 0.1  # sampling moved the latents
    with pytest.raises(ValueError, match="sampler_type='ancestral'"):
        sd15.sample(noise, PROMPTS, num_steps=4, sampler_type="ancestral")


def test_sdxl_forward_and_sampling_equal_pipeline(sdxl):
    enc = sdxl.encoders
    torch.manual_seed(4)
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([0.3, 0.7], dtype=torch.float64)
    cond = sdxl.encode_text(PROMPTS)
    time_ids = torch.tensor([[16, 16, 0, 0, 16, 16]] * 2, dtype=torch.float32)
    with torch.no_grad():
        ours = sdxl(x, t, cond)
        bare = sdxl.denoiser(x, t * 1000, cond["prompt_embeds"], added_cond_kwargs={
            "text_embeds": cond["pooled_prompt_embeds"], "time_ids": time_ids}).sample
        explicit = sdxl(x, t, {**cond, "time_ids": time_ids * 2})
    assert torch.equal(ours, bare) and not torch.equal(explicit, bare)  # default time_ids = latent size in pixels
    pipe = diffusers.StableDiffusionXLPipeline(
        vae=enc["vae"], text_encoder=enc["text_encoder"], text_encoder_2=enc["text_encoder_2"],
        tokenizer=enc["tokenizer"], tokenizer_2=enc["tokenizer_2"], unet=sdxl.denoiser,
        scheduler=diffusers.EulerDiscreteScheduler.from_config(sdxl.scheduler_config))
    pipe.set_progress_bar_config(disable=True)
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    ref = pipe(prompt=PROMPTS, num_inference_steps=3, guidance_scale=4.0, latents=noise, output_type="latent",
               height=16, width=16).images
    # Euler starts from noise * init_noise_sigma in sigma_VE space, i.e. from `noise` itself in our VP space
    ours = sdxl.sample(noise, PROMPTS, guidance_scale=4.0, num_steps=3)
    assert (ours - ref).abs().max() <= 1e-4


def test_encoders_frozen_and_not_in_state_dict(sd15):
    assert set(sd15.state_dict()) == {f"denoiser.{k}" for k in sd15.denoiser.state_dict()}
    for name in ("vae", "text_encoder"):
        comp = sd15.encoders[name]
        assert not comp.training and not any(p.requires_grad for p in comp.parameters())
    import copy

    ema = copy.deepcopy(sd15)
    assert ema.encoders is sd15.encoders and ema.denoiser is not sd15.denoiser


def test_preprocess_batch_encodes_images_and_prompts(sd15):
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    data = sd15.preprocess_batch({"real": images, "condition": PROMPTS})
    vae = sd15.encoders["vae"]
    torch.manual_seed(0)
    assert data["real"].shape == (2, 4, 8, 8) and torch.equal(data["real_raw"], images)
    mean = vae.encode(images).latent_dist.mode() * vae.config.scaling_factor
    assert torch.allclose(sd15.encode_images(images, sample=False), mean)
    assert torch.equal(data["condition"]["prompt_embeds"], sd15.encode_text(PROMPTS)["prompt_embeds"])
    assert torch.equal(data["neg_condition"]["prompt_embeds"], sd15.encode_text(["", ""])["prompt_embeds"])
    latents = sd15.preprocess_batch({"real": data["real"], "condition": data["condition"]})
    assert latents["real"] is data["real"] and "real_raw" not in latents  # already latents: unchanged
    decoded = sd15.decode_latents(mean)
    assert torch.allclose(decoded, vae.decode(mean / vae.config.scaling_factor).sample)


def test_bad_latent_size_and_r_are_one_line_errors(sd15):
    cond = {"prompt_embeds": torch.zeros(1, 16, 32)}
    with pytest.raises(ValueError, match=r"divisible by 2.*image sizes must be divisible by 4"):
        sd15(torch.zeros(1, 4, 7, 8), torch.tensor([0.5]), cond)
    with pytest.raises(ValueError, match=r"keys \['prompt_embeds'\].*got NoneType"):
        sd15(torch.zeros(1, 4, 8, 8), torch.tensor([0.5]), None)
    with pytest.raises(ValueError, match="r_timestep"):
        sd15(torch.zeros(1, 4, 8, 8), torch.tensor([0.5]), cond, r=torch.tensor([0.1]))


def test_logvar_head_is_added_zero_initialised_and_trains():
    net = tiny_net("sd15", enable_preprocessors=False, enable_logvar_linear=True).train()
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([0.2, 0.6], dtype=torch.float64)
    cond = {"prompt_embeds": torch.randn(2, 16, 32)}
    out, logvar = net(x, t, cond, return_logvar=True)
    assert logvar.shape == (2, 1) and torch.equal(logvar, torch.zeros(2, 1))
    (out.square().mean() + logvar.sum()).backward()
    assert net.logvar_linear.bias.grad.item() == 2.0  # d(sum logvar)/d bias over a batch of 2
    assert torch.equal(out, net.denoiser(x, t * 1000, cond["prompt_embeds"]).sample)
