"""A diffusers-backed family inside a method: raw images and prompts are encoded on the fly by the frozen encoders
(model.encode_batch), DMD2's generator and critic steps run with mapping conditions and CFG, and neither the encoders
nor their gradients reach the optimizers or the checkpointed state."""

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
