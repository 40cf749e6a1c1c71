"""FSDP2 over diffusers-backed networks with meta-device init (2 gloo processes, spawned once for the module): rank 1
builds on the meta device (Qwen-Image's rotary tables rebuilt on the CPU), each transformer block becomes one FSDP
unit, rank 0's weights are broadcast, and

* Qwen-Image: every rank's forward equals the unsharded network's;
* Wan and CogVideoX: activation checkpointing of the blocks gives the same loss and gradients as without (and as
  the unsharded network's rank-averaged gradients), through the feature taps too (early stop included), while
  saving far fewer activations; the encoders come out real on the meta-device rank;
* Wan, as the 14B configs run it: bf16 weights with gradients reduced in float32.
"""

import functools
import os

import pytest
import torch
from _hf_models import tiny_net
from torch import nn

from fastgen.utils.distributed.launch import spawn_local

INPUT_SEED = 3


def _inputs():
    g = torch.Generator().manual_seed(INPUT_SEED)
    x = torch.randn(2, 4, 8, 8, generator=g)
    cond = {"prompt_embeds": torch.randn(2, 5, 32, generator=g), "prompt_embeds_mask": torch.ones(2, 5, dtype=torch.long)}
    return x, torch.tensor([0.3, 0.8], dtype=torch.float64), cond


class _Holder(nn.Module):
    """The minimum of a FastGenModel that model_to_fsdp reads: model_dict, device, precision."""

    def __init__(self, net):
        super().__init__()
        self.net, self.device, self.precision, self.precision_amp = net, torch.device("cpu"), torch.float32, None

    @property
    def model_dict(self):
        return nn.ModuleDict({"net": self.net})


def _worker(rank: int, out_dir: str) -> None:
    """Both parts in one spawn: the processes' start-up (importing diffusers + transformers) dominates."""
    runs = {"qwen": _qwen_worker(rank), "video": _video_worker(rank)}
    torch.save(runs, os.path.join(out_dir, f"{rank}.pt"))


