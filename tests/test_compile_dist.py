"""torch.compile under DDP and FSDP2 (2 gloo processes, CPU).

Through the real trainer: the toy KD student (ToyMLP, with an EMA copy) trained compiled
(`model.compile.networks=["net"]`) and eagerly, under DDP (whole network) and under FSDP2 (per block, the default
for sharded networks): same weights (student and EMA) within 1e-5 after 3 iterations -- the compiled FSDP2 run
stopped at 2 and resumed from its sharded checkpoint in a new model -- and the saved checkpoints hold exactly the eager
run's keys (no `_orig_mod`, no FSDP/DDP prefixes; the DCP folder's metadata for FSDP2).
Directly: one SFT step of the tiny EDM net (two resolutions, attention) sharded with FSDP2, compiled per block with
activation checkpointing vs eager without: same loss and gradients within 1e-5, no graph break, keys unchanged.

Backend `aot_eager`: the code path under test is ours (where compile happens relative to DDP / FSDP2 wrapping and
activation checkpointing, which modules are compiled, EMA and checkpoint keys) plus TorchDynamo's capture and AOT
autograd's joint graphs, which are the same for every backend; inductor only turns those graphs into C++ and takes
~35 s per process for this net on this CPU (cold cache). `benchmarks/bench_compile.py` runs the same comparison
with inductor.
"""

from __future__ import annotations

import os
import time

import pytest
import torch
from test_ddp import assert_close_dicts, full_weights, make_pairs, toy_kd_config
from test_fsdp import _train, _with_ema

from fastgen.utils.compile import compiled_blocks, is_compiled
from fastgen.utils.distributed.launch import spawn_local

WORLD = 2
RUNS = [(parallel, compiled) for parallel in ("ddp", "fsdp") for compiled in (False, True)]
MAX_ITER = 3


def compile_run_config(out_dir: str, pairs: str, parallel: str, compiled: bool, backend: str = "aot_eager",
                       max_iter: int = MAX_ITER):
    """Toy KD with EMA, checkpoint at 2; `compiled`: the student compiled with `backend`."""
    from fastgen.configs.config import CompileConfig

    name = f"{parallel}_{'compiled' if compiled else 'eager'}"
    config = toy_kd_config(out_dir, pairs, batch_size=8, max_iter=max_iter, parallel=parallel, save_ckpt_iter=2,
                           name=name)
    _with_ema(config)
    if compiled:
        config.model.compile = CompileConfig(networks=["net"], backend=backend, dynamic=False)
    return config, name


def saved_keys(out_dir: str, name: str) -> list[str]:
    """Every tensor key of the iteration-2 checkpoint: the .pth file (DDP) or the DCP folder's metadata (FSDP2)."""
    path = os.path.join(out_dir, name, "checkpoints", "0000002")
    if os.path.isdir(path):
        from torch.distributed.checkpoint import FileSystemReader

        return sorted(FileSystemReader(path).read_metadata().state_dict_metadata)
    state = torch.load(path + ".pth", weights_only=False)
    return sorted(f"{net}.{key}" for net, sd in state["model"].items() for key in sd)


def compile_worker(rank: int, out_dir: str, pairs: str, backend: str = "aot_eager", edm: bool = False) -> None:
    """Each run's weights, checkpoint keys and how many graphs TorchDynamo compiled, saved per rank; `edm`: also the
    tiny EDM net's FSDP2 step, eager and compiled per block (`edm_fsdp_step`), in the same processes."""
    from torch._dynamo.utils import counters

    os.environ["FASTGEN_OUTPUT_ROOT"] = out_dir
    results = {}
    for parallel, compiled in RUNS:
        graphs_before, start = counters["stats"]["unique_graphs"], time.perf_counter()
        resumed = parallel == "fsdp" and compiled  # stops at 2, then a new model resumes from the sharded checkpoint
        if resumed:
            _train(compile_run_config(out_dir, pairs, parallel, compiled, backend, max_iter=2)[0])
        config, name = compile_run_config(out_dir, pairs, parallel, compiled, backend)
        model = _train(config)
        root = getattr(model, "module", model)
        results[name] = {
            "weights": {net: full_weights(module) for net, module in root.model_dict.items()},
            "graphs": counters["stats"]["unique_graphs"] - graphs_before,
            "seconds": time.perf_counter() - start,
            "compiled_net": is_compiled(root.net),
            "net_blocks": compiled_blocks(root.net),
            "compiled_ema": is_compiled(root.ema),
            "cache_dir": os.environ.get("TORCHINDUCTOR_CACHE_DIR"),
            "run_dir": config.log_config.save_path,
        }
        torch.distributed.barrier()
        results[name]["keys"] = saved_keys(out_dir, name)
    # after a compile, inductor's per-user default (which it writes back into the environment) is replaced too
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    from fastgen.trainer import use_compile_cache_dir

    results["default_replaced"] = use_compile_cache_dir(out_dir, {"TORCHINDUCTOR_CACHE_DIR": default_cache_dir()})
    if edm:
        results["edm"] = {"eager": edm_fsdp_step(rank, False), "compiled": edm_fsdp_step(rank, True)}
    torch.save(results, os.path.join(out_dir, f"compile_rank{rank}.pt"))


@pytest.fixture(scope="module")
def dist_runs(tmp_path_factory) -> tuple:
    """(output folder, [each rank's results]) of one 2-process `compile_worker` run, EDM step included."""
    tmp_path = tmp_path_factory.mktemp("compile_dist")
    pairs = make_pairs(str(tmp_path / "pairs.safetensors"))
    spawn_local(compile_worker, WORLD, args=(str(tmp_path), pairs, "aot_eager", True))
    return tmp_path, [torch.load(tmp_path / f"compile_rank{rank}.pt", weights_only=False) for rank in range(WORLD)]


