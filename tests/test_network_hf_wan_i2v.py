"""Wan 2.2 TI2V-5B image-to-video and MeanFlow's r embedding on Wan (HFNetwork):
- I2V: forward == the bare transformer fed the image latent in frame 0 with per-token timesteps (frame 0 at 0), the
  first frame's x0 is the image latent in every call, teacher sampling == WanImageToVideoPipeline(expand_timesteps),
  training batches take the image from their first frame and that frame carries no loss or gradient;
- r: a zero-output copy of the time embedder (the net equals the one without r at init, for r = None and any r),
  trained it makes the output depend on r; MeanFlow trains a tiny Wan through its finite-difference JVP."""

import diffusers
import pytest
import torch
from _hf_models import tiny_net
from PIL import Image

PROMPTS = ["a red cat", "two dogs"]


@pytest.fixture(scope="module")
def wan22_i2v():
    return tiny_net("wan22_i2v", seed=12)


def _image(seed: int, size: int = 16):
    pixels = torch.randint(0, 256, (size, size, 3), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)
    return Image.fromarray(pixels.numpy()), pixels.permute(2, 0, 1)[None].float() / 255 * 2 - 1


def test_wan22_i2v_forward_keeps_the_image_frame_and_sampling_equals_pipeline(wan22_i2v):
    net = wan22_i2v
    pil, image = _image(13)
    cond_img = net.encode_image_condition(image, num_frames=9)["first_frame_cond"]
    vae = net.encoders["vae"]
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    ref_latent = (vae.encode(image[:, :, None]).latent_dist.mode() - mean) / std
    assert cond_img.shape == (1, 4, 1, 4, 4)  # 16 px / 4 (the residual VAE) = 4x4 latents, one frame
    torch.testing.assert_close(cond_img, ref_latent, atol=1e-5, rtol=1e-5)
    cond = {**net.encode_text(PROMPTS), "first_frame_cond": cond_img.expand(2, -1, -1, -1, -1)}

    torch.manual_seed(14)
    x, t = torch.randn(2, 4, 5, 4, 4), torch.tensor([0.3, 0.8], dtype=torch.float64)
    tokens = (t * 1000).float()[:, None, None].expand(2, 5, 4).clone()  # 5 frames of 2x2 tokens, frame-major
    tokens[:, 0] = 0  # the image frame is clean
    with torch.no_grad():
        v = net(x, t, cond)
        bare = net.denoiser(hidden_states=torch.cat([cond["first_frame_cond"], x[:, :, 1:]], 2),
                            timestep=tokens.reshape(2, 20), encoder_hidden_states=cond["prompt_embeds"],
                            return_dict=False)[0]
        assert torch.equal(v[:, :, 1:], bare[:, :, 1:])
        x0 = net(x, t, cond, fwd_pred_type="x0")
    assert torch.equal(x0[:, :, :1], cond["first_frame_cond"])  # the image frame's x0 is the image
    torch.testing.assert_close(x0[:, :, 1:], (x - t.view(-1, 1, 1, 1, 1).float() * bare)[:, :, 1:], atol=1e-5,
                               rtol=1e-5)

    enc = net.encoders
    pipe = diffusers.WanImageToVideoPipeline(
        transformer=net.denoiser, vae=enc["vae"], text_encoder=enc["text_encoder"], tokenizer=enc["tokenizer"],
        scheduler=diffusers.UniPCMultistepScheduler.from_config(net.scheduler_config), expand_timesteps=True)
    pipe.set_progress_bar_config(disable=True)
    noise = torch.randn(2, 4, 5, 4, 4, generator=torch.Generator().manual_seed(15))
    neg = net.encode_text(["", ""])
    # prompt embeddings passed in: diffusers 0.42's I2V prompt cleaning needs the optional ftfy package
    ref = pipe(image=pil, prompt_embeds=cond["prompt_embeds"], negative_prompt_embeds=neg["prompt_embeds"],
               num_inference_steps=3, guidance_scale=5.0, latents=noise, height=16, width=16, num_frames=9,
               output_type="latent").frames
    ours = net.sample(noise, cond, neg_condition=neg, guidance_scale=5.0, num_steps=3)
    assert (ours - ref).abs().max() <= 1e-4 and (ours - noise).abs().max() > 0.1
    assert torch.equal(ours[:, :, :1], cond["first_frame_cond"])  # the video starts with the image


def test_wan22_i2v_training_batch_conditions_on_the_first_frame_which_carries_no_loss(wan22_i2v):
    net = wan22_i2v
    video = torch.rand(2, 3, 9, 16, 16) * 2 - 1
    out = net.preprocess_batch({"real": video, "condition": PROMPTS})
    image = net.encode_image_condition(video[:, :, 0], 9)["first_frame_cond"]
    for key in ("condition", "neg_condition"):  # CFG's negative differs only in its prompt
        assert torch.equal(out[key]["first_frame_cond"], image)
    real = out["real"]
    assert real.shape == (2, 4, 5, 4, 4) and torch.equal(real[:, :, :1], image)  # the video starts with its image
    torch.manual_seed(16)
    eps, t = torch.randn_like(real), torch.tensor([0.2, 0.9], dtype=torch.float64)
    tt = t.view(-1, 1, 1, 1, 1).float()
    x_t = (1 - tt) * real + tt * eps
    net.zero_grad()
    err = (net(x_t, t, out["condition"]) - (eps - real)).pow(2)  # flow matching: target eps - x0
    assert err[:, :, 0].max() < 1e-8 and err[:, :, 1:].mean() > 0.1
    err[:, :, 0].sum().backward()  # the image frame's prediction does not depend on the weights
    assert all(p.grad is None or not p.grad.any() for p in net.parameters())
    with pytest.raises(ValueError, match=r"first_frame_cond = the image latent \[B, 4, 1, 4, 4\]"):
        net(x_t, t, {**out["condition"], "first_frame_cond": real})


