"""FastGenModel: precision/AMP, EMA copies, pretrained loading, optimizers, device choice, few-step sampler."""

import pickle

import pytest
import torch
from safetensors.torch import save_file

from fastgen.configs.experiments.Toy import config_sft
from fastgen.configs.net import GMM_Oracle_Config
from fastgen.methods.model import FastGenModel, ema_names, resolve_device, to_dtype


def toy_model_config(**changes):
    config = config_sft.create_config().model
    config.net.hidden_dim = 16
    config.net.num_layers = 1
    for key, value in changes.items():
        setattr(config, key, value)
    return config


class TeacherModel(FastGenModel):
    needs_teacher = True


class AlternatingModel(FastGenModel):
    """Two optimizers stepping on alternate iterations (the DMD2 pattern)."""

    def init_optimizers(self):
        super().init_optimizers()
        self.add_optimizer("ema_like", self.other, self.config.net_optimizer, self.config.net_scheduler)

    def build_model(self):
        super().build_model()
        self.other = torch.nn.Linear(2, 2)

    def active_optimizer_names(self, iteration):
        return ["net"] if iteration % 2 == 0 else ["ema_like"]


def test_precision_and_amp_settings():
    model = FastGenModel(toy_model_config(precision="float64", precision_amp="float64"))
    assert model.precision == torch.float64 and model.precision_amp is None
    assert next(model.net.parameters()).dtype == torch.float64
    model = FastGenModel(toy_model_config(precision_amp="bfloat16"))
    assert model.precision == torch.float32 and model.precision_amp == torch.bfloat16
    with model.autocast():
        y = torch.nn.functional.linear(torch.ones(2, 3), torch.ones(4, 3))
    assert y.dtype == torch.bfloat16
    assert to_dtype("float16", "precision") == torch.float16
    with pytest.raises(ValueError, match="model.precision='fp8'"):
        FastGenModel(toy_model_config(precision="fp8"))


def test_ema_copies_are_frozen_deep_copies_and_checkpointed():
    assert ema_names(True) == ["ema"] and ema_names(False) == [] and ema_names(["ema_1", "ema_2"]) == ["ema_1", "ema_2"]
    with pytest.raises(ValueError, match="starting with 'ema'"):
        ema_names(["slow"])
    model = FastGenModel(toy_model_config(use_ema=["ema_a", "ema_b"]))
    assert list(model.model_dict.keys()) == ["net", "ema_a", "ema_b"]
    for name in ("ema_a", "ema_b"):
        ema = getattr(model, name)
        assert ema is not model.net and not ema.training
        for p_ema, p_net in zip(ema.parameters(), model.net.parameters()):
            assert torch.equal(p_ema, p_net) and not p_ema.requires_grad and p_ema.data_ptr() != p_net.data_ptr()
    assert model.net_inference is model.ema_a


def test_teacher_loading_student_init_and_teacher_never_checkpointed(tmp_path):
    reference = FastGenModel(toy_model_config()).net
    with torch.no_grad():
        for p in reference.parameters():
            p.uniform_(-1, 1)
    state = {k: v.contiguous() for k, v in reference.state_dict().items()}
    for path in (tmp_path / "w.pth", tmp_path / "w.safetensors"):
        torch.save(state, path) if path.suffix == ".pth" else save_file(state, str(path))
        model = TeacherModel(toy_model_config(pretrained_model_path=str(path)))
        for key, value in state.items():
            assert torch.equal(model.teacher.state_dict()[key], value)
            assert torch.equal(model.net.state_dict()[key], value)  # student starts from the teacher
        assert not any(p.requires_grad for p in model.teacher.parameters()) and not model.teacher.training
        assert "teacher" not in model.model_dict and "teacher" in model.fsdp_dict
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        TeacherModel(toy_model_config(pretrained_model_path=str(tmp_path / "nope.pth")))


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pretrained_file_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"w": _Payload(str(marker))}, f)
    with pytest.raises(Exception, match="refusing to load"):
        FastGenModel(toy_model_config(pretrained_student_net_path=str(path)))
    assert not marker.exists()


def test_device_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="expected one of"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU is available"):
            FastGenModel(toy_model_config(device="cuda"))


