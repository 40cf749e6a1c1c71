"""Checkpointer: atomic files, weights_only loading, fallback past a damaged newest file, full state round trip."""

import os
import random

import numpy as np
import pytest
import torch
from loguru import logger

from fastgen.configs.experiments.Toy import config_sft
from fastgen.methods import SFTModel
from fastgen.utils.checkpointer import (
    Checkpointer,
    CheckpointError,
    checkpoint_path,
    collect_state,
    config_drift,
    load_pretrained_checkpoint,
    restore_state,
    safe_torch_load,
)
from fastgen.utils.rng import derive_seed, get_rng_state, seed_everything, set_rng_state


@pytest.fixture
def warnings_log():
    messages = []
    sink = logger.add(lambda m: messages.append(str(m)), level="WARNING")
    yield messages
    logger.remove(sink)


def small_model(use_ema=False):
    config = config_sft.create_config().model
    config.net.hidden_dim, config.net.num_layers, config.use_ema = 16, 1, use_ema
    model = SFTModel(config)
    model.on_train_begin()
    model.init_optimizers()
    return model


def one_step(model, seed):
    torch.manual_seed(seed)
    batch = {"real": torch.randn(8, 2), "condition": torch.zeros(8, 0)}
    loss_map, _ = model.single_train_step(batch, 1)
    loss_map["total_loss"].backward()
    model.optimizers_schedulers_step(1)
    model.optimizers_zero_grad(1)


def assert_states_equal(a, b):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_states_equal(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_states_equal(x, y)
    else:
        assert a == b


def test_save_layout_and_list_ignores_temporary_files(tmp_path):
    ckpt = Checkpointer(str(tmp_path / "ckpt"))
    assert ckpt.load_latest() is None
    path = ckpt.save({"model": {}, "iteration": 5}, 5)
    assert os.path.basename(path) == "0000005.pth"
    (tmp_path / "ckpt" / ".0000010.pth.tmp123").write_bytes(b"partial")  # a save that was killed mid-write
    assert ckpt.list_checkpoints() == [(5, path)]
    assert sorted(os.listdir(tmp_path / "ckpt")) == [".0000010.pth.tmp123", "0000005.pth"]
    state, latest = ckpt.load_latest()
    assert latest == path and state["iteration"] == 5


def test_truncated_newest_checkpoint_falls_back_with_warning(tmp_path, warnings_log):
    ckpt = Checkpointer(str(tmp_path))
    for it in (10, 20, 30):
        ckpt.save({"model": {"net": {"w": torch.full((64,), float(it))}}, "iteration": it}, it)
    newest = tmp_path / "0000030.pth"
    newest.write_bytes(newest.read_bytes()[:200])
    state, path = ckpt.load_latest()
    assert state["iteration"] == 20 and path.endswith("0000020.pth")
    assert torch.equal(state["model"]["net"]["w"], torch.full((64,), 20.0))
    assert any("0000030.pth" in m and "unusable" in m for m in warnings_log)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_checkpoint_is_refused_and_never_runs(tmp_path, warnings_log):
    marker = tmp_path / "pwned"
    ckpt = Checkpointer(str(tmp_path / "ckpt"))
    ckpt.save({"model": {"net": {}}, "iteration": 1}, 1)
    evil = tmp_path / "ckpt" / "0000002.pth"
    torch.save({"model": {"net": _Payload(str(marker))}, "iteration": 2}, evil)
    with pytest.raises(CheckpointError, match="refusing to load .*0000002.pth.*arbitrary code"):
        ckpt.load(str(evil))
    state, path = ckpt.load_latest()  # the unsafe newest file is skipped, with a message
    assert state["iteration"] == 1 and any("0000002.pth" in m for m in warnings_log)
    assert not marker.exists()


def test_not_a_checkpoint_and_missing_file_errors(tmp_path):
    torch.save({"weights": torch.ones(1)}, tmp_path / "0000001.pth")
    ckpt = Checkpointer(str(tmp_path))
    with pytest.raises(CheckpointError, match="not a fastgen checkpoint"):
        ckpt.load(str(tmp_path / "0000001.pth"))
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        ckpt.load(str(tmp_path / "missing.pth"))


def test_full_state_round_trip_is_bit_exact_after_a_step(tmp_path):
    model = small_model(use_ema=True)
    one_step(model, 0)
    with torch.no_grad():
        for p in model.ema.parameters():
            p.add_(0.5)  # EMA differs from net
    ckpt = Checkpointer(str(tmp_path))
    ckpt.save(collect_state(model, iteration=7, rng=[get_rng_state()], data={"train": 56}, config_yaml="a: 1\n"), 7)
    fresh = small_model(use_ema=True)  # fresh optimizer: no Adam moments yet
    state, _ = ckpt.load_latest()
    assert restore_state(fresh, state) == 7 and state["data"] == {"train": 56} and state["config"] == "a: 1\n"
    assert_states_equal(model.model_dict.state_dict(), fresh.model_dict.state_dict())
    assert_states_equal(model.optimizers["net"].state_dict(), fresh.optimizers["net"].state_dict())
    assert_states_equal(model.schedulers["net"].state_dict(), fresh.schedulers["net"].state_dict())
    assert len(fresh.optimizers["net"].state) > 0  # AdamW moments really restored
    one_step(model, 1)
    one_step(fresh, 1)
    assert_states_equal(model.model_dict.state_dict(), fresh.model_dict.state_dict())


def test_restore_reports_missing_network(tmp_path):
    model = small_model(use_ema=True)
    state = collect_state(small_model(use_ema=False), iteration=3)
    with pytest.raises(CheckpointError, match="no weights for 'ema'"):
        restore_state(model, state)


def test_pretrained_checkpoint_key_map(tmp_path):
    source = small_model(use_ema=True)
    with torch.no_grad():
        for p in source.ema.parameters():
            p.fill_(0.25)
    ckpt = Checkpointer(str(tmp_path))
    path = ckpt.save(collect_state(source, iteration=40), 40)
    target = small_model()
    assert load_pretrained_checkpoint(target, path, {"net": "ema"}, ckpt) == 40
    assert all(torch.all(p == 0.25) for p in target.net.parameters())
    with pytest.raises(CheckpointError, match="no network 'fake_score'"):
        load_pretrained_checkpoint(target, path, {"net": "fake_score"}, ckpt)


def test_rng_state_round_trip_through_weights_only_file(tmp_path):
    seed_everything(3, 0, 0)
    random.gauss(0, 1)  # leaves a cached gaussian in python's state
    torch.save({"rng": get_rng_state()}, tmp_path / "rng.pth")
    expected = (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), np.random.randn(), torch.rand(4))
    seed_everything(99, 0, 0)
    set_rng_state(torch.load(tmp_path / "rng.pth", weights_only=True)["rng"])
    got = (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), np.random.randn(), torch.rand(4))
    assert got[:4] == expected[:4] and torch.equal(got[4], expected[4])