# --- MeanFlow's r embedding ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wan_pair():
    """A tiny Wan and the same weights with an r embedding."""
    base = tiny_net("wan", seed=17)
    with_r = tiny_net("wan", seed=17, r_timestep=True, enable_preprocessors=False)
    missing = with_r.load_state_dict(base.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("r_embedder.") for k in missing)  # checkpointed with the net
    return base, with_r


def test_wan_r_embedding_is_exact_at_init_and_trained_makes_r_matter(wan_pair):
    base, net = wan_pair
    torch.manual_seed(18)
    x, t = torch.randn(2, 4, 3, 8, 8), torch.tensor([0.4, 0.9], dtype=torch.float64)
    cond = base.encode_text(PROMPTS)
    with torch.no_grad():
        ref = base(x, t, cond)
        for r in (None, t, 0.25 * t):
            assert torch.equal(net(x, t, cond, r=r), ref)
    with pytest.raises(ValueError, match="no second-time"):
        base(x, t, cond, r=t)
    emb = net.r_embedder
    assert torch.equal(emb.linear_1.weight, net.denoiser.condition_embedder.time_embedder.linear_1.weight)
    opt = torch.optim.SGD(emb.parameters(), lr=1.0)
    net(x, t, cond, r=0.25 * t).pow(2).mean().backward()
    assert emb.linear_2.weight.grad.abs().sum() > 0
    opt.step()
    net.zero_grad()
    with torch.no_grad():
        moved = net(x, t, cond, r=0.25 * t)
        assert (moved - ref).abs().max() > 1e-4 and not torch.equal(net(x, t, cond, r=0.5 * t), moved)


def test_mean_flow_trains_a_tiny_wan_through_its_jvp(one_thread):
    """WanT2V/config_mf on tiny Wans: du/dt by finite differences (the config's) agrees with torch.func.jvp (exact
    forward AD, attention on the math kernel), and one training step moves the loss."""
    from fastgen.configs.experiments.WanT2V import config_mf
    from fastgen.methods import MeanFlowModel
    from fastgen.methods.consistency_model.jvp import jvp
    from fastgen.networks.hf import Wan

    config = config_mf.create_config().model
    for node in (config.net, config.teacher):
        for key, value in Wan.smoke_overrides({}).items():
            node[key] = value
    config.input_shape = [4, 3, 8, 8]
    config.loss_config.tangent_warmup_steps = 0
    config.net_optimizer.lr = 1e-3
    torch.manual_seed(19)
    model = MeanFlowModel(config)
    model.init_optimizers()
    assert model.net.r_embedder is not None and model.config.loss_config.use_jvp_finite_diff
    data = model.encode_batch({"real": torch.rand(2, 3, 5, 16, 16) * 2 - 1, "condition": PROMPTS})

    x, t, r = data["real"], torch.tensor([0.7, 0.4], dtype=torch.float64), torch.tensor([0.2, 0.1], dtype=torch.float64)
    primals, tangents = (x, t, r), (torch.randn_like(x), torch.ones_like(t), torch.zeros_like(r))

    def u(*args):
        return model.u(model.net, *args, data["condition"])

    exact = jvp(u, primals, tangents, "autograd")[1]
    # a step well below the period of the fastest time feature (sin(1000 t): 6e-3), unlike the config's 5e-3
    finite = jvp(u, primals, tangents, "finite_diff", finite_diff_eps=1e-4)[1]
    assert (finite - exact).norm() < 1e-2 * exact.norm() and exact.norm() > 0

    def step():
        torch.manual_seed(20)  # the same (t, r, eps) every time
        loss_map, _ = model.single_train_step(data, 1)
        return loss_map

    first = step()
    assert torch.isfinite(first["total_loss"]) and first["jvp_norm"] > 0
    first["total_loss"].backward()
    model.optimizers_schedulers_step(1)
    model.optimizers_zero_grad(1)
    with torch.no_grad():
        second = step()
    assert torch.isfinite(second["total_loss"]) and second["v_loss"] != first["v_loss"]


def test_wan22_i2v_r_embedding_per_token(wan22_i2v):
    """Per-token time (Wan 2.2): the r embedding follows the token layout; the image frame stays the image."""
    net = tiny_net("wan22_i2v", seed=12, r_timestep=True, time_cond_type="diff", enable_preprocessors=False)
    net.load_state_dict(wan22_i2v.state_dict(), strict=False)
    torch.manual_seed(21)
    x, t = torch.randn(2, 4, 5, 4, 4), torch.tensor([0.5, 0.9], dtype=torch.float64)
    cond = {**wan22_i2v.encode_text(PROMPTS), "first_frame_cond": torch.randn(2, 4, 1, 4, 4)}
    with torch.no_grad():
        ref = wan22_i2v(x, t, cond)
        assert torch.equal(net(x, t, cond, r=0.5 * t), ref)
        torch.nn.init.normal_(net.r_embedder.linear_2.weight, std=0.1)  # as if trained
        a, b = net(x, t, cond, r=0.5 * t), net(x, t, cond, r=t[:, None].expand(2, 5) * 0.2)
        assert (a - ref)[:, :, 1:].abs().max() > 1e-4 and not torch.equal(a, b)
        x0 = net(x, t, cond, r=0.5 * t, fwd_pred_type="x0")
    assert torch.equal(x0[:, :, :1], cond["first_frame_cond"])
