"""A diffusers-backed family inside a method: raw images and prompts are encoded on the fly by the frozen encoders
(model.encode_batch), DMD2's generator and critic steps run with mapping conditions and CFG, and neither the encoders
nor their gradients reach the optimizers or the checkpointed state; and DMD2 learns there (its critic and generator
objectives fall on a fixed batch)."""

import pytest
import torch

from fastgen.configs.methods import config_dmd2
from fastgen.configs.net import SD15Config
from fastgen.methods import DMD2Model
from fastgen.networks.hf import SD15


def dmd2_sd15_config():
    config = config_dmd2.create_config()
    net = SD15Config.copy()
    for key, value in SD15.smoke_overrides(dict(net)).items():
        net[key] = value
    config.model.net = net
    config.model.discriminator = None
    config.model.gan_loss_weight_gen = 0.0
    config.model.guidance_scale = 2.0
    config.model.input_shape = [4, 8, 8]
    config.model.enable_preprocessors = True
    return config


def test_dmd2_on_tiny_sd15_encodes_raw_batches_and_keeps_encoders_out():
    torch.manual_seed(0)
    model = DMD2Model(dmd2_sd15_config().model)
    net = model.net
    assert net.has_preprocessors and not model.teacher.has_preprocessors  # only the student's encoders are built
    batch = {"real": torch.rand(2, 3, 16, 16) * 2 - 1, "condition": ["a red cat", "two dogs"]}
    data = model.encode_batch(batch)
    assert data["real"].shape == (2, 4, 8, 8) and isinstance(data["condition"], dict)
    assert torch.equal(data["neg_condition"]["prompt_embeds"], net.encode_text(["", ""])["prompt_embeds"])
    for iteration in (1, 5):  # critic step, then generator step (student_update_freq=5)
        loss_map, _ = model.single_train_step(data, iteration)
        assert torch.isfinite(loss_map["total_loss"])
        loss_map["total_loss"].backward()
    grads = [p.grad for p in model.net.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    for enc in net.encoders.values():
        if isinstance(enc, torch.nn.Module):
            assert all(p.grad is None and not p.requires_grad for p in enc.parameters())
    saved = {name: module.state_dict() for name, module in model.model_dict.items()}
    assert set(saved) >= {"net", "fake_score"}
    for name, state in saved.items():  # exactly the denoiser's tensors: no VAE / text encoder weights
        assert set(state) == {f"denoiser.{k}" for k in model.model_dict[name].denoiser.state_dict()}


def test_dmd2_on_tiny_sd15_learns_on_a_fixed_batch(one_thread):
    """DMD2's own alternating loop (4 critic steps, then 1 generator step) on one fixed batch, with the student's
    noise z and the critics' (t, eps) fixed (the same seed before every step), so each quantity below is a
    deterministic function of the weights. What the method's math guarantees, and what lr = 0 would leave unchanged:
    - critic: the fake score F is trained by gradient descent on exactly its denoising loss at the generator's samples
      (which move only slightly between critic steps), so that loss falls by a clear margin;
    - generator: a step is gradient descent on the VSD surrogate 0.5 * |G(z) - sg(G(z) - g)|^2 with the distribution
      matching gradient g = (F_x0 - T_x0) w held fixed, so the student's new samples lie closer to that step's
      target G_old(z) - g than the old ones (|g|^2): the samples move along -g, from the fake toward the teacher."""
    torch.manual_seed(0)
    config = dmd2_sd15_config().model
    config.fake_score_optimizer.lr = 1e-3
    config.net_optimizer.lr = 1e-5  # Adam's first steps move every weight by ~lr: larger ones overshoot the target
    model = DMD2Model(config)
    model.init_optimizers()
    data = model.encode_batch({"real": torch.rand(2, 3, 16, 16) * 2 - 1, "condition": ["a red cat", "two dogs"]})
    cond, neg = data["condition"], data["neg_condition"]

    def fixed_sample():  # generate() then sample_t_eps(), in the order both steps draw them
        torch.manual_seed(7)
        with torch.no_grad():
            model.set_trainable([])
            gen, _ = model.generate(data["real"], cond)
            return gen, *model.sample_t_eps(gen)

    def fake_score_loss():
        gen, t, eps = fixed_sample()
        with torch.no_grad():
            return model.fake_score_losses(gen, t, eps, cond)[0].item()

    def dmd_gradient():  # g of variational_score_distillation_loss, recomputed here from its definition
        gen, t, eps = fixed_sample()
        with torch.no_grad():
            x_t = model.schedule.forward_process(gen, eps, t)
            teacher = model.teacher_x0(x_t, t, cond, neg)
            fake = model.fake_score(x_t, t, condition=cond, fwd_pred_type="x0")
            weight = 1 / ((gen - teacher).abs().mean(dim=(1, 2, 3), keepdim=True) + 1e-6)
        return gen, (fake - teacher) * weight

    initial = fake_score_loss()
    ratios = []
    for iteration in range(1, 26):
        generator_step = model.is_generator_iteration(iteration)
        if generator_step:
            gen_old, grad = dmd_gradient()
        torch.manual_seed(7)
        loss_map, _ = model.single_train_step(data, iteration)
        loss_map["total_loss"].backward()
        model.optimizers_schedulers_step(iteration)
        model.optimizers_zero_grad(iteration)
        if generator_step:
            before = 0.5 * grad.pow(2).mean().item()
            assert loss_map["vsd_loss"].item() == pytest.approx(before, rel=1e-4)  # the step saw our (z, t, eps)
            after = 0.5 * (fixed_sample()[0] - (gen_old - grad)).pow(2).mean().item()
            ratios.append(after / before)
    final = fake_score_loss()
    assert final < 0.7 * initial, (initial, final)  # observed 1.17 -> 0.55
    assert len(ratios) == 5 and max(ratios) < 0.95, ratios  # observed 0.74 .. 0.91
