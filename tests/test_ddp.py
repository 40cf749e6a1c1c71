"""DDP through the real trainer on 2 gloo processes: same weights as one process on the same global batch,
gradient accumulation with no_sync, and kill-and-resume equal to the uninterrupted run.

The model is the toy 1-step knowledge distillation (`Toy/config_kd.py`, a small ToyMLP student): its loss is a
deterministic function of the batch, so a run split over ranks must follow the single-process trajectory up to
float rounding of the gradient all-reduce.
"""

from __future__ import annotations

import os

import pytest
import torch

from fastgen.utils.distributed.launch import spawn_local

WORLD = 2
ATOL = 1e-5


# --- shared by test_fsdp.py (imported from there) -----------------------------------------------------------------
def make_pairs(path: str) -> str:
    """A small teacher-pair file for the toy KD loader (exact GMM teacher, few ODE steps: ~1 s)."""
    from fastgen.configs.experiments.Toy.config_kd import generate_toy_teacher_pairs

    if not os.path.exists(path):
        generate_toy_teacher_pairs(path, num_pairs=512, substeps=4, seed=0)
    return path


def toy_kd_config(out_dir: str, pairs: str, batch_size: int, max_iter: int, parallel: str = "none",
                  batch_size_global: int | None = None, save_ckpt_iter: int = 1000, name: str = "run"):
    """The shipped toy KD config made tiny: 2-layer 32-wide ToyMLP, AdamW, grad clipping, no W&B."""
    from fastgen.configs.experiments.Toy.config_kd import create_config

    config = create_config()
    config.model.net.hidden_dim = 32
    config.model.net.num_layers = 2
    config.model.device = "cpu"
    config.model.net_optimizer.optim_type = "adamw"
    config.model.net_optimizer.weight_decay = 0.01
    config.dataloader_train.path = pairs
    config.dataloader_train.batch_size = batch_size
    config.dataloader_train.generate_if_missing = False
    config.trainer.max_iter = max_iter
    config.trainer.logging_iter = 1000
    config.trainer.save_ckpt_iter = save_ckpt_iter
    config.trainer.validation_iter = 1000
    config.trainer.batch_size_global = batch_size_global
    config.trainer.ddp = parallel == "ddp"
    config.trainer.fsdp = parallel == "fsdp"
    config.trainer.fsdp_min_num_params = 100
    config.trainer.checkpointer.save_dir = os.path.join(out_dir, name, "checkpoints")
    config.log_config.name = name
    return config


def train(config) -> torch.nn.Module:
    """Build the model from the config (every rank seeds differently on purpose: rank 0's weights must win) and
    run the trainer; returns the (possibly wrapped) FastGenModel."""
    from fastgen.trainer import Trainer
    from fastgen.utils import distributed as dist_utils
    from fastgen.utils import instantiate

    torch.manual_seed(1234 + dist_utils.get_rank())
    model = instantiate(config.model_class, config=config.model)
    Trainer(config).run(model)
    return model


def full_weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Full (gathered) CPU copies of a network's parameters and buffers, sharded or not."""
    out = {}
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        tensor = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
        out[name] = tensor.detach().cpu().clone()
    return out


def assert_close_dicts(actual: dict, expected: dict, atol: float) -> None:
    assert sorted(actual) == sorted(expected)
    for key in expected:
        diff = (actual[key].double() - expected[key].double()).abs().max().item()
        assert diff <= atol, f"{key}: max |diff| {diff:.3g} > {atol}"


def single_process_weights(tmp_path, pairs: str, batch_size: int, max_iter: int, name: str = "single") -> dict:
    os.environ["FASTGEN_OUTPUT_ROOT"] = str(tmp_path)
    model = train(toy_kd_config(str(tmp_path), pairs, batch_size, max_iter, name=name))
    return full_weights(model.net)


# --- workers (run in each spawned rank) ---------------------------------------------------------------------------
def _ddp_worker(rank: int, out_dir: str, pairs: str) -> None:
    os.environ["FASTGEN_OUTPUT_ROOT"] = out_dir
    from fastgen.utils.distributed.ddp import unwrap_ddp

    # (a) 2 ranks x 8 = global 16 per step; (b) 2 ranks x 4 x 2 accumulation rounds = global 16 per step
    model = train(toy_kd_config(out_dir, pairs, batch_size=8, max_iter=4, parallel="ddp", name="ddp"))
    weights = {"ddp": full_weights(unwrap_ddp(model).net)}
    model = train(toy_kd_config(out_dir, pairs, batch_size=4, max_iter=4, parallel="ddp", batch_size_global=16,
                                name="ddp_accum"))
    weights["ddp_accum"] = full_weights(model.net)
    # (c) kill-and-resume: an uninterrupted 6-iteration run vs. 3 iterations, a new trainer and model, resume to 6
    weights["full"] = full_weights(train(toy_kd_config(out_dir, pairs, 8, 6, "ddp", name="full")).net)
    train(toy_kd_config(out_dir, pairs, 8, 3, "ddp", save_ckpt_iter=3, name="resumed"))
    weights["resumed"] = full_weights(train(toy_kd_config(out_dir, pairs, 8, 6, "ddp", name="resumed")).net)
    weights["rank_equal"] = all(
        torch.equal(a, b) for a, b in zip(weights["ddp"].values(), _broadcast_from_rank0(weights["ddp"]).values())
    )
    torch.save(weights, os.path.join(out_dir, f"weights_rank{rank}.pt"))


def _broadcast_from_rank0(weights: dict) -> dict:
    import torch.distributed as dist

    out = {}
    for key, value in weights.items():
        value = value.clone()
        dist.broadcast(value, src=0)
        out[key] = value
    return out


