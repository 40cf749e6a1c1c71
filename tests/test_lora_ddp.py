"""LoRA students under DDP (2 gloo processes, the real trainer): only adapter gradients are all-reduced, the frozen
base stays bit-identical on every rank, and a LoRA KD run split over ranks follows the single-process run on the
same global batch. DMD2's two adapters on one base (student "net", fake score) alternate between steps, so each
pass leaves one adapter without gradients: DDP must cope (find_unused_parameters) and the ranks must stay equal."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save_file
from test_ddp import assert_close_dicts, full_weights, make_pairs, toy_kd_config, train
from test_lora import TOY_TARGETS, dmd2_config

from fastgen.configs.config import LoRAConfig
from fastgen.methods.lora import base_state_dict
from fastgen.utils import instantiate
from fastgen.utils.distributed.launch import spawn_local

WORLD = 2


def random_base(path: str, net_config) -> str:
    """A 'pretrained' ToyMLP (every layer non-zero) saved as the LoRA base."""
    torch.manual_seed(123)
    net = instantiate(net_config)
    for p in net.parameters():
        p.data.normal_(0, 0.3)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, path)
    return path


def lora_kd_config(out_dir: str, pairs: str, base: str, batch_size: int, parallel: str, name: str):
    config = toy_kd_config(out_dir, pairs, batch_size=batch_size, max_iter=4, parallel=parallel, name=name)
    config.model.pretrained_model_path = base
    config.model.lora = LoRAConfig(rank=4, target_modules=TOY_TARGETS)
    return config


def lora_dmd2_config(out_dir: str, base: str, name: str):
    config = dmd2_config(base)
    config.model.device = "cpu"
    config.dataloader_train.batch_size = 8
    config.trainer.max_iter, config.trainer.logging_iter = 10, 1000  # student_update_freq 5: generator at 5, 10
    config.trainer.save_ckpt_iter = config.trainer.validation_iter = 1000
    config.trainer.ddp = True
    config.trainer.checkpointer.save_dir = os.path.join(out_dir, name, "checkpoints")
    config.log_config.name = name
    return config


def adapters(model) -> dict[str, dict[str, torch.Tensor]]:
    return {name: full_weights(getattr(model, name)) for name in ("net", "fake_score") if hasattr(model, name)}


def _worker(rank: int, out_dir: str, pairs: str, kd_base: str, dmd2_base: str) -> None:
    from fastgen.utils.distributed.ddp import unwrap_ddp

    os.environ["FASTGEN_OUTPUT_ROOT"] = out_dir
    kd = unwrap_ddp(train(lora_kd_config(out_dir, pairs, kd_base, 8, "ddp", "kd_ddp")))
    dmd2 = unwrap_ddp(train(lora_dmd2_config(out_dir, dmd2_base, "dmd2_ddp")))
    result = {"kd": adapters(kd), "dmd2": adapters(dmd2), "dmd2_base": base_state_dict(dmd2.lora_base)}
    torch.save(result, os.path.join(out_dir, f"lora_rank{rank}.pt"))


@pytest.mark.slow
def test_lora_students_under_ddp_match_one_process_and_keep_the_base(tmp_path):
    from test_lora import toy_base_file

    pairs = make_pairs(str(tmp_path / "pairs.safetensors"))
    kd_base = random_base(str(tmp_path / "kd_base.safetensors"),
                          toy_kd_config(str(tmp_path), pairs, 8, 1).model.net)
    dmd2_base, _ = toy_base_file(tmp_path)
    spawn_local(_worker, WORLD, args=(str(tmp_path), pairs, kd_base, dmd2_base))
    os.environ["FASTGEN_OUTPUT_ROOT"] = str(tmp_path)
    single = adapters(train(lora_kd_config(str(tmp_path), pairs, kd_base, 16, "none", "kd_single")))
    ranks = [torch.load(tmp_path / f"lora_rank{r}.pt", weights_only=True) for r in range(WORLD)]
    from safetensors.torch import load_file

    dmd2_pretrained = load_file(dmd2_base)
    for got in ranks:
        # KD: 2 ranks x 8 == 1 process x 16 (adapter gradients averaged over ranks), and training moved B from 0
        assert_close_dicts(got["kd"]["net"], single["net"], 1e-5)
        assert max(v.abs().max().item() for k, v in got["kd"]["net"].items() if "lora_B" in k) > 1e-4
        # DMD2: both adapters trained, the shared base untouched
        for name in ("net", "fake_score"):
            assert max(v.abs().max().item() for k, v in got["dmd2"][name].items() if "lora_B" in k) > 1e-4
        assert got["dmd2_base"].keys() == dmd2_pretrained.keys()
        assert all(torch.equal(got["dmd2_base"][k], dmd2_pretrained[k]) for k in dmd2_pretrained)
    for name in ("net", "fake_score"):  # rank 0's broadcast start + all-reduced gradients: identical adapters
        assert_close_dicts(ranks[1]["dmd2"][name], ranks[0]["dmd2"][name], 0.0)
