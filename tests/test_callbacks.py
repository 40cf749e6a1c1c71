"""Callbacks on a tiny FastGenModel-like module (real nets, optimizers, grad scaler): values, not shapes."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from fastgen.callbacks import Callback, CallbackDict
from fastgen.callbacks.ct_schedule import CTScheduleCallback, ct_ratio, ct_stage
from fastgen.callbacks.ema import EMACallback, constant_beta, halflife_beta, power_beta
from fastgen.callbacks.forced_weight_norm import ForcedWeightNormCallback
from fastgen.callbacks.grad_clip import GradClipCallback
from fastgen.callbacks.mem_stats import MemStatsCallback, process_rss_bytes
from fastgen.callbacks.param_count import ParamCountCallback, count_parameters
from fastgen.callbacks.train_profiler import TrainProfilerCallback
from fastgen.utils import LazyCall as L
from fastgen.utils.image_grid import make_image_grid, save_image_grid, to_uint8

CB = "fastgen.callbacks"


def tiny_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))  # 74 parameters, BN buffers


class TinyModel(nn.Module):
    """The FastGenModel surface the callbacks use: net, EMA copies, optimizer/scheduler dicts, grad scaler."""

    def __init__(self, ema_names=("ema",), with_critic=False, critic_every=None, scaler_scale=None):
        super().__init__()
        self.net = tiny_net(0)
        self.ema_dict = {}
        for name in ema_names:
            ema = copy.deepcopy(self.net).eval().requires_grad_(False)
            setattr(self, name, ema)
            self.ema_dict[name] = ema
        self.model_dict = nn.ModuleDict({"net": self.net, **self.ema_dict})
        self.optimizer_dict = {"net": torch.optim.SGD(self.net.parameters(), lr=0.1, momentum=0.9)}
        if with_critic:
            self.fake_score = tiny_net(1)
            self.model_dict["fake_score"] = self.fake_score
            self.optimizer_dict["fake_score"] = torch.optim.SGD(self.fake_score.parameters(), lr=0.1)
        self.scheduler_dict = {k: torch.optim.lr_scheduler.LambdaLR(o, lambda it: 0.5) for k, o in
                               self.optimizer_dict.items()}
        self.critic_every = critic_every
        self.grad_scaler = torch.amp.GradScaler("cpu", init_scale=scaler_scale or 1.0, enabled=scaler_scale is not None)
        self.resume_iter = 0

    def get_optimizers(self, iteration):
        if self.critic_every and iteration % self.critic_every:  # DMD2-like alternation: critic-only iterations
            return [self.optimizer_dict["fake_score"]]
        return list(self.optimizer_dict.values())


def train_step(model: TinyModel, callbacks: CallbackDict, iteration: int) -> dict:
    """One trainer-ordered iteration on fixed data."""
    callbacks.on_training_step_begin(model, iteration)
    gen = torch.Generator().manual_seed(iteration)
    data = {"real": torch.randn(8, 4, generator=gen)}
    callbacks.on_training_accum_step_begin(model, data, iteration, 0)
    loss = model.net(data["real"]).pow(2).mean()
    loss_map = {"total_loss": loss}
    callbacks.on_backward_begin(model, loss_map, iteration)
    loss.backward()
    callbacks.on_optimizer_step_begin(model, iteration)
    for opt in model.get_optimizers(iteration):
        opt.step()
        opt.zero_grad(set_to_none=True)
    callbacks.on_training_step_end(model, data, {}, {"total_loss": loss.detach()}, iteration)
    return loss_map


def set_params(module: nn.Module, value: float) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.fill_(value)


# --------------------------------------------------------------------------------------------------------------------
# CallbackDict
# --------------------------------------------------------------------------------------------------------------------
class Recorder(Callback):
    def __init__(self, tag: str, calls: list | None = None, order: int = 0):
        super().__init__()
        self.tag, self.calls, self.order, self.value = tag, calls if calls is not None else [], order, 0

    def on_training_step_end(self, model, data=None, outputs=None, loss_map=None, iteration=0, **kwargs):
        self.calls.append((self.tag, iteration, kwargs))

    def state_dict(self):
        return {"value": self.value}

    def load_state_dict(self, state_dict):
        self.value = state_dict["value"]


def test_callback_dict_builds_orders_broadcasts_and_round_trips_state():
    calls = []
    cfg = {
        "late": Recorder("late", calls, order=100),
        "a": Recorder("a", calls),
        "off": None,
        "ct": L(f"{CB}.ct_schedule.CTScheduleCallback")(batch_size=4),
        "b": Recorder("b", calls),
    }
    trainer, config = SimpleNamespace(name="trainer"), SimpleNamespace(name="config")
    callbacks = CallbackDict(cfg, config, trainer)
    assert list(callbacks) == ["a", "ct", "b", "late"]  # None skipped; higher `order` last, else insertion order
    assert isinstance(callbacks["ct"], CTScheduleCallback) and callbacks["ct"].batch_size == 4
    assert callbacks["a"].trainer is trainer and callbacks["a"].config is config and callbacks["a"].name == "a"
    callbacks.on_training_step_end(None, None, {}, {}, 7, extra=1)  # new keyword arguments reach every callback
    assert calls == [("a", 7, {"extra": 1}), ("b", 7, {"extra": 1}), ("late", 7, {"extra": 1})]
    with pytest.raises(AttributeError, match="no hook 'on_trainnig_step_end'"):
        callbacks.on_trainnig_step_end(None, 7)

    callbacks["a"].value, callbacks["b"].value = 3, 5
    state = callbacks.state_dict()
    assert state["a"] == {"value": 3} and state["b"] == {"value": 5} and state["ct"] == {}
    fresh = CallbackDict(cfg | {"a": Recorder("a"), "b": Recorder("b"), "late": Recorder("late", order=100)})
    fresh.load_state_dict({"a": {"value": 3}, "gone": {"x": 1}})  # unknown and missing names only warn
    assert fresh["a"].value == 3 and fresh["b"].value == 0


def test_callback_dict_rejects_non_callback_entries_by_name():
    with pytest.raises(TypeError, match="callback entry 'bogus'.*collections.OrderedDict"):
        CallbackDict({"bogus": L("collections.OrderedDict")()})
    with pytest.raises(ValueError, match="callback entry 'num'"):
        CallbackDict({"num": 3})


def test_predefined_callback_sets_build():
    from fastgen.configs import callbacks as sets

    cfg = {**sets.STANDARD_CALLBACKS, **sets.EMA_CALLBACK, **sets.EMA_CONST_CALLBACKS, **sets.EMA_POWER_CALLBACKS,
           **sets.CTSchedule_CALLBACK, **sets.ForcedWeightNorm_CALLBACK}
    callbacks = CallbackDict(cfg, trainer=SimpleNamespace(global_batch_size=8, logging_iter=10))
    assert list(callbacks)[-1] == "wandb"  # the sink runs last
    assert {type(cb).__name__ for cb in callbacks.values()} == {
        "GradClipCallback", "MemStatsCallback", "TrainProfilerCallback", "ParamCountCallback", "WandbCallback",
        "EMACallback", "CTScheduleCallback", "ForcedWeightNormCallback"}
    assert callbacks["ema_5"].ema_type == "power" and callbacks["ema_5"].gamma == 16.97
    assert callbacks["ema_99995"].beta == 0.99995 and callbacks["ema_99995"].ema_name == "ema_99995"


# --------------------------------------------------------------------------------------------------------------------
# EMA
# --------------------------------------------------------------------------------------------------------------------
def test_ema_beta_formulas():
    assert constant_beta(0.9999) == 0.9999
    assert power_beta(1, 16.97) == 0.0  # the first update copies the net
    assert power_beta(10, 16.97) == pytest.approx(0.9**17.97, rel=1e-12)
    assert power_beta(10, 16.97) == pytest.approx(0.150_57, abs=1e-5)
    # ramp-up regime: nimg * r = 1000 * 256 * 0.05 = 12800 < 500 kimg
    assert halflife_beta(1000, 256, 500, 0.05) == pytest.approx(0.5 ** (256 / 12800), rel=1e-12)
    assert halflife_beta(1000, 256, 500, 0.05) == pytest.approx(0.986_233, abs=1e-6)
    # past the ramp-up the half-life is 500 kimg
    assert halflife_beta(10**6, 256, 500, 0.05) == pytest.approx(0.5 ** (256 / 500_000), rel=1e-12)
    assert halflife_beta(10, 256, 500, None) == pytest.approx(0.5 ** (256 / 500_000), rel=1e-12)
    assert halflife_beta(0, 256, 500, 0.05) == 0.0
    with pytest.raises(ValueError, match="expected one of constant, power, halflife"):
        EMACallback(type="linear")


def test_constant_ema_matches_closed_form_and_copies_buffers():
    model = TinyModel()
    callbacks = CallbackDict({"ema": L(f"{CB}.ema.EMACallback")(type="constant", beta=0.9)})
    set_params(model.ema, 2.0)
    set_params(model.net, 5.0)
    model.net[1].running_mean.fill_(3.0)
    for it in range(1, 8):
        callbacks.on_training_step_end(model, None, {}, {}, it)
    expected = 5.0 + 0.9**7 * (2.0 - 5.0)  # e_k = p + beta^k (e_0 - p)
    for p in model.ema.parameters():
        assert torch.allclose(p, torch.full_like(p, expected), rtol=0, atol=1e-6)
    assert torch.equal(model.ema[1].running_mean, torch.full((8,), 3.0))
    assert callbacks["ema"].logs == {"ema/ema_beta": 0.9}
    assert all(not p.requires_grad for p in model.ema.parameters())


def test_power_ema_with_gamma_zero_is_running_mean():
    model = TinyModel()
    callbacks = CallbackDict({"ema": L(f"{CB}.ema.EMACallback")(type="power", gamma=0.0)})
    for it in range(1, 6):  # beta_t = 1 - 1/t  =>  ema_t = mean(p_1..p_t)
        set_params(model.net, float(it))
        callbacks.on_training_step_end(model, None, {}, {}, it)
    for p in model.ema.parameters():
        assert torch.allclose(p, torch.full_like(p, 3.0), atol=1e-6)


def test_ema_start_iter_skip_copy_then_update_with_resume_iter():
    model = TinyModel()
    callbacks = CallbackDict({"ema": L(f"{CB}.ema.EMACallback")(type="constant", beta=0.5, start_iter=5)})
    set_params(model.ema, 1.0)
    model.resume_iter = 2  # iterations count from an earlier stage: total = iteration + 2
    set_params(model.net, 7.0)
    for it in (1, 2):  # totals 3, 4 < start_iter: untouched
        callbacks.on_training_step_end(model, None, {}, {}, it)
        assert all(torch.equal(p, torch.ones_like(p)) for p in model.ema.parameters())
    callbacks.on_training_step_end(model, None, {}, {}, 3)  # total 5 == start_iter: exact copy
    assert all(torch.equal(p, torch.full_like(p, 7.0)) for p in model.ema.parameters())
    set_params(model.net, 9.0)
    callbacks.on_training_step_end(model, None, {}, {}, 4)  # then lerp with beta 0.5
    assert all(torch.allclose(p, torch.full_like(p, 8.0)) for p in model.ema.parameters())


def test_multiple_ema_copies_and_bit_exact_resume_with_late_start():
    def build():
        model = TinyModel(ema_names=("ema_9", "ema_99"))
        callbacks = CallbackDict({
            "ema_9": L(f"{CB}.ema.EMACallback")(type="constant", beta=0.9, start_iter=3, ema_name="ema_9"),
            "ema_99": L(f"{CB}.ema.EMACallback")(type="power", gamma=6.94, start_iter=3, ema_name="ema_99"),
        })
        return model, callbacks

    model, callbacks = build()
    for it in range(1, 5):
        train_step(model, callbacks, it)
    saved = {
        "model": copy.deepcopy(model.model_dict.state_dict()),
        "optim": copy.deepcopy(model.optimizer_dict["net"].state_dict()),
        "callbacks": copy.deepcopy(callbacks.state_dict()),
    }
    for it in range(5, 8):
        train_step(model, callbacks, it)

    resumed_model, resumed_callbacks = build()
    resumed_model.model_dict.load_state_dict(saved["model"])
    resumed_model.optimizer_dict["net"].load_state_dict(saved["optim"])
    resumed_callbacks.load_state_dict(saved["callbacks"])
    assert resumed_callbacks["ema_9"].num_updates == 2  # iterations 3 (copy) and 4
    for it in range(5, 8):
        train_step(resumed_model, resumed_callbacks, it)

    assert not torch.equal(model.ema_9[0].weight, model.ema_99[0].weight)  # two distinct copies
    assert not torch.equal(model.ema_9[0].weight, model.net[0].weight)  # not re-initialised from net on resume
    for key, value in model.model_dict.state_dict().items():
        assert torch.equal(value, resumed_model.model_dict.state_dict()[key]), key


def test_ema_callback_without_ema_network_does_nothing():
    model = TinyModel(ema_names=())
    callbacks = CallbackDict({"ema": L(f"{CB}.ema.EMACallback")(ema_name="ema_missing")})
    before = copy.deepcopy(model.state_dict())
    callbacks.on_model_init_end(model)
    callbacks.on_training_step_end(model, None, {}, {}, 1)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


# --------------------------------------------------------------------------------------------------------------------
# CT schedule
# --------------------------------------------------------------------------------------------------------------------
def test_ct_ratio_pure_functions():
    assert [ct_ratio(s, 2.0, 0.999) for s in range(4)] == [0.5, 0.75, 0.875, 0.9375]
    assert ct_ratio(20, 2.0, 0.999) == 0.999
    assert ct_stage(100_000, 256, 12500) == 2  # 25.6M images / 12.5M per stage
    assert ct_stage(48_828, 256, 12500) == 0 and ct_stage(48_829, 256, 12500) == 1


def test_ct_schedule_callback_sets_model_ratio_with_resume_iter():
    model = TinyModel()
    callbacks = CallbackDict({"ct": L(f"{CB}.ct_schedule.CTScheduleCallback")()},
                             trainer=SimpleNamespace(global_batch_size=256))
    callbacks.on_train_begin(model, 0)
    assert model.ratio == 0.5
    callbacks.on_training_step_begin(model, 48_829)  # 48,828 iterations done: 12,499,968 images, stage 0
    assert model.ratio == 0.5
    callbacks.on_training_step_begin(model, 48_830)  # 48,829 done: 12,500,224 images, stage 1
    assert model.ratio == 0.75
    model.resume_iter = 100_000
    callbacks.on_training_step_begin(model, 1)
    assert model.ratio == 0.875
    assert callbacks["ct"].logs == {"ct/kimg": 25_600.0, "ct/stage": 2.0, "ct/ratio": 0.875}
    with pytest.raises(ValueError, match="global batch size"):
        CallbackDict({"ct": L(f"{CB}.ct_schedule.CTScheduleCallback")()}).on_train_begin(model, 0)


# --------------------------------------------------------------------------------------------------------------------
# Gradient clipping
# --------------------------------------------------------------------------------------------------------------------
def set_grads(module: nn.Module, value: float) -> torch.Tensor:
    for p in module.parameters():
        p.grad = torch.full_like(p, value)
    return torch.cat([p.grad.flatten() for p in module.parameters()])


def grad_norm(module: nn.Module) -> float:
    return float(torch.cat([p.grad.flatten() for p in module.parameters()]).norm())


def test_grad_clip_clips_every_active_network_and_counts_nonfinite():
    model = TinyModel(with_critic=True)
    callbacks = CallbackDict({"clip": L(f"{CB}.grad_clip.GradClipCallback")(grad_norm=10.0)})
    n = sum(p.numel() for p in model.net.parameters())
    before = set_grads(model.net, 50.0 / math.sqrt(n))  # norm 50
    set_grads(model.fake_score, 0.01)  # small: untouched
    model.net[0].weight.grad[0, 0] = float("nan")
    model.net[2].bias.grad[0] = float("inf")
    callbacks.on_optimizer_step_begin(model, 1)
    clip = callbacks["clip"]
    assert clip.last_nonfinite == {"net": 2, "fake_score": 0}
    assert model.net[0].weight.grad[0, 0] == 0.0 and model.net[2].bias.grad[0] == 0.0
    finite_norm = 50.0 / math.sqrt(n) * math.sqrt(n - 2)
    assert clip.last_norms["net"] == pytest.approx(finite_norm, rel=1e-5)
    assert grad_norm(model.net) == pytest.approx(10.0, rel=1e-5)
    after = torch.cat([p.grad.flatten() for p in model.net.parameters()])
    keep = torch.ones(n, dtype=torch.bool)
    keep[0] = keep[-2] = False  # the NaN (first weight) and the inf (first bias of the last layer, 2 from the end)
    assert torch.allclose(after[keep], before[keep] * (10.0 / finite_norm), rtol=1e-5)  # direction kept
    fake_norm = 0.01 * math.sqrt(sum(p.numel() for p in model.fake_score.parameters()))
    assert grad_norm(model.fake_score) == pytest.approx(fake_norm, rel=1e-5)
    assert clip.logs["grad_norm/net"] == clip.last_norms["net"] and clip.logs["grad_nonfinite/net"] == 2.0


def test_grad_clip_only_clips_networks_that_step_and_respects_model_key():
    model = TinyModel(with_critic=True, critic_every=2)
    callbacks = CallbackDict({"clip": L(f"{CB}.grad_clip.GradClipCallback")(grad_norm=1.0)})
    set_grads(model.net, 1.0)
    set_grads(model.fake_score, 1.0)
    callbacks.on_optimizer_step_begin(model, 1)  # odd iteration: only the critic steps
    assert set(callbacks["clip"].last_norms) == {"fake_score"}
    assert grad_norm(model.fake_score) == pytest.approx(1.0, rel=1e-5) and grad_norm(model.net) > 5

    only_net = CallbackDict({"clip": L(f"{CB}.grad_clip.GradClipCallback")(grad_norm=1.0, model_key="net")})
    set_grads(model.fake_score, 1.0)
    only_net.on_optimizer_step_begin(model, 2)
    assert set(only_net["clip"].last_norms) == {"net"}
    assert grad_norm(model.net) == pytest.approx(1.0, rel=1e-5) and grad_norm(model.fake_score) > 5
    bad = CallbackDict({"clip": L(f"{CB}.grad_clip.GradClipCallback")(model_key="teacher")})
    with pytest.raises(ValueError, match="model_key got 'teacher'; expected 'all' or one of net, fake_score"):
        bad.on_optimizer_step_begin(model, 2)


def test_grad_clip_unscales_with_grad_scaler_before_clipping():
    torch.manual_seed(0)
    model = TinyModel(scaler_scale=1024.0)
    reference = copy.deepcopy(model.net)
    x = torch.randn(8, 4)
    callbacks = CallbackDict({"clip": GradClipCallback(grad_norm=0.05)})
    model.grad_scaler.scale(model.net(x).pow(2).mean()).backward()
    callbacks.on_optimizer_step_begin(model, 1)
    assert grad_norm(model.net) == pytest.approx(min(0.05, callbacks["clip"].last_norms["net"]), rel=1e-4)
    model.grad_scaler.step(model.optimizer_dict["net"])  # must not unscale a second time
    model.grad_scaler.update()
    # the same step in fp32 without a scaler
    ref_opt = torch.optim.SGD(reference.parameters(), lr=model.optimizer_dict["net"].param_groups[0]["lr"], momentum=0.9)
    reference(x).pow(2).mean().backward()
    true_norm = float(torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.05))
    ref_opt.step()
    assert callbacks["clip"].last_norms["net"] == pytest.approx(true_norm, rel=1e-4)
    for p, q in zip(model.net.parameters(), reference.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


# --------------------------------------------------------------------------------------------------------------------
# Param count, forced weight norm, profiler, memory
# --------------------------------------------------------------------------------------------------------------------
def test_param_count_numbers():
    model = TinyModel(with_critic=True)
    callbacks = CallbackDict({"pc": ParamCountCallback()})
    callbacks.on_train_begin(model, 0)
    # Linear(4,8) 40 + BatchNorm(8) 16 + Linear(8,2) 18
    assert callbacks["pc"].counts["net"] == {"total": 74, "trainable": 74, "local": 74}
    assert callbacks["pc"].counts["ema"] == {"total": 74, "trainable": 0, "local": 74}
    assert callbacks["pc"].logs["params/fake_score/total"] == 74.0
    assert callbacks["pc"].logs["params/ema/trainable"] == 0.0
    assert count_parameters(nn.Linear(3, 5, bias=False)) == {"total": 15, "trainable": 15, "local": 15}


class NormedNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 4)

    def forced_weight_normalization(self):
        self.lin.weight.copy_(self.lin.weight / self.lin.weight.norm(dim=1, keepdim=True))


def test_forced_weight_norm_calls_the_network_each_accumulation_step():
    model = TinyModel()
    model.net = NormedNet()
    with torch.no_grad():
        model.net.lin.weight.mul_(7.0)
    callbacks = CallbackDict({"fwn": ForcedWeightNormCallback()})
    for accum_round in range(3):
        callbacks.on_training_accum_step_begin(model, None, 1, accum_round)
    assert callbacks["fwn"].num_calls == 3
    assert torch.allclose(model.net.lin.weight.norm(dim=1), torch.ones(4), atol=1e-6)
    plain = TinyModel()
    weights = plain.net[0].weight.clone()
    callbacks.on_training_accum_step_begin(plain, None, 1, 0)  # no such method: warning, nothing changes
    assert torch.equal(plain.net[0].weight, weights) and callbacks["fwn"].num_calls == 3


def test_train_profiler_phases_partition_iteration_time():
    model = TinyModel()
    trainer = SimpleNamespace(logging_iter=3, global_batch_size=8)
    callbacks = CallbackDict({"prof": TrainProfilerCallback(every_n=None)}, trainer=trainer)
    for it in range(1, 3):
        train_step(model, callbacks, it)
    assert callbacks["prof"].logs == {} and callbacks["prof"].num_iters == 2
    train_step(model, callbacks, 3)
    logs = callbacks["prof"].logs
    phases = sum(logs[f"timing/{k}_s"] for k in ("data", "forward", "backward", "optimizer"))
    assert all(logs[f"timing/{k}_s"] >= 0 for k in ("data", "forward", "backward", "optimizer"))
    assert logs["timing/iteration_s"] == pytest.approx(phases, rel=1e-9)
    assert logs["timing/samples_per_s"] == pytest.approx(8 / logs["timing/iteration_s"])
    assert callbacks["prof"].num_iters == 0  # window reset


def test_mem_stats_reports_rss_on_cpu():
    with open("/proc/self/status") as f:
        vmrss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
    rss = process_rss_bytes()
    assert 0.5 * vmrss < rss < 2 * vmrss
    callbacks = CallbackDict({"mem": MemStatsCallback(every_n=2)})
    model = TinyModel()
    callbacks.on_train_begin(model, 0)
    callbacks.on_training_step_end(model, None, {}, {}, 1)
    assert callbacks["mem"].logs == {}
    callbacks.on_training_step_end(model, None, {}, {}, 2)
    assert callbacks["mem"].logs["mem/rss_gib"] == pytest.approx(rss / 1024**3, rel=0.5)
    if not torch.cuda.is_available():
        assert set(callbacks["mem"].logs) == {"mem/rss_gib"}


# --------------------------------------------------------------------------------------------------------------------
# Image grid
# --------------------------------------------------------------------------------------------------------------------
def test_to_uint8_mapping():
    values = torch.tensor([-1.0, -2.0, 0.0, 0.5, 1.0, 3.0, float("nan")])
    assert to_uint8(values).tolist() == [0, 0, 128, 191, 255, 255, 0]


def test_image_grid_exact_layout_and_png(tmp_path):
    # 4 grayscale 1x1 images -> 2x2 grid, row-major
    gray = torch.tensor([-1.0, 0.0, 1.0, 0.5]).reshape(4, 1, 1, 1)
    assert make_image_grid(gray)[..., 0].tolist() == [[0, 128], [255, 191]]
    # 3 RGB 2x2 images, nrow 2, padding 1: the fourth cell stays pad_value
    rgb = torch.stack([torch.full((3, 2, 2), v) for v in (1.0, 0.0, -1.0)])
    rgb[0, 1] = -1.0  # image 0: green channel off -> magenta
    grid = make_image_grid(rgb, nrow=2, padding=1)
    assert grid.shape == (7, 7, 3) and grid.dtype == np.uint8
    assert grid[1:3, 1:3].reshape(-1, 3).tolist() == [[255, 0, 255]] * 4
    assert grid[1:3, 4:6].reshape(-1, 3).tolist() == [[128, 128, 128]] * 4
    assert grid[4:6, 1:3].reshape(-1, 3).tolist() == [[0, 0, 0]] * 4
    assert grid[4:6, 4:6].sum() == 0 and grid[0].sum() == 0 and grid[:, 3].sum() == 0
    from PIL import Image

    path = save_image_grid(rgb, tmp_path / "sub" / "grid.png", nrow=2, padding=1)
    assert np.array_equal(np.asarray(Image.open(path)), grid)
    gray_path = save_image_grid(gray, tmp_path / "gray.png")
    assert np.asarray(Image.open(gray_path)).tolist() == [[0, 128], [255, 191]]
    with pytest.raises(ValueError, match=r"shape \[B, C, H, W\]"):
        make_image_grid(torch.zeros(4))


# --------------------------------------------------------------------------------------------------------------------
# Two real gloo ranks: loss averages and memory stats are reduced over ranks
# --------------------------------------------------------------------------------------------------------------------
def _two_rank_worker(rank: int, port: int, out_dir: str) -> None:
    import json
    import os

    os.environ["WANDB_MODE"] = "disabled"
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        trainer = SimpleNamespace(logging_iter=2, run_dir=os.path.join(out_dir, "run"))
        callbacks = CallbackDict({"wandb": L(f"{CB}.wandb.WandbCallback")(save_png=False),
                                  "mem": MemStatsCallback(every_n=2)}, trainer=trainer)
        trainer.callbacks = callbacks
        callbacks.on_app_begin()
        for it in (1, 2, 3, 4):  # rank r reports loss 10*r + it; iteration 1 is logged alone, then (3, 4)
            callbacks.on_training_step_end(None, None, {}, {"total_loss": torch.tensor(10.0 * rank + it)}, it)
        row = callbacks["wandb"].last_logged
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump({"loss": row["train/total_loss"], "rss": row["mem/rss_gib"],
                       "own_rss": process_rss_bytes() / 1024**3, "iteration": row["iteration"]}, f)
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow  # two spawned processes import torch: ~10 s on a loaded 2-core machine
def test_loss_averages_and_memory_are_reduced_over_two_gloo_ranks(tmp_path):
    import json
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_two_rank_worker, args=(port, str(tmp_path)), nprocs=2, join=True)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for res in results:
        assert res["iteration"] == 4
        assert res["loss"] == pytest.approx((3 + 4 + 13 + 14) / 4)  # mean over iterations 3-4 and both ranks
    assert results[0]["rss"] == results[1]["rss"] >= max(r["own_rss"] for r in results) * 0.5
    assert not (tmp_path / "run").exists()  # disabled: no W&B files on any rank
