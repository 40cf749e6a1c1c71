"""torch.compile block by block (`model.compile.per_block`, fastgen.utils.compile), single process.

The FSDP2 case (2 gloo processes, per block by default there) is in tests/test_compile_dist.py; whole-network
compile steps are in tests/test_speed.py.
"""

from __future__ import annotations

import os

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


def test_image_inference_compiled_writes_the_eager_images_and_reports_images_per_second(tmp_path, capsys, one_thread):
    """scripts/inference/image_model_inference.py --compile: the 1-step student sampled through the compiled
    network (TorchDynamo's capture with the `eager` backend here, a one-level demo net; inductor by default) gives
    the eager run's images, and the run reports images/s."""
    import re

    import numpy as np
    from test_inference import DMD2_CONFIG, load_script, png

    from fastgen.cli import run_cli
    from fastgen.configs.experiments.FashionMNIST._common import fashion_mnist_net
    from fastgen.utils import instantiate

    torch.manual_seed(0)
    ckpt = tmp_path / "0000010.pth"
    net_cfg = fashion_mnist_net()
    net_cfg.channel_mult = [1]
    torch.save({"model": {"net": instantiate(net_cfg).state_dict()}, "iteration": 10}, ckpt)
    script = load_script()
    args = [f"--config={DMD2_CONFIG}", f"--ckpt_path={ckpt}", "--net_key=net", "--classes=0,7",
            "--num_samples_per_class=2", "--batch_size=4"]
    overrides = ["-", "model.net.channel_mult=[1]"]
    assert run_cli(script.main, [*args, f"--out_dir={tmp_path / 'eager'}", *overrides]) == 0
    capsys.readouterr()
    from torch._dynamo.utils import counters

    graphs = counters["stats"]["unique_graphs"]
    assert run_cli(script.main, [*args, f"--out_dir={tmp_path / 'compiled'}", "--compile",
                                 "--compile_backend=eager", *overrides]) == 0
    assert counters["stats"]["unique_graphs"] > graphs  # the network was captured, not run eagerly
    assert re.search(r"wrote 4 images in [0-9.]+ s \([0-9.]+ images/s\)", capsys.readouterr().err)
    names = sorted(os.listdir(tmp_path / "eager" / "images"))
    assert len(names) == 4 and names == sorted(os.listdir(tmp_path / "compiled" / "images"))
    for name in names:
        a, b = png(tmp_path / "eager" / "images" / name), png(tmp_path / "compiled" / "images" / name)
        assert np.abs(a.astype(np.int64) - b.astype(np.int64)).max() <= 1 and a.std() > 0