def test_compiled_ddp_and_fsdp2_train_like_eager_and_save_eager_keys(dist_runs):
    tmp_path, results = dist_runs
    for got in results:
        assert got["default_replaced"] == str(tmp_path / "compile_cache")
        for parallel in ("ddp", "fsdp"):
            eager, compiled = got[f"{parallel}_eager"], got[f"{parallel}_compiled"]
            assert compiled["compiled_net"] and compiled["graphs"] > 0, f"{parallel}: nothing was compiled"
            assert not eager["compiled_net"] and eager["graphs"] == 0
            # each compiled run caches in its own run folder (the second run in this process replaced the first's)
            assert compiled["run_dir"].startswith(str(tmp_path)) and compiled["run_dir"].endswith(f"{parallel}_compiled")
            assert compiled["cache_dir"] == os.path.join(compiled["run_dir"], "compile_cache")
            assert not compiled["compiled_ema"]  # EMA copies only sample: never compiled
            # FSDP2 shards ToyMLP per block, so its blocks are compiled one by one; DDP compiles the whole network
            assert compiled["net_blocks"] == (2 if parallel == "fsdp" else 0)
            assert compiled["keys"] == eager["keys"] and not any("_orig_mod" in k for k in compiled["keys"])
            assert any(k.startswith("model.ema.") or k.startswith("ema.") for k in eager["keys"])
            for net in ("net", "ema"):
                assert_close_dicts(compiled["weights"][net], eager["weights"][net], atol=1e-5)
            # training moved the student (ToyMLP's output layer starts at exactly zero)
            assert compiled["weights"]["net"]["out_proj.1.weight"].abs().max().item() > 1e-4


def test_compile_cache_dir_is_the_runs_unless_the_user_chose_one(tmp_path):
    from fastgen.trainer import use_compile_cache_dir

    environ = {}
    assert use_compile_cache_dir(str(tmp_path / "a"), environ) == str(tmp_path / "a" / "compile_cache")
    assert environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "a" / "compile_cache")
    # a later run in the same process replaces the earlier run's folder ...
    assert use_compile_cache_dir(str(tmp_path / "b"), environ) == str(tmp_path / "b" / "compile_cache")
    # (inductor's own per-user default written back into the environment: checked in compile_worker, where inductor
    # is imported anyway; importing it here would cost ~8 s)
    # a folder the user chose is kept
    environ = {"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "mine")}
    assert use_compile_cache_dir(str(tmp_path / "d"), environ) == str(tmp_path / "mine")
    assert environ == {"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "mine")}


def edm_fsdp_step(rank: int, compiled: bool) -> dict:
    """One SFT step (loss, full gradients) of the tiny EDM net sharded per block with FSDP2, as the trainer sets it
    up (shard, then `on_train_begin`: activation checkpointing, then compile); `compiled`: per block (the default
    for a sharded network) with activation checkpointing, else eager without."""
    from test_speed import edm_batch, edm_config
    from torch._dynamo.utils import counters

    from fastgen.configs.config import CompileConfig
    from fastgen.utils import instantiate
    from fastgen.utils.distributed.fsdp import model_to_fsdp

    compile_cfg = CompileConfig(networks=["net"], backend="aot_eager", dynamic=False) if compiled else CompileConfig()
    config = edm_config("sft", one_level=True, activation_checkpointing=compiled, compile=compile_cfg)
    torch.manual_seed(0)
    model = instantiate(config.model_class, config=config.model)
    model_to_fsdp(model, min_num_params=100)
    model.on_train_begin(is_fsdp=True)
    frames_before = dict(counters["frames"])
    torch.manual_seed(7 + rank)  # each rank its own noise and times; the same for both runs
    loss_map, _ = model.single_train_step(edm_batch(), 1)
    loss_map["total_loss"].backward()
    return {
        "loss": loss_map["total_loss"].detach(),
        "grads": {k: p.grad.full_tensor() for k, p in model.net.named_parameters() if p.grad is not None},
        "keys": sorted(model.model_dict.state_dict()),
        "blocks": (compiled_blocks(model.net), len(model.net.fsdp_units())),
        "whole": model.net._compiled_call_impl is not None,
        "frames": {k: counters["frames"][k] - frames_before.get(k, 0) for k in ("total", "ok")},
    }


def test_fsdp2_per_block_compile_with_activation_checkpointing_equals_eager(dist_runs):
    for got in dist_runs[1]:
        eager, compiled = got["edm"]["eager"], got["edm"]["compiled"]
        blocks, units = compiled["blocks"]
        assert blocks == units >= 4 and not compiled["whole"] and eager["blocks"][0] == 0
        # every block compiled without a graph break or a fallback to eager (a skipped frame is counted, not ok)
        assert compiled["frames"]["total"] > 0 and compiled["frames"]["ok"] == compiled["frames"]["total"]
        assert compiled["keys"] == eager["keys"] and not any("_orig_mod" in k for k in compiled["keys"])
        torch.testing.assert_close(compiled["loss"], eager["loss"], rtol=0, atol=1e-5)
        assert eager["grads"].keys() == compiled["grads"].keys() and len(eager["grads"]) > 10
        for key, grad in eager["grads"].items():
            torch.testing.assert_close(compiled["grads"][key], grad, rtol=1e-5, atol=1e-5, msg=key)
        assert max(g.abs().max().item() for g in eager["grads"].values()) > 1e-3  # a real step, not all zeros