def test_derived_seeds_do_not_collide():
    seeds = {derive_seed(seed, rank, it) for seed in range(3) for rank in range(8) for it in range(200)}
    assert len(seeds) == 3 * 8 * 200
    assert derive_seed(0, 0, 1) != derive_seed(0, 1, 0)  # the reference's seed + rank + iteration collides here
    assert derive_seed(5, 2, 9) == derive_seed(5, 2, 9)


def test_config_drift_lists_changed_lines():
    assert config_drift("a: 1\nb: 2\n", "a: 1\nb: 2\n") == []
    assert config_drift("a: 1\nb: 2\n", "a: 1\nb: 3\n") == ["-b: 2", "+b: 3"]


def test_sft_checkpoint_initialises_dmd2_with_strict_false(tmp_path, warnings_log):
    from fastgen.configs.experiments.Toy import config_dmd2
    from fastgen.methods import DMD2Model

    sft = small_model()
    one_step(sft, seed=3)
    config = config_dmd2.create_config().model
    config.net.hidden_dim, config.net.num_layers = 16, 1
    config.gan_loss_weight_gen = 0.0
    config.use_ema = False  # the strict error names the first missing network: keep it the fake score
    dmd2 = DMD2Model(config)
    dmd2.on_train_begin()
    dmd2.init_optimizers()
    fake_before = {k: v.clone() for k, v in dmd2.fake_score.state_dict().items()}
    state = Checkpointer(str(tmp_path)).load(Checkpointer(str(tmp_path)).save(collect_state(sft, iteration=7), 7))
    with pytest.raises(CheckpointError, match="no weights for 'fake_score'"):
        restore_state(dmd2, state)  # strict: a missing network is an error
    assert restore_state(dmd2, state, strict=False) == 7
    assert_states_equal(dmd2.net.state_dict(), sft.net.state_dict())
    assert_states_equal(dmd2.fake_score.state_dict(), fake_before)  # starts fresh, with a warning
    assert any("no weights for 'fake_score'" in m and "keeps its current weights" in m for m in warnings_log)


def test_random_bytes_are_not_a_checkpoint_nor_a_code_risk(tmp_path):
    path = tmp_path / "weights.pth"
    path.write_bytes(np.random.default_rng(0).bytes(3000))
    with pytest.raises(CheckpointError) as error:
        safe_torch_load(str(path))
    assert str(error.value) == (f"{path} is not a checkpoint: 3000 bytes that are neither a torch.save archive nor "
                                f"a safetensors file")
    pickled = tmp_path / "damaged.pth"  # a pickle header, then garbage: damaged, not dangerous
    pickled.write_bytes(b"\x80\x02" + np.random.default_rng(1).bytes(500))
    with pytest.raises(CheckpointError) as error:
        safe_torch_load(str(pickled))
    assert "weights_only" not in str(error.value) and "arbitrary code" not in str(error.value)
    assert str(error.value).startswith(str(pickled))


def test_torch_pickle_warnings_do_not_reach_users(tmp_path):
    import io
    import warnings

    buffer = io.BytesIO()
    torch.save({"model": {"net": {"w": torch.ones(2)}}, "iteration": 5}, buffer, _use_new_zipfile_serialization=False)
    data = bytearray(buffer.getvalue())
    data[16] = 90  # the legacy header's protocol field: torch warns "Detected pickle protocol 90" but loads
    (tmp_path / "0000005.pth").write_bytes(bytes(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        state = Checkpointer(str(tmp_path)).load(str(tmp_path / "0000005.pth"))
    assert state["iteration"] == 5 and torch.equal(state["model"]["net"]["w"], torch.ones(2))
    assert [str(w.message) for w in caught] == []


def test_all_corrupt_checkpoints_are_reported_not_ignored(tmp_path, monkeypatch):
    from fastgen.trainer import Trainer

    monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path))
    config = config_sft.create_config()
    config.trainer.callbacks = {}
    config.model.net.hidden_dim, config.model.net.num_layers = 16, 1
    trainer = Trainer(config)
    for it in (10, 20):
        os.makedirs(trainer.checkpointer.save_dir, exist_ok=True)
        with open(checkpoint_path(trainer.checkpointer.save_dir, it), "wb") as file:
            file.write(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError) as error:
        trainer.load_checkpoint(small_model())
    assert str(error.value) == (
        f"none of the 2 checkpoint(s) in {trainer.checkpointer.save_dir} can be loaded (the reason for each is logged "
        f"above); move them away to start from iteration 0, or start a new run with log_config.name=NEW_NAME")