@pytest.fixture(scope="module")
def fsdp_runs(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("hf_fsdp")
    spawn_local(_worker, 2, args=(str(out_dir),))
    return [torch.load(os.path.join(out_dir, f"{rank}.pt")) for rank in (0, 1)]


def _qwen_worker(rank: int) -> dict:
    from fastgen.utils.distributed.fsdp import meta_init_context, model_to_fsdp

    with meta_init_context(True):
        net = tiny_net("qwen_image", seed=0, enable_preprocessors=False)
    assert all(p.is_meta for p in net.parameters()) == (rank == 1)
    holder = model_to_fsdp(_Holder(net), meta_init=True, min_num_params=1)
    x, t, cond = _inputs()
    with torch.no_grad():
        out, feats = net(x, t, cond, feature_indices={1})
    del holder
    return {"out": out, "feat": feats[0], "units": len(net.fsdp_units())}


@pytest.mark.slow  # two spawned processes each import diffusers + transformers
def test_fsdp_meta_init_forward_equals_unsharded(fsdp_runs):
    ref_net = tiny_net("qwen_image", seed=0, enable_preprocessors=False)
    x, t, cond = _inputs()
    with torch.no_grad():
        ref, ref_feats = ref_net(x, t, cond, feature_indices={1})
    for runs in fsdp_runs:
        got = runs["qwen"]
        assert got["units"] == len(ref_net.denoiser.transformer_blocks)
        torch.testing.assert_close(got["out"], ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got["feat"], ref_feats[0], atol=1e-5, rtol=1e-5)


# -- video nets under FSDP2: activation checkpointing, feature taps, bf16 with float32 reduction -------------------

ENCODER_SEED = 5
FEATURE_MODES = ("features", "early")  # output + a tapped block's features; only the tapped features (early stop)
VIDEO = {"wan": ("blocks", 2, 5), "cogvideox": ("transformer_blocks", 5, 226)}  # blocks, latent frames, text tokens


def _video_inputs(family: str, rank: int):
    """Each rank its own batch, so the gradients only match the reference if FSDP2 averages them."""
    _, frames, tokens = VIDEO[family]
    g = torch.Generator().manual_seed(INPUT_SEED + rank)
    x = torch.randn(2, 4, frames, 8, 8, generator=g)
    cond = {"prompt_embeds": torch.randn(2, tokens, 32, generator=g)}
    return x, torch.tensor([0.3, 0.8], dtype=torch.float64) + 0.1 * rank, cond


def _video_loss(net, family: str, rank: int, mode: str):
    x, t, cond = _video_inputs(family, rank)
    if mode == "early":
        (feat,) = net(x, t, cond, feature_indices={0}, return_features_early=True)
        return feat.square().mean()
    out, (feat,) = net(x, t, cond, feature_indices={1})
    return out.square().mean() + feat.mean()


def _saved_bytes(fn):
    """fn()'s result and the bytes of tensors autograd saved for backward while it ran."""
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        result = fn()
    return result, total[0]


def _full_grads(net) -> dict:
    return {name: (p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad).detach().clone()
            for name, p in net.named_parameters() if p.grad is not None}


def _video_fsdp(family: str, precision=torch.float32, precision_fsdp=None):
    """A tiny video net sharded as the trainer does it: built under meta init (rank 1 on the meta device, encoders included:
    they must come out real), cast to `precision` (FastGenModel.build_net), then model_to_fsdp."""
    from fastgen.utils.distributed.fsdp import meta_init_context, model_to_fsdp

    with meta_init_context(True):
        net = tiny_net(family, seed=0, enable_preprocessors=False)
        torch.manual_seed(ENCODER_SEED)  # the same random encoders on both ranks (pretrained ones load equal)
        net.init_preprocessors()
    holder = _Holder(net.to(dtype=precision))
    holder.precision = precision
    model_to_fsdp(holder, precision_fsdp=precision_fsdp, meta_init=True, min_num_params=1)
    return net.train()


def _video_worker(rank: int) -> dict:
    runs = {family: _checkpointing_runs(family, rank) for family in VIDEO}
    # the 14B configs: bf16 weights (model.precision), gradients reduced in float32 (model.precision_fsdp)
    bf16 = _video_fsdp("wan", torch.bfloat16, "float32")
    bf16.enable_activation_checkpointing()
    loss = _video_loss(bf16, "wan", rank, "features")
    loss.backward()
    group = bf16.denoiser.blocks[1]._get_fsdp_state()._fsdp_param_group
    runs["bf16"] = {"loss": loss.detach(), "grads": _full_grads(bf16),
                    "reduce_dtypes": {p.reduce_dtype for p in group.fsdp_params},
                    "grad_dtypes": {p.grad.dtype for p in bf16.parameters() if p.grad is not None}}
    return runs


def _checkpointing_runs(family: str, rank: int) -> dict:
    """Loss, full gradients and saved-activation bytes per feature mode, without then with checkpointing."""
    net = _video_fsdp(family)
    runs = {"encoded": net.encode_text(["a cat"], device="cpu")["prompt_embeds"]}
    for ac in (False, True):
        if ac:
            runs["wrapped"] = net.enable_activation_checkpointing()
        for mode in FEATURE_MODES:
            net.zero_grad(set_to_none=True)
            loss, saved = _saved_bytes(functools.partial(_video_loss, net, family, rank, mode))
            loss.backward()
            runs[ac, mode] = {"loss": loss.detach(), "grads": _full_grads(net), "saved": saved}
    return runs


def _reference(family: str, mode: str):
    """Unsharded network: per-rank losses and the rank-averaged gradients FSDP2 should produce."""
    net = tiny_net(family, seed=0, enable_preprocessors=False).train()
    losses = []
    for rank in (0, 1):
        loss = _video_loss(net, family, rank, mode) / 2
        loss.backward()
        losses.append(2 * loss.detach())
    return losses, _full_grads(net)


@pytest.mark.slow  # two spawned processes each import diffusers + transformers
@pytest.mark.parametrize("family", list(VIDEO))
def test_fsdp_activation_checkpointing_same_gradients(fsdp_runs, family):
    ref_net = tiny_net(family, seed=0, enable_preprocessors=False)
    torch.manual_seed(ENCODER_SEED)
    ref_net.init_preprocessors()
    ref_encoded = ref_net.encode_text(["a cat"], device="cpu")["prompt_embeds"]
    refs = {mode: _reference(family, mode) for mode in FEATURE_MODES}
    for rank, runs in enumerate(run["video"][family] for run in fsdp_runs):
        assert runs["wrapped"] == len(getattr(ref_net.denoiser, VIDEO[family][0]))
        torch.testing.assert_close(runs["encoded"], ref_encoded, atol=1e-6, rtol=1e-6)
        for mode in FEATURE_MODES:
            ref_losses, ref_grads = refs[mode]
            plain, ckpt = runs[False, mode], runs[True, mode]
            torch.testing.assert_close(plain["loss"], ref_losses[rank], atol=1e-5, rtol=1e-5)
            assert ckpt["loss"].item() == plain["loss"].item()
            assert ckpt["grads"].keys() == plain["grads"].keys() == ref_grads.keys()
            for name, grad in plain["grads"].items():
                torch.testing.assert_close(ckpt["grads"][name], grad, atol=1e-5, rtol=1e-5, msg=name)
                torch.testing.assert_close(grad, ref_grads[name], atol=1e-5, rtol=1e-5, msg=name)
            # checkpointing really dropped the blocks' activations (they are recomputed in backward)
            assert ckpt["saved"] < 0.5 * plain["saved"], (mode, ckpt["saved"], plain["saved"])


@pytest.mark.slow
def test_fsdp_bf16_weights_reduce_gradients_in_float32(fsdp_runs):
    for runs in (run["video"] for run in fsdp_runs):
        bf16, fp32 = runs["bf16"], runs["wan"][True, "features"]
        assert bf16["reduce_dtypes"] == {torch.float32} and bf16["grad_dtypes"] == {torch.bfloat16}
        # bf16 compute: close to the float32 run, but not equal to it
        torch.testing.assert_close(bf16["loss"], fp32["loss"], atol=0, rtol=3e-2)
        diff = max((bf16["grads"][k].float() - g).abs().max().item() for k, g in fp32["grads"].items())
        scale = max(g.abs().max().item() for g in fp32["grads"].values())
        assert 0 < diff < 0.05 * scale, (diff, scale)
