"""torch.compile under DDP and FSDP2 through the real trainer (2 gloo processes, CPU).

The toy KD student (ToyMLP, with an EMA copy) trained 2 iterations compiled (`model.compile.networks=["net"]`) and
eagerly, under DDP and under FSDP2: same weights (student and EMA) within 1e-5, and the saved checkpoints hold
exactly the eager run's keys (no `_orig_mod`, no FSDP/DDP prefixes; the DCP folder's metadata for FSDP2).

Backend `aot_eager`: the code path under test is ours (where compile happens relative to DDP / FSDP2 wrapping, which
module is compiled, EMA and checkpoint keys) plus TorchDynamo's capture and AOT autograd's joint graphs, which are
the same for every backend; inductor only turns those graphs into C++ and takes ~35 s per process for this net on
this CPU (cold cache). `benchmarks/bench_compile.py` runs the same comparison with inductor.
"""

from __future__ import annotations

import os
import time

import torch
from test_ddp import assert_close_dicts, full_weights, make_pairs, toy_kd_config
from test_fsdp import _train, _with_ema

from fastgen.utils.distributed.launch import spawn_local

WORLD = 2
RUNS = [(parallel, compiled) for parallel in ("ddp", "fsdp") for compiled in (False, True)]


def compile_run_config(out_dir: str, pairs: str, parallel: str, compiled: bool, backend: str = "aot_eager"):
    """Toy KD with EMA, 2 iterations, checkpoint at 2; `compiled`: the student compiled with `backend`."""
    from fastgen.configs.config import CompileConfig

    name = f"{parallel}_{'compiled' if compiled else 'eager'}"
    config = toy_kd_config(out_dir, pairs, batch_size=8, max_iter=2, parallel=parallel, save_ckpt_iter=2, name=name)
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


def compile_worker(rank: int, out_dir: str, pairs: str, backend: str = "aot_eager") -> None:
    """Each run's weights, checkpoint keys and how many graphs TorchDynamo compiled, saved per rank."""
    from torch._dynamo.utils import counters

    os.environ["FASTGEN_OUTPUT_ROOT"] = out_dir
    results = {}
    for parallel, compiled in RUNS:
        config, name = compile_run_config(out_dir, pairs, parallel, compiled, backend)
        graphs_before, start = counters["stats"]["unique_graphs"], time.perf_counter()
        model = _train(config)
        root = getattr(model, "module", model)
        results[name] = {
            "weights": {net: full_weights(module) for net, module in root.model_dict.items()},
            "graphs": counters["stats"]["unique_graphs"] - graphs_before,
            "seconds": time.perf_counter() - start,
            "compiled_net": root.net._compiled_call_impl is not None,
            "compiled_ema": root.ema._compiled_call_impl is not None,
            "cache_dir": os.environ.get("TORCHINDUCTOR_CACHE_DIR"),
            "run_dir": config.log_config.save_path,
        }
        torch.distributed.barrier()
        results[name]["keys"] = saved_keys(out_dir, name)
    # after a compile, inductor's per-user default (which it writes back into the environment) is replaced too
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    from fastgen.trainer import use_compile_cache_dir

    results["default_replaced"] = use_compile_cache_dir(out_dir, {"TORCHINDUCTOR_CACHE_DIR": default_cache_dir()})
    torch.save(results, os.path.join(out_dir, f"compile_rank{rank}.pt"))


def test_compiled_ddp_and_fsdp2_train_like_eager_and_save_eager_keys(tmp_path):
    pairs = make_pairs(str(tmp_path / "pairs.safetensors"))
    spawn_local(compile_worker, WORLD, args=(str(tmp_path), pairs))
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"compile_rank{rank}.pt", weights_only=False)
        assert got["default_replaced"] == str(tmp_path / "compile_cache")
        for parallel in ("ddp", "fsdp"):
            eager, compiled = got[f"{parallel}_eager"], got[f"{parallel}_compiled"]
            assert compiled["compiled_net"] and compiled["graphs"] > 0, f"{parallel}: nothing was compiled"
            assert not eager["compiled_net"] and eager["graphs"] == 0
            # each compiled run caches in its own run folder (the second run in this process replaced the first's)
            assert compiled["run_dir"].startswith(str(tmp_path)) and compiled["run_dir"].endswith(f"{parallel}_compiled")
            assert compiled["cache_dir"] == os.path.join(compiled["run_dir"], "compile_cache")
            assert not compiled["compiled_ema"]  # EMA copies only sample: never compiled
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
