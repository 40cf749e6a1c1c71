"""torch.compile block by block (`model.compile.per_block`, fastgen.utils.compile), single process.

The FSDP2 case (2 gloo processes, per block by default there) is in tests/test_compile_dist.py; whole-network
compile steps are in tests/test_speed.py.
"""

from __future__ import annotations

import torch
from test_speed import assert_same_step, edm_model, step_loss_and_grads
from torch import nn

from fastgen.configs.config import CompileConfig
from fastgen.utils.compile import compile_blocks, compiled_blocks, is_compiled


def test_per_block_compiled_step_equals_eager_and_keeps_the_keys(one_thread):
    eager_model = edm_model("sft", one_level=True)
    eager = step_loss_and_grads(eager_model)
    cfg = CompileConfig(networks=["net"], backend="aot_eager", dynamic=False, per_block=True)
    model = edm_model("sft", one_level=True, compile=cfg)
    units = model.net.fsdp_units()
    assert compiled_blocks(model.net) == len(units) >= 4 and model.net._compiled_call_impl is None
    assert is_compiled(model.net) and not is_compiled(eager_model.net)
    assert_same_step(eager, step_loss_and_grads(model), atol=1e-5)
    assert list(model.model_dict.state_dict()) == list(eager_model.model_dict.state_dict())
    assert compile_blocks(units, backend="aot_eager") == 0  # compiled once only


class _Block(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.proj = nn.Linear(width, 1)
        self.width = width

    def forward(self, x):
        return x + torch.tanh(self.proj(x[:, : self.width]))


def test_blocks_of_many_shapes_all_compile_and_alike_blocks_share_graphs():
    """12 blocks of 10 shapes: more than TorchDynamo's recompile_limit (8) per code object, which a shared class
    `forward` would exhaust (the rest running eagerly); with one cache per group of alike blocks every block is
    compiled, and the two repeated shapes reuse their group's graph."""
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    blocks = nn.ModuleList(_Block(2 + i % 10) for i in range(12))
    x = torch.randn(3, 12)

    def run(inp):
        for block in blocks:
            inp = block(inp)
        return inp

    with torch.no_grad():
        expected = run(x)
        assert compile_blocks(blocks, backend="eager", dynamic=False) == 12
        before = {k: counters["frames"][k] for k in ("total", "ok")}
        graphs = counters["stats"]["unique_graphs"]
        torch.testing.assert_close(run(x), expected, rtol=0, atol=0)
    assert counters["frames"]["total"] - before["total"] == counters["frames"]["ok"] - before["ok"] == 10
    assert counters["stats"]["unique_graphs"] - graphs == 10
