"""Sharded (DCP) checkpoints: exact round trip including AdamW moments into a fresh optimizer, atomic folders,
fallback from a corrupt newest checkpoint, and a checkpoint written by 2 FSDP2 ranks loaded in one plain process."""

from __future__ import annotations

import os

import pytest
import torch
from loguru import logger
from test_ddp import make_pairs, toy_kd_config

from fastgen.utils.checkpointer import CheckpointError
from fastgen.utils.dcp_checkpointer import DCPCheckpointer, checkpoint_folder, consolidate, is_complete
from fastgen.utils.distributed.launch import spawn_local


def _model(tmp_path, seed: int):
    """A toy KD model (ToyMLP student + EMA copy) with its AdamW optimizer, built from the shipped config."""
    from fastgen.utils import instantiate

    os.environ["FASTGEN_OUTPUT_ROOT"] = str(tmp_path)
    config = toy_kd_config(str(tmp_path), pairs="unused", batch_size=8, max_iter=1)
    config.model.use_ema = True
    torch.manual_seed(seed)
    model = instantiate(config.model_class, config=config.model)
    model.on_train_begin()
    model.init_optimizers()
    return model


def _step(model, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    data = {"noise": torch.randn(8, 2, generator=generator), "real": torch.randn(8, 2, generator=generator)}
    loss_map, _ = model.single_train_step(data, 1)
    loss_map["total_loss"].backward()
    model.optimizers_schedulers_step(1)
    model.optimizers_zero_grad(1)
    with torch.no_grad():
        for p_ema, p in zip(model.ema.parameters(), model.net.parameters()):
            p_ema.copy_(0.5 * p_ema + 0.5 * p)


def _adam_state(model) -> dict[str, dict[str, torch.Tensor]]:
    names = {id(p): n for n, p in model.net.named_parameters()}
    opt = model.optimizers["net"]
    # parameters that never got a gradient (the unused logvar head) have no AdamW state, before and after loading
    return {names[id(p)]: {k: v.clone() for k, v in opt.state[p].items()}
            for g in opt.param_groups for p in g["params"] if opt.state.get(p)}


def _save(model, checkpointer: DCPCheckpointer, iteration: int) -> str:
    state = checkpointer.collect_state(model, iteration=iteration, rng=[{"marker": torch.tensor([iteration])}],
                                       data={"train": 8 * iteration}, config_yaml=f"it: {iteration}\n")
    return checkpointer.save(state, iteration)


def test_round_trip_restores_weights_ema_adamw_moments_and_extras(tmp_path):
    model = _model(tmp_path, seed=0)
    for it in range(3):
        _step(model, it)
    checkpointer = DCPCheckpointer(str(tmp_path / "ckpt"))
    folder = _save(model, checkpointer, 3)
    assert folder == checkpoint_folder(str(tmp_path / "ckpt"), 3) and is_complete(folder)

    fresh = _model(tmp_path, seed=99)  # other init, optimizer never stepped (AdamW has no moments yet)
    assert not fresh.optimizers["net"].state
    found = checkpointer.load_latest(fresh)
    assert found is not None and found[1] == folder
    state = found[0]
    assert checkpointer.restore_state(fresh, state) == 3
    assert state["data"] == {"train": 24} and state["config"] == "it: 3\n" and int(state["rng"][0]["marker"]) == 3
    for name in ("net", "ema"):
        for (key, a), b in zip(getattr(model, name).state_dict().items(), getattr(fresh, name).state_dict().values()):
            assert torch.equal(a, b), f"{name}.{key}"
    saved_moments, loaded_moments = _adam_state(model), _adam_state(fresh)
    assert sorted(loaded_moments) == sorted(saved_moments) and "in_proj.weight" in saved_moments
    for key, moments in saved_moments.items():
        assert set(moments) >= {"exp_avg", "exp_avg_sq", "step"}
        for k, v in moments.items():
            assert torch.equal(loaded_moments[key][k], v), f"{key}.{k}"
    assert fresh.schedulers["net"].state_dict() == model.schedulers["net"].state_dict()
    full = consolidate(folder)  # plain full tensors, no model needed
    for key, value in model.ema.state_dict().items():
        assert torch.equal(full["model"]["ema"][key], value), key
    assert full["iteration"] == 3
    assert torch.equal(full["optimizer"]["net"]["state"]["net.in_proj.weight"]["exp_avg"],
                       saved_moments["in_proj.weight"]["exp_avg"])
    # continuing from the loaded state is bit-identical to continuing the original
    _step(model, 7)
    _step(fresh, 7)
    for a, b in zip(model.net.parameters(), fresh.net.parameters()):
        assert torch.equal(a, b)



def test_incomplete_and_corrupt_folders_fall_back_to_previous(tmp_path):
    sink: list[str] = []
    handler = logger.add(lambda message: sink.append(str(message)), level="WARNING")
    try:
        model = _model(tmp_path, seed=0)
        checkpointer = DCPCheckpointer(str(tmp_path / "ckpt"))
        _step(model, 0)
        _save(model, checkpointer, 2)
        expected = {k: v.clone() for k, v in model.net.state_dict().items()}
        _step(model, 1)
        newest = _save(model, checkpointer, 4)
        # a crash mid-save leaves only a .tmp folder, and a folder without .metadata: neither counts
        os.makedirs(checkpoint_folder(checkpointer.save_dir, 6) + ".tmp")
        os.makedirs(checkpoint_folder(checkpointer.save_dir, 8))
        assert [it for it, _ in checkpointer.list_checkpoints()] == [2, 4]
        # truncate the newest checkpoint's shard file
        shard = next(os.path.join(newest, f) for f in os.listdir(newest) if f.endswith(".distcp"))
        with open(shard, "r+b") as file:
            file.truncate(os.path.getsize(shard) // 3)
        fresh = _model(tmp_path, seed=5)
        before = {k: v.clone() for k, v in fresh.net.state_dict().items()}
        state, folder = checkpointer.load_latest(fresh)
        # the failed read left the live weights untouched; the fallback loads iteration 2
        assert all(torch.equal(before[k], v) for k, v in fresh.net.state_dict().items())
        assert folder.endswith("0000002") and checkpointer.restore_state(fresh, state) == 2
        for key, value in expected.items():
            assert torch.equal(fresh.net.state_dict()[key], value)
        assert any("0000004" in line and "falling back" in line for line in sink)
        with pytest.raises(CheckpointError, match="not a complete checkpoint"):
            checkpointer.load(checkpoint_folder(checkpointer.save_dir, 8), fresh)
    finally:
        logger.remove(handler)


def _save_at_two(rank: int, out_dir: str, pairs: str) -> None:
    from test_fsdp import _train, _weights
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    os.environ["FASTGEN_OUTPUT_ROOT"] = out_dir
    config = toy_kd_config(out_dir, pairs, batch_size=8, max_iter=3, parallel="fsdp", name="w2")
    config.model.use_ema = True
    model = _train(config)
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    optim = get_optimizer_state_dict(model, model.optimizers["net"], options=options)
    weights = _weights(model)  # collective (gathers the shards): every rank calls it
    if rank == 0:
        torch.save({"weights": weights, "optim": optim["state"]}, os.path.join(out_dir, "w2.pt"))


@pytest.mark.slow
def test_checkpoint_saved_at_world_size_2_loads_in_one_plain_process(tmp_path):
    pairs = make_pairs(str(tmp_path / "pairs.safetensors"))
    spawn_local(_save_at_two, 2, args=(str(tmp_path), pairs))
    reference = torch.load(tmp_path / "w2.pt", weights_only=True)
    checkpointer = DCPCheckpointer(str(tmp_path / "w2" / "checkpoints"))
    assert [it for it, _ in checkpointer.list_checkpoints()] == [3]
    assert len([f for f in os.listdir(checkpointer.list_checkpoints()[0][1]) if f.endswith(".distcp")]) == 2

    model = _model(tmp_path, seed=42)  # no process group: a plain single-process model and AdamW
    state, _ = checkpointer.load_latest(model)
    assert checkpointer.restore_state(model, state) == 3 and state["world_size"] == 2 and len(state["rng"]) == 2
    for name in ("net", "ema"):
        for key, value in getattr(model, name).named_parameters():
            assert torch.equal(value.detach(), reference["weights"][name][key]), f"{name}.{key}"
    opt_names = {id(p): f"net.{n}" for n, p in model.net.named_parameters()}
    optimizer = model.optimizers["net"]
    for param, moments in optimizer.state.items():
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(moments[key], reference["optim"][opt_names[id(param)]][key])
    assert float(next(iter(optimizer.state.values()))["step"]) == 3.0

    full = consolidate(checkpointer.list_checkpoints()[0][1])  # without any model: full tensors
    plain = _model(tmp_path, seed=7).net
    plain.load_state_dict(full["model"]["net"])
    for key, value in plain.named_parameters():
        assert torch.equal(value.detach(), reference["weights"]["net"][key])


def test_full_tensor_load_without_model_and_single_file_fallback(tmp_path):
    from fastgen.utils.checkpointer import Checkpointer, collect_state

    model = _model(tmp_path, seed=0)
    _step(model, 0)
    _step(model, 1)
    checkpointer = DCPCheckpointer(str(tmp_path / "ckpt"))
    folder = _save(model, checkpointer, 2)
    state = checkpointer.load(folder)  # no model: consolidated full tensors, applied with full_state_dict=True
    fresh = _model(tmp_path, seed=3)
    assert checkpointer.restore_state(fresh, state) == 2
    for a, b in zip(model.net.parameters(), fresh.net.parameters()):
        assert torch.equal(a, b)
    _step(model, 2)
    _step(fresh, 2)  # AdamW moments came back too: the next step is identical
    for a, b in zip(model.net.parameters(), fresh.net.parameters()):
        assert torch.equal(a, b)
    # a single-file checkpoint (e.g. trainer.checkpointer.pretrained_ckpt_path of an earlier stage) also loads
    plain_path = Checkpointer(str(tmp_path / "plain")).save(collect_state(model, iteration=3), 3)
    plain = checkpointer.load(plain_path)
    assert plain["iteration"] == 3
    assert torch.equal(plain["model"]["net"]["in_proj.weight"], model.net.in_proj.weight.detach())
