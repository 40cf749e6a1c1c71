"""FSDP2 through the real trainer on 2 gloo processes.

- toy KD student sharded per block: same weights (and EMA) as the single-process run of the same global batch,
  with and without gradient accumulation (set_requires_gradient_sync), and built with meta-device init on rank 1;
- several networks in one method (student + frozen teacher + a second trainable network with its own optimizer,
  updated on alternating iterations like DMD2's fake score): all sharded, all equal to the single-process run;
- the 2-D (replicate, shard) mesh (HSDP) trains to the same weights; its divisibility error is clear;
- meta_init_context puts only rank != 0 on the meta device; kill-and-resume (sharded DCP checkpoint) is exact;
- DMD2 (student, fake score, discriminator, exact teacher) shards every trained network and resumes exactly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import pytest
import torch
from test_ddp import assert_close_dicts, full_weights, make_pairs, toy_kd_config

from fastgen.methods.model import FastGenModel
from fastgen.utils.distributed.launch import spawn_local

WORLD = 2
ATOL = 1e-5


class TwoNetKD(FastGenModel):
    """Test method with three networks: student `net` (regresses the teacher pairs), frozen `teacher` (its output
    feeds the student loss), and trainable `fake_score` (regresses the student's detached output), stepped on
    alternate iterations like DMD2's student / fake-score updates. Deterministic given the batch."""

    needs_teacher = True
    extra_checkpointed = ("fake_score",)

    def build_model(self) -> None:
        super().build_model()
        self.fake_score = self.build_net(self.config.net).train().requires_grad_(True)

    def init_optimizers(self) -> None:
        super().init_optimizers()
        self.add_optimizer("fake_score", self.fake_score, self.config.net_optimizer, self.config.net_scheduler)

    def active_optimizer_names(self, iteration: int) -> list[str]:
        return ["net"] if iteration % 2 else ["fake_score"]

    def single_train_step(self, data: Mapping[str, Any], iteration: int) -> tuple[dict, dict]:
        schedule = self.net.noise_scheduler
        x = data["noise"] * schedule.max_sigma
        t = torch.full((x.shape[0],), schedule.max_t, dtype=torch.float64)
        with torch.no_grad():
            teacher_x0 = self.teacher(x, t, fwd_pred_type="x0")
        target = 0.5 * (data["real"] + teacher_x0)
        if iteration % 2:
            gen = self.net(x, t, fwd_pred_type="x0")
            loss = 0.5 * (gen - target).square().mean()
        else:
            with torch.no_grad():
                gen = self.net(x, t, fwd_pred_type="x0")
            loss = 0.5 * (self.fake_score(gen, t * 0 + 1.0, fwd_pred_type="x0") - target).square().mean()
        return {"total_loss": loss}, {}


def _with_ema(config) -> None:
    from fastgen.configs.callbacks import EMA_CALLBACK

    config.model.use_ema = True
    config.trainer.callbacks.update(EMA_CALLBACK)
    config.trainer.callbacks.ema.type = "constant"
    config.trainer.callbacks.ema.beta = 0.5


def _two_net(config) -> None:
    from fastgen.utils import LazyCall as L

    config.model_class = L("test_fsdp.TwoNetKD")(config=None)


def _train(config) -> FastGenModel:
    """Like train.py: rank != 0 builds on the meta device when model.fsdp_meta_init (rank 0's weights win)."""
    from fastgen.trainer import Trainer
    from fastgen.utils import distributed as dist_utils
    from fastgen.utils import instantiate
    from fastgen.utils.distributed.fsdp import meta_init_context

    torch.manual_seed(1234 + dist_utils.get_rank())
    with meta_init_context(config.model.fsdp_meta_init):
        model = instantiate(config.model_class, config=config.model)
    if config.model.fsdp_meta_init:
        on_meta = any(p.is_meta for p in model.net.parameters())
        assert on_meta == (dist_utils.get_rank() != 0), "meta init: only ranks != 0 build on the meta device"
    Trainer(config).run(model)
    return model


def _hsdp(config) -> None:
    config.trainer.fsdp_sharding_group_size = 1  # 2-D mesh: 2 replicas x 1 shard


def _runs() -> dict:
    """name -> (batch_size, batch_size_global, config edits); the single-process reference uses batch 16."""
    return {
        "plain": (8, None, []),
        "accum": (4, 16, []),
        "meta_ema": (8, None, [_with_ema, "meta"]),
        "two_net": (8, None, [_two_net]),
        "hsdp": (8, None, [_hsdp]),
    }


def _configure(out_dir, pairs, name, batch, batch_global, edits, parallel):
    config = toy_kd_config(out_dir, pairs, batch, max_iter=4, parallel=parallel, batch_size_global=batch_global,
                           name=f"{name}_{parallel}")
    for edit in edits:
        if edit == "meta":
            config.model.fsdp_meta_init = parallel == "fsdp"
        else:
            edit(config)
    return config


def _weights(model) -> dict:
    return {name: full_weights(module) for name, module in model.model_dict.items()}


def _fsdp_worker(rank: int, out_dir: str, pairs: str) -> None:
    from torch.distributed.fsdp import FSDPModule

    os.environ["FASTGEN_OUTPUT_ROOT"] = out_dir
    results = {}
    for name, (batch, batch_global, edits) in _runs().items():
        model = _train(_configure(out_dir, pairs, name, batch, batch_global, edits, "fsdp"))
        # every network is sharded per block except EMA copies, which stay full on each rank
        assert isinstance(model.net, FSDPModule) and isinstance(model.net.blocks[0], FSDPModule)
        assert all(not hasattr(p, "full_tensor") for p in getattr(model, "ema", torch.nn.Linear(1, 1)).parameters())
        if model.teacher is not None:
            assert isinstance(model.teacher, FSDPModule) and isinstance(model.fake_score, FSDPModule)
            assert all(not p.requires_grad for p in model.teacher.parameters())
        results[name] = _weights(model)
    # kill-and-resume under FSDP2 (sharded DCP checkpoint at iteration 2, new model and trainer) == uninterrupted
    _train(toy_kd_config(out_dir, pairs, 8, max_iter=2, parallel="fsdp", save_ckpt_iter=2, name="resumed"))
    results["resumed"] = _weights(_train(toy_kd_config(out_dir, pairs, 8, max_iter=4, parallel="fsdp",
                                                       name="resumed")))
    assert os.path.isfile(os.path.join(out_dir, "resumed", "checkpoints", "0000002", ".metadata"))
    torch.save(results, os.path.join(out_dir, f"fsdp_rank{rank}.pt"))
    _check_meshes(rank)


def _check_meshes(rank: int) -> None:
    from fastgen.utils.distributed.fsdp import build_device_mesh

    mesh = build_device_mesh(sharding_group_size=1, device_type="cpu")  # 2 replicas x 1 shard (HSDP)
    assert tuple(mesh.shape) == (2, 1) and mesh.mesh_dim_names == ("replicate", "shard")
    assert tuple(build_device_mesh(sharding_group_size=2, device_type="cpu").shape) == (2,)
    with pytest.raises(ValueError, match="must divide the world size 2"):
        build_device_mesh(sharding_group_size=3, device_type="cpu")


@pytest.mark.slow
def test_fsdp_matches_single_process(tmp_path):
    pairs = make_pairs(str(tmp_path / "pairs.safetensors"))
    spawn_local(_fsdp_worker, WORLD, args=(str(tmp_path), pairs))
    os.environ["FASTGEN_OUTPUT_ROOT"] = str(tmp_path)
    got = [torch.load(tmp_path / f"fsdp_rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for rank in range(WORLD):  # on CPU the resumed run is bit-identical to the uninterrupted one
        assert_close_dicts(got[rank]["resumed"]["net"], got[rank]["plain"]["net"], 0.0)
    for name, (_, _, edits) in _runs().items():
        expected = _weights(_train(_configure(str(tmp_path), pairs, name, 16, None, edits, "none")))
        for rank in range(WORLD):
            assert sorted(got[rank][name]) == sorted(expected)
            for net_name in expected:
                assert_close_dicts(got[rank][name][net_name], expected[net_name], ATOL)
        # the reference itself trained: the zero-initialised output layer moved
        assert expected["net"]["out_proj.1.weight"].abs().max().item() > 1e-4
        if name == "two_net":  # both alternating networks trained; the teacher is not in model_dict
            assert expected["fake_score"]["out_proj.1.weight"].abs().max().item() > 1e-4
            assert "teacher" not in expected
        if name == "meta_ema":  # EMA (beta 0.5) differs from net but matched across ranks and runs above
            assert not torch.equal(expected["ema"]["out_proj.1.weight"], expected["net"]["out_proj.1.weight"])


def test_meta_init_context_without_process_group_builds_real_weights():
    from fastgen.utils.distributed.fsdp import meta_init_context

    with meta_init_context(True):
        layer = torch.nn.Linear(3, 3)
    assert not layer.weight.is_meta and torch.isfinite(layer.weight).all()


def test_model_to_fsdp_needs_a_process_group():
    from fastgen.utils.distributed.fsdp import build_device_mesh

    with pytest.raises(ValueError, match="torchrun"):
        build_device_mesh(None, "cpu")


def _dmd2_config(out_dir: str, max_iter: int, name: str):
    from fastgen.configs.experiments.Toy.config_dmd2 import create_config

    config = create_config()
    for net_cfg in (config.model.net, config.model.fake_score_net):
        net_cfg.hidden_dim, net_cfg.num_layers = 32, 2
    config.model.device = "cpu"
    config.model.student_update_freq = 2  # iterations alternate: critics (fake score + discriminator), student
    config.dataloader_train.batch_size = 16
    config.trainer.max_iter = max_iter
    config.trainer.save_ckpt_iter = 2
    config.trainer.logging_iter = config.trainer.validation_iter = 1000
    config.trainer.fsdp = True
    config.trainer.fsdp_min_num_params = 100
    config.trainer.checkpointer.save_dir = os.path.join(out_dir, name, "checkpoints")
    config.log_config.name = name
    return config


def _dmd2_worker(rank: int, out_dir: str) -> None:
    from torch.distributed.fsdp import FSDPModule

    os.environ["FASTGEN_OUTPUT_ROOT"] = out_dir
    full = _train(_dmd2_config(out_dir, 4, "full"))
    for name in ("net", "fake_score", "discriminator"):
        module = getattr(full, name)
        assert isinstance(module, FSDPModule), f"{name} is not sharded"
        sharded = [p for p in module.parameters() if hasattr(p, "full_tensor")]
        assert sharded and all(p.to_local().shape[0] <= (p.shape[0] + 1) // 2 for p in sharded)
    _train(_dmd2_config(out_dir, 2, "resumed"))
    resumed = _train(_dmd2_config(out_dir, 4, "resumed"))
    results = {"full": _weights(full), "resumed": _weights(resumed)}
    if rank == 0:
        torch.save(results, os.path.join(out_dir, "dmd2.pt"))


@pytest.mark.slow
def test_dmd2_under_fsdp_shards_every_network_and_resumes_exactly(tmp_path):
    spawn_local(_dmd2_worker, WORLD, args=(str(tmp_path),))
    got = torch.load(tmp_path / "dmd2.pt", weights_only=True)
    assert sorted(got["full"]) == ["discriminator", "ema", "fake_score", "net"]  # the Toy config samples its EMA
    for name in got["full"]:  # sharded DCP checkpoint at iteration 2, new processes' state: bit-identical on CPU
        assert_close_dicts(got["resumed"][name], got["full"][name], 0.0)
    # all three networks trained (ToyMLP output layers start at exactly zero)
    assert got["full"]["net"]["out_proj.1.weight"].abs().max().item() > 1e-5
    assert got["full"]["fake_score"]["out_proj.1.weight"].abs().max().item() > 1e-5


def test_reduce_dtype_and_policies():
    from fastgen.utils.distributed.fsdp import fsdp_policies, reduce_dtype

    assert reduce_dtype("float32") is torch.float32 and reduce_dtype(None) is None
    with pytest.raises(ValueError, match="precision_fsdp='fp8' is not supported"):
        reduce_dtype("fp8")
    mp_policy, offload = fsdp_policies(torch.bfloat16, torch.float32, cpu_offload=False)
    assert (mp_policy.param_dtype, mp_policy.reduce_dtype, offload) == (torch.bfloat16, torch.float32, None)
    mp_policy, offload = fsdp_policies(torch.bfloat16, None, cpu_offload=True)
    assert mp_policy.reduce_dtype is torch.bfloat16 and type(offload).__name__ == "CPUOffloadPolicy"