def test_optimizers_schedulers_grad_scaler_and_alternation():
    config = toy_model_config()
    config.net_optimizer.lr = 0.01
    config.net_scheduler.warm_up_steps = [4]
    config.net_scheduler.f_start = [0.0]
    model = AlternatingModel(config)
    model.on_train_begin()
    model.init_optimizers()
    assert set(model.optimizer_dict) == {"net", "ema_like"} and set(model.scheduler_dict) == {"net", "ema_like"}
    assert isinstance(model.optimizers["net"], torch.optim.Adam)
    assert not model.grad_scaler.is_enabled()
    assert model.get_optimizers(2) == [model.optimizers["net"]]
    assert model.get_optimizers(3) == [model.optimizers["ema_like"]]
    before_other = [p.clone() for p in model.other.parameters()]
    for p in list(model.net.parameters()) + list(model.other.parameters()):
        p.grad = torch.ones_like(p)
    model.optimizers_schedulers_step(2)  # only net steps; only its schedule advances
    assert all(torch.equal(a, b) for a, b in zip(before_other, model.other.parameters()))
    assert model.schedulers["net"].last_epoch == 1 and model.schedulers["ema_like"].last_epoch == 0
    assert model.optimizers["net"].param_groups[0]["lr"] == pytest.approx(0.01 * 1 / 4)
    model.optimizers_zero_grad(2)
    assert all(p.grad is None for p in model.parameters())
    fp16 = FastGenModel(toy_model_config(precision_amp="float16", grad_scaler_enabled=True))
    fp16.init_optimizers()
    assert fp16.grad_scaler.is_enabled()


def test_generator_fn_one_and_two_steps_match_manual_computation():
    model = FastGenModel(toy_model_config(student_sample_type="ode"))
    net = model.net
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.3)
    noise = torch.randn(5, 2, generator=torch.Generator().manual_seed(1))
    out = model.generator_fn(net, noise, student_sample_steps=1)
    t80 = torch.full((5,), 80.0, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(out, net(noise * 80.0, t80, fwd_pred_type="x0"))
        t_list = [80.0, 1.5, 0.0]
        out2 = model.generator_fn(net, noise, student_sample_steps=2, t_list=t_list)
        x = noise * 80.0
        x0 = net(x, t80, fwd_pred_type="x0")
        eps = (x - x0) / 80.0  # ode: the noise implied by (x, x0)
        x = x0 + 1.5 * eps
        expected = net(x, torch.full((5,), 1.5, dtype=torch.float64), fwd_pred_type="x0")
    torch.testing.assert_close(out2, expected, atol=1e-5, rtol=1e-5)
    assert net.training  # generator_fn restores the train flag
    with pytest.raises(ValueError, match="student_sample_steps\\+1=3"):
        model.generator_fn(net, noise, student_sample_steps=2, t_list=[80.0, 0.0])


def test_exact_teacher_as_net_samples_the_mixture():
    """generator_fn with the exact GMM denoiser and many ODE steps reproduces the data distribution."""
    from fastgen.utils.gmm import make_gmm, sliced_wasserstein

    config = toy_model_config(student_sample_type="ode")
    config.net = GMM_Oracle_Config
    model = FastGenModel(config)
    noise = torch.randn(2000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t_list = model.net.noise_scheduler.get_t_list(40)
    samples = model.generator_fn(model.net, noise, student_sample_steps=40, t_list=t_list.tolist())
    data, _ = make_gmm("ring8").sample(2000, torch.Generator().manual_seed(1))
    assert sliced_wasserstein(samples, data, generator=torch.Generator().manual_seed(2)) < 0.1


def test_random_teacher_warning_comes_when_training_starts_not_at_build():
    # evaluation scripts clear pretrained_model_path themselves (they load a checkpoint's student): no warning there
    from loguru import logger

    messages = []
    sink = logger.add(lambda m: messages.append(str(m)), level="WARNING")
    try:
        model = TeacherModel(toy_model_config(pretrained_model_path=""))
        assert messages == [] and model.random_teacher
        model.on_train_begin()
        assert sum("the teacher keeps its random initialisation" in m for m in messages) == 1
        messages.clear()
        trained = TeacherModel(toy_model_config(pretrained_model_path=""))
        trained.resume_iter = 100  # a stage checkpoint (pretrained_ckpt_path) loaded the networks
        trained.on_train_begin()
        assert messages == []
    finally:
        logger.remove(sink)
