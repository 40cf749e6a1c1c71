"""Memory switches of the diffusers-backed video networks on one process (the 2-process FSDP2 side is in
tests/test_hf_fsdp.py): activation checkpointing of the transformer blocks really recomputes them (same gradients,
far fewer saved activations, feature taps intact), and `encoders_device="cpu"` keeps the frozen encoders on the CPU
while their outputs go to the training device."""

import pytest
import torch
from _hf_models import tiny_net

PROMPTS = ["a red fox running", "waves on a beach"]
FAMILY_BLOCKS = {"wan": "blocks", "cogvideox": "transformer_blocks"}


def _inputs(family):
    g = torch.Generator().manual_seed(4)
    # CogVideoX 2B: sin-cos positions for the tiny config's 5 latent frames and its full 226 text tokens
    frames, tokens = (2, 6) if family == "wan" else (5, 226)
    x = torch.randn(2, 4, frames, 8, 8, generator=g)
    return x, torch.tensor([0.3, 0.8], dtype=torch.float64), {"prompt_embeds": torch.randn(2, tokens, 32, generator=g)}


def _step(net, family):
    """Forward (output + the features of block 1) and backward; returns the loss, the gradients, the bytes autograd
    saved for backward, and how often the first block's self-attention ran in the forward and in the backward."""
    calls = {"forward": 0, "backward": 0}
    phase = ["forward"]
    attn = getattr(net.denoiser, FAMILY_BLOCKS[family])[0].attn1
    handle = attn.register_forward_hook(lambda *_: calls.__setitem__(phase[0], calls[phase[0]] + 1))
    saved = [0]

    def pack(t):
        saved[0] += t.numel() * t.element_size()
        return t

    x, t, cond = _inputs(family)
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out, (feat,) = net(x, t, cond, feature_indices={1})
        loss = out.square().mean() + feat.mean()
        phase[0] = "backward"
        loss.backward()
    finally:
        handle.remove()
    grads = {name: p.grad for name, p in net.named_parameters() if p.grad is not None}
    return loss.detach(), grads, saved[0], calls


@pytest.mark.parametrize("family", ["wan", "cogvideox"])
def test_activation_checkpointing_recomputes_the_blocks_with_the_same_gradients(family, one_thread):
    plain = tiny_net(family, seed=0, enable_preprocessors=False).train()
    ckpt = tiny_net(family, seed=0, enable_preprocessors=False).train()
    blocks = getattr(ckpt.denoiser, FAMILY_BLOCKS[family])
    assert ckpt.enable_activation_checkpointing() == len(blocks) == len(ckpt.fsdp_units())
    assert ckpt.enable_activation_checkpointing() == 0  # idempotent
    assert set(ckpt.state_dict()) == set(plain.state_dict())
    loss0, grads0, saved0, calls0 = _step(plain, family)
    loss1, grads1, saved1, calls1 = _step(ckpt, family)
    assert calls0 == {"forward": 1, "backward": 0} and calls1 == {"forward": 1, "backward": 1}
    assert saved1 < 0.35 * saved0, (saved1, saved0)
    assert loss1.item() == loss0.item() and grads1.keys() == grads0.keys()
    for name, grad in grads0.items():
        torch.testing.assert_close(grads1[name], grad, atol=1e-6, rtol=1e-6, msg=name)
    with torch.no_grad():  # no graph: no checkpointing either, same outputs
        x, t, cond = _inputs(family)
        torch.testing.assert_close(ckpt(x, t, cond), plain(x, t, cond), atol=0, rtol=0)


def test_encoders_device_cpu_keeps_the_encoders_on_the_cpu(one_thread):
    """The meta device stands in for the accelerator (this machine has none): prompts are encoded by a text encoder
    that stays on the CPU, and the embeddings arrive on the training device. Without the switch the encoders follow
    the inputs' device (what the switch prevents)."""
    seen = []
    offload = tiny_net("wan", seed=0, encoders_device="cpu")
    offload.encoders["text_encoder"].register_forward_pre_hook(lambda m, args: seen.append(args[0].device))
    on_cpu = offload.encode_text(PROMPTS, device="cpu")["prompt_embeds"]
    on_meta = offload.encode_text(PROMPTS, device="meta")["prompt_embeds"]
    assert on_meta.is_meta and on_meta.shape == on_cpu.shape and on_cpu.abs().sum() > 0
    assert [d.type for d in seen] == ["cpu", "cpu"]
    assert {p.device.type for name in ("text_encoder", "vae") for p in offload.encoders[name].parameters()} == {"cpu"}
    assert offload.encoders.device == torch.device("cpu")

    follow = tiny_net("wan", seed=0)
    with pytest.raises(RuntimeError, match="meta"):  # T5's padding-mask check cannot run on the meta device
        follow.encode_text(PROMPTS, device="meta")
    assert {p.device.type for p in follow.encoders["text_encoder"].parameters()} == {"meta"}


@pytest.mark.parametrize("name", ["WanT2V/config_sft_14b", "WanT2V/config_dmd2_14b", "WanV2V/config_sft_14b"])
def test_14b_video_configs_turn_on_the_scale_switches(name):
    import importlib

    config = importlib.import_module(f"fastgen.configs.experiments.{name.replace('/', '.')}").create_config()
    model = config.model
    assert config.trainer.fsdp and model.fsdp_meta_init and model.activation_checkpointing
    assert (model.precision, model.precision_fsdp) == ("bfloat16", "float32")
    assert "14B" in model.net.model_id
    assert getattr(model.net, "encoders_device", None) == ("cpu" if name.startswith("WanV2V") else None)
