"""FSDP2 over a diffusers-backed network with meta-device init (2 gloo processes): rank 1 builds Qwen-Image on the
meta device (its rotary tables rebuilt on the CPU), each transformer block becomes one FSDP unit, rank 0's weights
are broadcast, and every rank's forward equals the unsharded network's."""

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
    from fastgen.utils.distributed.fsdp import meta_init_context, model_to_fsdp

    with meta_init_context(True):
        net = tiny_net("qwen_image", seed=0, enable_preprocessors=False)
    assert all(p.is_meta for p in net.parameters()) == (rank == 1)
    holder = model_to_fsdp(_Holder(net), meta_init=True, min_num_params=1)
    x, t, cond = _inputs()
    with torch.no_grad():
        out, feats = net(x, t, cond, feature_indices={1})
    torch.save({"out": out, "feat": feats[0], "units": len(net.fsdp_units())}, os.path.join(out_dir, f"{rank}.pt"))
    del holder


@pytest.mark.slow  # two spawned processes each import diffusers + transformers
def test_fsdp_meta_init_forward_equals_unsharded(tmp_path):
    spawn_local(_worker, 2, args=(str(tmp_path),))
    ref_net = tiny_net("qwen_image", seed=0, enable_preprocessors=False)
    x, t, cond = _inputs()
    with torch.no_grad():
        ref, ref_feats = ref_net(x, t, cond, feature_indices={1})
    for rank in (0, 1):
        got = torch.load(os.path.join(tmp_path, f"{rank}.pt"))
        assert got["units"] == len(ref_net.denoiser.transformer_blocks)
        torch.testing.assert_close(got["out"], ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got["feat"], ref_feats[0], atol=1e-5, rtol=1e-5)
