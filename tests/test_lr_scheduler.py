"""LR multipliers (pure functions of the step) and the optimizer/scheduler factories."""

import math

import pytest
import torch

from fastgen.configs.opt import (
    BaseOptimizerConfig,
    BaseSchedulerConfig,
    RAdamOptimizerConfig,
    get_optimizer,
    get_scheduler,
)
from fastgen.utils import instantiate
from fastgen.utils.lr_scheduler import (
    LambdaInverseSquareRootScheduler,
    LambdaLinearScheduler,
    LambdaWarmUpCosineScheduler,
    LambdaWarmUpCosineScheduler2,
)


def test_linear_warmup_then_constant_default():
    f = instantiate(BaseSchedulerConfig)
    assert f(0) == pytest.approx(1e-6)
    assert f(500) == pytest.approx(1e-6 + (1 - 1e-6) * 0.5)
    assert f(1000) == 1.0 and f(10**9) == 1.0


def test_linear_warmup_then_linear_decay_and_cycles():
    f = LambdaLinearScheduler(warm_up_steps=[10, 0], f_start=[0.0, 0.5], f_max=[1.0, 0.5], f_min=[0.0, 0.1],
                              cycle_lengths=[110, 40])
    assert f(5) == pytest.approx(0.5)
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5)
    assert f(109) == pytest.approx(0.01)
    assert f(110) == pytest.approx(0.5)  # second cycle starts at its f_max (no warm-up)
    assert f(130) == pytest.approx(0.3)
    assert f(1000) == pytest.approx(0.1)  # past the last cycle: stays at its end


def test_zero_warmup_is_constant():
    f = LambdaLinearScheduler(warm_up_steps=[0], cycle_lengths=[1e10])
    assert [f(n) for n in (0, 1, 10**6)] == [1.0, 1.0, 1.0]


def test_linear_rejects_mismatched_lists():
    with pytest.raises(ValueError, match="warm_up_steps has 2 entries"):
        LambdaLinearScheduler(warm_up_steps=[1, 2], cycle_lengths=[10])
    with pytest.raises(ValueError, match="positive"):
        LambdaLinearScheduler(cycle_lengths=[0])


def test_cosine_with_warmup():
    f = LambdaWarmUpCosineScheduler(warm_up_steps=10, lr_min=0.1, lr_max=1.0, lr_start=0.0, max_decay_steps=110)
    assert f(0) == 0.0 and f(5) == pytest.approx(0.5)
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.55)
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="max_decay_steps"):
        LambdaWarmUpCosineScheduler(10, 0, 1, 0, 10)


def test_cosine_cycles():
    f = LambdaWarmUpCosineScheduler2(warm_up_steps=[0, 0], f_min=[0.0, 0.0], f_max=[1.0, 0.5], f_start=[0, 0],
                                     cycle_lengths=[100, 100])
    assert f(50) == pytest.approx(0.5) and f(150) == pytest.approx(0.25)


def test_inverse_square_root():
    f = LambdaInverseSquareRootScheduler(warm_up_steps=100, decay_steps=1000)
    assert f(50) == pytest.approx(0.5)
    assert f(1000) == pytest.approx(1.0)
    assert f(4000) == pytest.approx(0.5)
    assert f(16000) == pytest.approx(0.25)
    g = LambdaInverseSquareRootScheduler(warm_up_steps=0, decay_steps=0)
    assert g(0) == 1.0 and g(10**6) == 1.0
    assert LambdaInverseSquareRootScheduler(0, 2000)(8000) == pytest.approx(1 / math.sqrt(4))


def tiny_model():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    model[0].weight.requires_grad_(False)
    return model


def test_get_optimizer_types_and_frozen_params():
    model = tiny_model()
    opt = instantiate(BaseOptimizerConfig, model=model)
    assert isinstance(opt, torch.optim.AdamW)
    group = opt.param_groups[0]
    assert group["lr"] == 1e-4 and group["weight_decay"] == 0.01 and group["betas"] == (0.9, 0.999)
    assert len(group["params"]) == 3  # the frozen weight is excluded
    assert isinstance(instantiate(RAdamOptimizerConfig, model=model), torch.optim.RAdam)
    assert isinstance(get_optimizer(model, optim_type="adam", lr=0.5), torch.optim.Adam)


def test_get_optimizer_unknown_type_is_an_error():
    with pytest.raises(ValueError, match="optim_type='sgd' is not supported; expected one of adam, adamw, radam"):
        get_optimizer(tiny_model(), optim_type="sgd")


def test_get_scheduler_multiplies_base_lr():
    model = tiny_model()
    opt = get_optimizer(model, optim_type="adam", lr=0.1)
    cfg = BaseSchedulerConfig.copy()
    cfg.warm_up_steps = [4]
    cfg.f_start = [0.0]
    sched = get_scheduler(opt, cfg)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.0, 0.025, 0.05, 0.075, 0.1, 0.1])
    state = sched.state_dict()
    sched2 = get_scheduler(get_optimizer(model, optim_type="adam", lr=0.1), cfg)
    sched2.load_state_dict(state)
    assert sched2.last_epoch == 6