@pytest.mark.slow
def test_ddp_matches_single_process_and_resumes_exactly(tmp_path):
    pairs = make_pairs(str(tmp_path / "pairs.safetensors"))
    spawn_local(_ddp_worker, WORLD, args=(str(tmp_path), pairs))
    expected4 = single_process_weights(tmp_path, pairs, batch_size=16, max_iter=4)
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"weights_rank{rank}.pt", weights_only=True)
        assert got["rank_equal"], "DDP ranks ended with different weights"
        assert_close_dicts(got["ddp"], expected4, ATOL)
        assert_close_dicts(got["ddp_accum"], expected4, ATOL)
        # on CPU the resumed run is bit-identical to the uninterrupted one
        assert_close_dicts(got["resumed"], got["full"], 0.0)
        # and training moved the weights: ToyMLP's output layer starts at exactly zero
        assert got["full"]["out_proj.1.weight"].abs().max().item() > 1e-4
    assert os.path.isfile(tmp_path / "resumed" / "checkpoints" / "0000003.pth")


@pytest.mark.slow
def test_ddp_sync_grad_skips_allreduce_until_last_round():
    from fastgen.utils.distributed.ddp import ddp_sync_grad

    spawn_local(_no_sync_worker, WORLD)
    # an unwrapped model gets a no-op context whatever `sync` says
    with ddp_sync_grad(torch.nn.Linear(2, 2), sync=False):
        pass


def _no_sync_worker(rank: int) -> None:
    from fastgen.utils.distributed.ddp import ddp_sync_grad, wrap_model_ddp

    class Lin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(1, 1, bias=False)
            self.device = torch.device("cpu")

        def forward(self, x, iteration):
            return self.net(x).sum()

    torch.manual_seed(rank)
    model = wrap_model_ddp(Lin(), find_unused_parameters=False)
    x = torch.full((1, 1), float(rank + 1))  # d loss / d w = rank + 1
    with ddp_sync_grad(model, sync=False):
        model(x, 0).backward()
    local = model.module.net.weight.grad.item()
    assert local == pytest.approx(rank + 1), "no_sync round must keep the local gradient"
    with ddp_sync_grad(model, sync=True):
        model(x, 0).backward()
    # last round: mean over ranks of (2 * (rank + 1)) = 2 * 1.5 = 3
    assert model.module.net.weight.grad.item() == pytest.approx(3.0)


@pytest.mark.slow
def test_buffer_sync_flag_keeps_the_wrap_time_broadcast_on_old_and_new_torch():
    spawn_local(_buffer_sync_worker, WORLD)


def _buffer_sync_worker(rank: int) -> None:
    from fastgen.utils.distributed.ddp import buffer_sync_kwargs

    def new_init(self, module, broadcast_buffers=None, forward_sync_buffers=None):  # torch >= 2.13
        pass

    def old_init(self, module, broadcast_buffers=True):  # torch 2.11: no forward_sync_buffers
        pass

    module = torch.nn.Module()
    module.register_buffer("table", torch.full((3,), float(rank)))
    # new torch: DDP itself broadcasts at wrap time; nothing is touched here
    assert buffer_sync_kwargs(module, False, new_init) == {"forward_sync_buffers": False}
    assert module.table.tolist() == [float(rank)] * 3
    assert buffer_sync_kwargs(module, True, old_init) == {"broadcast_buffers": True}
    assert module.table.tolist() == [float(rank)] * 3
    # old torch with broadcast_buffers=False would skip the wrap-time broadcast: done here instead
    assert buffer_sync_kwargs(module, False, old_init) == {"broadcast_buffers": False}
    assert module.table.tolist() == [0.0, 0.0, 0.0]


def test_launch_environment_parsing(monkeypatch):
    from datetime import timedelta

    from fastgen.utils.distributed import launch

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert launch.init_distributed() is False  # plain `python train.py`: no process group is started
    assert launch.local_rank() == 0 and launch.device_for_rank() == torch.device("cpu")
    monkeypatch.setenv("NCCL_TIMEOUT", "42")
    assert launch.collective_timeout() == timedelta(seconds=42)
    monkeypatch.setenv("NCCL_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="NCCL_TIMEOUT must be an integer"):
        launch.collective_timeout()
    assert launch.resolve_backend("auto") == ("nccl" if torch.cuda.is_available() else "gloo")
    with pytest.raises(ValueError, match="backend_type must be one of"):
        launch.resolve_backend("mpi")


def test_parallel_type_and_checkpointer_choice(tmp_path):
    from fastgen.utils.checkpointer import Checkpointer
    from fastgen.utils.dcp_checkpointer import DCPCheckpointer
    from fastgen.utils.distributed.launch import make_checkpointer, parallel_type

    config = toy_kd_config(str(tmp_path), "unused", 8, 1, parallel="ddp")
    assert parallel_type(config.trainer) == "ddp"
    assert type(make_checkpointer(config, str(tmp_path))) is Checkpointer
    config.trainer.ddp, config.trainer.fsdp = False, True
    assert parallel_type(config.trainer) == "fsdp"
    assert type(make_checkpointer(config, str(tmp_path))) is DCPCheckpointer
    config.trainer.ddp = True
    with pytest.raises(ValueError, match="choose one"):
        parallel_type(config.trainer)


def test_wrap_model_ddp_without_process_group_is_a_clear_error():
    from fastgen.utils.distributed.ddp import wrap_model_ddp

    with pytest.raises(ValueError, match="torchrun"):
        wrap_model_ddp(torch.nn.Linear(2, 2))
