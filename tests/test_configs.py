"""Config classes: reference defaults, method/experiment values, and defaults isolation."""

import copy
import importlib

import attrs
import pytest
from _config_files import EXPERIMENT_FILES, METHODS, REPO
from omegaconf import DictConfig

from fastgen.configs import callbacks as cb
from fastgen.configs import config as C
from fastgen.configs import net as N
from fastgen.configs import opt as O
from fastgen.configs.config_utils import import_config_from_python_file


def method(name):
    return importlib.import_module(f"fastgen.configs.methods.config_{name}")


def test_base_defaults_match_reference():
    cfg = C.BaseConfig()
    assert (cfg.log_config.project, cfg.log_config.group, cfg.log_config.name) == ("fastgen", "cifar10", "debug")
    assert cfg.log_config.wandb_mode == "online"
    assert cfg.log_config.wandb_credential == "./credentials/wandb_api.txt"
    t = cfg.trainer
    assert (t.save_ckpt_iter, t.validation_iter, t.logging_iter, t.max_iter) == (5000, 1000, 1000, 1000000)
    assert (t.seed, t.val_seed, t.resume, t.ddp, t.fsdp, t.tf32_enabled) == (0, None, True, False, False, True)
    assert (t.grad_accum_rounds, t.batch_size_global, t.fsdp_min_num_params) == (1, None, 10_000_000)
    assert t.global_vars is None and t.global_vars_val == [None] and t.augment_pipe is None
    assert (t.cudnn.deterministic, t.cudnn.benchmark) == (False, True)
    assert list(t.callbacks) == ["wandb"]
    ck = t.checkpointer
    assert (ck.save_dir, ck.use_s3, ck.s3_container) == ("checkpoints", False, "s3://checkpoints/fastgen")
    assert ck.pretrained_ckpt_key_map == {"net": "net"} and ck.s3_credential == "./credentials/s3.json"
    m = cfg.model
    assert m.device == "auto" and m.precision == "float32" and m.precision_amp is None
    assert m.input_shape == [3, 32, 32] and m.use_ema is False and m.student_sample_steps == 1
    assert m.student_sample_type == "sde" and m.grad_scaler_init_scale == 65536.0
    assert m.grad_scaler_growth_interval == 2000 and m.load_student_weights is True
    assert m.net._target_ == "fastgen.networks.EDM.network.EDMPrecond" and m.net.label_dim == 10
    assert m.net_optimizer.optim_type == "adamw" and m.net_optimizer.lr == 1e-4
    assert list(m.net_optimizer.betas) == [0.9, 0.999] and m.net_optimizer.weight_decay == 0.01
    assert list(m.net_scheduler.warm_up_steps) == [1000] and list(m.net_scheduler.f_start) == [1e-6]
    s = m.sample_t_cfg
    assert (s.time_dist_type, s.train_p_mean, s.train_p_std, s.shift) == ("uniform", -1.1, 2.0, 5.0)
    assert (s.min_t, s.max_t, s.t_list, s.log_t_df) == (0.002, 80.0, None, 0.01)
    assert cfg.model_class._target_ == "fastgen.methods.FastGenModel" and cfg.model_class.config is None
    assert cfg.dataloader_train._target_ == "fastgen.datasets.image_loader.ImageLoader"
    assert cfg.dataloader_train.batch_size == 128 and cfg.dataloader_val is None
    e = cfg.eval
    assert (e.num_samples, e.save_images, e.min_ckpt, e.max_ckpt, e.samples_dir) == (
        50000, False, 0, 100000000, "samples")


def test_save_path_reads_environment_now(monkeypatch, tmp_path):
    cfg = C.LogConfig(project="p", group="g", name="n")
    monkeypatch.delenv("FASTGEN_OUTPUT_ROOT", raising=False)
    assert cfg.save_path == "FASTGEN_OUTPUT/p/g/n"
    monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path))
    assert cfg.save_path == f"{tmp_path}/p/g/n"


def test_defaults_are_fresh_per_instance():
    a, b = C.BaseConfig(), C.BaseConfig()
    a.model.net.model_channels = 7
    a.model.input_shape.append(9)
    a.trainer.callbacks.wandb.sample_logging_iter = 3
    a.trainer.checkpointer.pretrained_ckpt_key_map["ema"] = "ema"
    a.dataloader_train.batch_size = 1
    a.model_class.config = "x"
    a.model.net_optimizer.betas[0] = 0.5
    assert b == C.BaseConfig()
    assert b.model.net.model_channels == 128 and b.model.input_shape == [3, 32, 32]
    assert N.EDM_CIFAR10_Config.model_channels == 128
    assert cb.WANDB_CALLBACK["wandb"].sample_logging_iter is None
    assert list(O.BaseOptimizerConfig.betas) == [0.9, 0.999]


def test_assigning_module_level_configs_copies_them():
    cfg = C.BaseConfig()
    cfg.model.net = N.EDM_ImageNet64_Config
    cfg.model.net.dropout = 0.5
    cfg.trainer.callbacks = DictConfig({**cb.GradClip_CALLBACK})
    cfg.trainer.callbacks.grad_clip.grad_norm = 1.0
    shape = [1, 2]
    cfg.model.input_shape = shape
    shape.append(3)
    assert N.EDM_ImageNet64_Config.dropout == 0.0
    assert cb.GradClip_CALLBACK["grad_clip"].grad_norm == 10.0
    assert cfg.model.input_shape == [1, 2]


@pytest.mark.parametrize("name", METHODS)
def test_method_configs_are_isolated(name):
    mod = method(name)
    first, second = mod.create_config(), mod.create_config()
    assert first == second and first is not second
    first.model.net.dropout = 0.77
    first.trainer.callbacks.clear()
    first.model.sample_t_cfg.min_t = 123.0
    assert mod.create_config() == second
    assert second.model.net.dropout != 0.77 and len(second.trainer.callbacks) > 0


def test_experiment_edits_do_not_leak_into_methods_or_modules():
    before = method("dmd2").create_config()
    for path in EXPERIMENT_FILES:
        import_config_from_python_file(REPO / path)
    assert method("dmd2").create_config() == before
    assert N.EDM_CIFAR10_Config.dropout == 0.0 and N.EDM_ImageNet64_Config.dropout == 0.0
    assert O.BaseSchedulerConfig.warm_up_steps[0] == 1000
    assert cb.GradClip_CALLBACK["grad_clip"].grad_norm == 10.0
    assert cb.EMA_CALLBACK["ema"].type == "constant"


def test_method_targets():
    expected = {
        "sft": "SFTModel", "kd": "KDModel", "cm": "CMModel", "scm": "SCMModel", "tcm": "TCMModel",
        "mean_flow": "MeanFlowModel", "dmd2": "DMD2Model", "f_distill": "FdistillModel", "ladd": "LADDModel",
        "causvid": "CausVidModel", "self_forcing": "SelfForcingModel", "sft_causal": "CausalSFTModel",
        "kd_causal": "CausalKDModel", "sid": "SiDModel",
    }
    for name, cls in expected.items():
        cfg = method(name).create_config()
        assert cfg.model_class._target_ == f"fastgen.methods.{cls}"
        assert cfg.model_class.config is None
    # every listed class resolves (the causal ones included)
    import fastgen.methods as methods

    for cls in expected.values():
        assert isinstance(getattr(methods, cls), type) and getattr(methods, cls).__name__ == cls


def test_dmd2_method_values():
    cfg = method("dmd2").create_config()
    m = cfg.model
    assert (m.student_update_freq, m.gan_loss_weight_gen, m.gan_use_same_t_noise) == (5, 0.001, False)
    assert (m.fake_score_pred_type, m.gan_r1_reg_weight, m.gan_r1_reg_alpha) == (None, 0.0, 0.1)
    assert m.discriminator._target_.endswith("Discriminator_EDM") and list(m.discriminator.feature_indices) == [0, 1, 2]
    assert m.sample_t_cfg.time_dist_type == "polynomial"
    for sched in (m.net_scheduler, m.fake_score_scheduler, m.discriminator_scheduler):
        assert list(sched.warm_up_steps) == [0]
    assert cfg.dataloader_train.batch_size == 256
    assert list(cfg.trainer.callbacks) == ["grad_clip", "gpu_stats", "train_profiler", "param_count", "wandb"]
    assert cfg.trainer.callbacks.gpu_stats._target_ == "fastgen.callbacks.mem_stats.MemStatsCallback"


def test_cm_family_values():
    cm = method("cm").create_config()
    assert cm.model.net_optimizer.optim_type == "radam" and cm.model.net_optimizer.weight_decay == 0.0
    assert (cm.model.sample_t_cfg.time_dist_type, cm.model.sample_t_cfg.min_r) == ("lognormal", 0.0)
    assert cm.model.loss_config.huber_const == 1e-8 and cm.model.loss_config.weighting_ct_loss == "default"
    assert cm.trainer.callbacks.ct_schedule.kimg_per_stage == 6400
    assert cm.trainer.callbacks.grad_clip.grad_norm == 1e6 and cm.trainer.tf32_enabled is False
    assert cm.model.net.dropout == 0.2 and cm.model.net.label_dim == 0 and cm.dataloader_train.use_labels is False
    tcm = method("tcm").create_config()
    assert (tcm.model.boundary_prob, tcm.model.w_boundary, tcm.model.transition_t) == (0.25, 0.1, 1.0)
    assert tcm.model.sample_t_cfg.time_dist_type == "log_t" and tcm.model.sample_t_cfg.min_t == 1.0
    assert (tcm.model.sample_t_cfg.train_p_mean, tcm.model.sample_t_cfg.train_p_std) == (0.0, 0.2)
    assert tcm.model.net_optimizer.lr == 5e-5 and tcm.trainer.callbacks.ct_schedule.kimg_per_stage == 1000
    assert tcm.trainer.checkpointer.pretrained_ckpt_key_map == {"cm_teacher": "ema", "net": "ema", "ema": "ema"}
    assert tcm.model.loss_config == cm.model.loss_config and tcm.model.net == cm.model.net
    scm = method("scm").create_config()
    assert (scm.model.sample_t_cfg.train_p_mean, scm.model.sample_t_cfg.train_p_std) == (-1.0, 1.4)
    assert scm.model.loss_config.tangent_warmup_steps == 10000 and scm.trainer.callbacks.ema.type == "halflife"
    assert list(scm.model.net_optimizer.betas) == [0.9, 0.99]
    mf = method("mean_flow").create_config()
    assert mf.model.student_sample_type == "ode" and mf.model.load_student_weights is False
    assert mf.model.net.r_timestep is True and mf.model.sample_r_cfg.enabled is False
    assert mf.model.loss_config.loss_type == "opt_grad" and mf.model.loss_config.norm_method == "poly_1.0"


def test_other_method_values():
    assert method("sft").create_config().model.cond_dropout_prob is None
    assert method("sft_causal").create_config().model.student_sample_steps == 4
    assert method("kd_causal").create_config().model.context_noise == 0.0
    fd = method("f_distill").create_config().model.f_distill
    assert (fd.f_div, fd.ratio_lower, fd.ratio_upper, fd.bin_num, fd.ratio_ema_rate) == ("js", 0.1, 20.0, 10, 0.0)
    sf = method("self_forcing").create_config()
    assert "ema" in sf.trainer.callbacks and sf.model.use_ema is True and sf.model.student_sample_steps == 4
    assert (sf.model.enable_gradient_in_rollout, sf.model.same_step_across_blocks) == (True, True)
    sid = method("sid").create_config().model
    assert (sid.sid_alpha, sid.sid_loss_weight, sid.student_update_freq, sid.gan_loss_weight_gen) == (1.2, 1.0, 1, 0.0)
    ladd = method("ladd").create_config().model
    assert ladd.student_update_freq == 5 and not hasattr(ladd, "gan_loss_weight_gen")


def test_dmd2_test_experiment_matches_inventory(monkeypatch, tmp_path):
    monkeypatch.setenv("CKPT_ROOT_DIR", str(tmp_path / "ckpts"))
    cfg = import_config_from_python_file("fastgen/configs/experiments/EDM/config_dmd2_test.py")
    assert cfg.model.pretrained_model_path == f"{tmp_path}/ckpts/cifar10/edm-cifar10-32x32-cond-vp.pth"
    t = cfg.trainer
    assert (t.max_iter, t.logging_iter, t.save_ckpt_iter, t.batch_size_global) == (5000, 50, 1000, 64)
    assert cfg.dataloader_train.batch_size == 64 and cfg.model.use_ema is False
    assert "ema" not in cfg.trainer.callbacks
    base = method("dmd2").create_config()
    for field in ("net", "discriminator", "net_optimizer", "sample_t_cfg", "student_update_freq"):
        assert getattr(cfg.model, field) == getattr(base.model, field)


def test_experiment_ema_sets_match_callbacks():
    for path in EXPERIMENT_FILES:
        cfg = import_config_from_python_file(REPO / path)
        emas = sorted(k for k in cfg.trainer.callbacks if k.startswith("ema"))
        if isinstance(cfg.model.use_ema, list):
            assert sorted(cfg.model.use_ema) == emas, path
            assert all(cfg.trainer.callbacks[k].ema_name == k for k in emas), path


def test_selected_experiment_values():
    load = lambda p: import_config_from_python_file(REPO / "fastgen/configs/experiments" / p)  # noqa: E731
    in64 = load("EDM/config_dmd2_in64.py")
    assert in64.model.net.model_type == "DhariwalUNet" and in64.model.input_shape == [3, 64, 64]
    assert in64.model.fake_score_optimizer.lr == 2e-6 and in64.model.gan_loss_weight_gen == 3e-3
    assert in64.model.discriminator.in_channels == 768
    mf = load("EDM/config_mf_cifar10.py")
    assert (mf.model.net.schedule_type, mf.model.net.net_pred_type, mf.model.net.drop_precond) == ("rf", "flow", "both")
    assert mf.model.sample_t_cfg.r_sample_ratio == 0.75 and mf.model.sample_r_cfg.train_p_mean == -4.0
    assert mf.trainer.augment_pipe._target_ == "fastgen.datasets.augment.AugmentPipe"
    cm64 = load("EDM/config_cm_in64.py")
    assert cm64.model.net_scheduler._target_.endswith("LambdaInverseSquareRootScheduler")
    assert cm64.model.net_scheduler.decay_steps == 2000 and cm64.trainer.callbacks.ct_schedule.q == 4.0
    assert load("EDM/config_f_distill_cifar10.py").model.f_distill.f_div == "kl"
    assert load("EDM/config_scd_cifar10.py").model.loss_config.use_cd is True
    assert "forced_weight_norm" in load("EDM2/config_cm_s.py").trainer.callbacks


def test_network_configs():
    assert N.EDM2_IN64_XL_Config.model_channels == 384 and N.EDM2_IN64_S_Config.model_channels == 192
    assert (N.DiT_IN256_XL_Config.hidden_size, N.DiT_IN256_XL_Config.depth) == (1152, 28)
    assert N.Toy_MLP_Config._target_ == "fastgen.networks.toy.ToyMLP" and N.Toy_MLP_Config.hidden_dim == 128
    assert N.GMM_Oracle_Config.gmm_name == "ring8"


def test_config_nodes_are_attrs_without_slots():
    for cls in (C.BaseConfig, C.BaseModelConfig, C.BaseTrainerConfig, C.LogConfig, C.EvalConfig,
                C.CheckpointerConfig, C.SampleTConfig, C.CuDNNConfig):
        assert attrs.has(cls) and hasattr(cls(), "__dict__")
    deep = copy.deepcopy(C.BaseConfig())
    assert deep == C.BaseConfig()


def _lazy_calls(node, found):
    if attrs.has(type(node)):
        for f in attrs.fields(type(node)):
            _lazy_calls(getattr(node, f.name), found)
    elif isinstance(node, (dict, DictConfig)):
        if "_target_" in node:
            found.setdefault(node["_target_"], set()).update(k for k in node if k != "_target_")
        for key in node:
            _lazy_calls(node[key], found)
    return found


def test_lazycall_targets_accept_their_kwargs():
    """Every target that exists accepts every keyword the shipped configs give it (catches renamed kwargs)."""
    import inspect

    from fastgen.utils import InstantiationError, locate

    found = {}
    for path in EXPERIMENT_FILES + [f"fastgen/configs/methods/config_{m}.py" for m in METHODS]:
        _lazy_calls(import_config_from_python_file(REPO / path), found)
    for module in (N, cb, O, importlib.import_module("fastgen.configs.data"),
                   importlib.import_module("fastgen.configs.discriminator")):
        for value in vars(module).values():
            if isinstance(value, (dict, DictConfig)):
                _lazy_calls(value, found)
    assert "fastgen.networks.EDM.network.EDMPrecond" in found and len(found) >= 25
    checked = 0
    for target, keys in sorted(found.items()):
        try:
            fn = locate(target)
        except InstantiationError:
            continue  # a component not written yet: its config loads, instantiating it names it
        inspect.signature(fn).bind_partial(**dict.fromkeys(keys))
        checked += 1
    assert checked >= 1


@pytest.mark.parametrize("path", ["fastgen/configs/methods/config_cm.py", "fastgen/configs/methods/config_dmd2.py",
                                  "fastgen/configs/experiments/EDM2/config_tcm_s.py"])
def test_model_config_assigns_into_omegaconf(path):
    # OmegaConf has no Union of containers and no Optional[DictConfig]: every field type must be one it accepts
    from omegaconf import OmegaConf

    from fastgen.configs.config_utils import import_config_from_python_file, override_config_with_opts

    config = import_config_from_python_file(path)
    tree = OmegaConf.create({})
    tree.model = config.model
    assert tree.model.use_ema == config.model.use_ema and tree.model.teacher is None
    assert tree.model.net.model_channels == config.model.net.model_channels
    config = override_config_with_opts(config, ["-", "model.use_ema=[ema,ema_2]", "model.teacher={_target_: a.B, x: 1}"])
    assert config.model.use_ema == ["ema", "ema_2"]
    assert type(config.model.teacher).__name__ == "DictConfig" and dict(config.model.teacher) == {"_target_": "a.B",
                                                                                                    "x": 1}


@pytest.mark.parametrize("path", EXPERIMENT_FILES)
def test_every_experiment_dryrun_prints_its_resolved_config(path, capsys, monkeypatch, tmp_path):
    """`train.py --config=PATH --dryrun` (in-process): exit 0, YAML equal to the config's own serialisation."""
    import yaml

    from fastgen.cli import parse_args, resolve_config, run_cli
    from fastgen.configs.config_utils import serialize_config

    monkeypatch.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path))

    def main(argv):
        from fastgen.cli import setup

        setup(parse_args(argv))

    assert run_cli(main, ["--config", str(REPO / path), "--dryrun"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    expected = resolve_config(parse_args(["--config", str(REPO / path)]))
    assert printed == yaml.safe_load(serialize_config(expected, return_type="yaml", include_classes=False))
    assert not any(tmp_path.iterdir())  # a dry run writes nothing


def test_large_image_family_configs_match_reference():
    load = lambda p: import_config_from_python_file(REPO / "fastgen/configs/experiments" / p)  # noqa: E731
    sd = load("SD15/config_dmd2.py").model
    assert sd.net._target_ == "fastgen.networks.hf.SD15" and sd.input_shape == [4, 64, 64]
    assert (sd.precision_amp, sd.fake_score_pred_type, sd.gan_loss_weight_gen) == ("bfloat16", "x0", 1e-3)
    assert (sd.guidance_scale, sd.student_update_freq, sd.net_optimizer.lr, sd.fake_score_optimizer.lr) == (
        1.75, 10, 1e-5, 1e-5)
    assert (sd.sample_t_cfg.time_dist_type, sd.sample_t_cfg.min_t, sd.sample_t_cfg.max_t) == ("uniform", 0.001, 0.999)
    assert sd.discriminator._target_.endswith("Discriminator_SD15") and sd.discriminator.resolution == 512
    assert load("SD15/config_dmd2.py").trainer.batch_size_global == 2048
    assert load("SD15/config_f_distill.py").model.f_distill.f_div == "js"
    sft = load("SD15/config_sft.py").model
    assert (sft.guidance_scale, sft.student_sample_steps) == (7.5, 50)
    xl = load("SDXL/config_dmd2.py")
    assert (xl.model.net_optimizer.lr, xl.model.gan_loss_weight_gen, xl.model.guidance_scale) == (5e-5, 5e-3, 8.0)
    assert xl.model.enable_preprocessors is False and xl.model.input_shape == [4, 128, 128]
    assert xl.dataloader_train.batch_size == 6 and xl.trainer.max_iter == 25000
    assert xl.model.discriminator.resolution == 1024
    assert load("SDXL/config_f_distill.py").model.net_optimizer.lr == 5e-7
    kd = load("SDXL/config_kd.py")
    assert kd.model_class._target_ == "fastgen.methods.KDModel" and "noise" in kd.dataloader_train.key_map
    assert (kd.dataloader_train.batch_size, kd.trainer.max_iter) == (16, 6000)
    flux = load("Flux/config_dmd2.py").model
    assert (flux.precision, flux.gan_loss_weight_gen, flux.gan_use_same_t_noise) == ("bfloat16", 0.03, True)
    assert (flux.net.guidance_scale, flux.student_sample_steps, flux.discriminator.num_blocks) == (3.5, 4, 57)
    qwen = load("QwenImage/config_dmd2.py")
    assert qwen.model.fsdp_meta_init and qwen.trainer.fsdp and qwen.trainer.fsdp_cpu_offload
    assert (qwen.model.precision, qwen.model.precision_fsdp, qwen.model.guidance_scale) == ("bfloat16", "float32", 4.0)
    assert qwen.model.discriminator.num_blocks == 60 and qwen.model.input_shape == [16, 64, 64]
    assert qwen.dataloader_train._target_ == "fastgen.datasets.wds.loaders.ImageWDSLoader"


def test_dit_edm_edm2_new_configs_match_reference():
    load = lambda p: import_config_from_python_file(REPO / "fastgen/configs/experiments" / p)  # noqa: E731
    mf = load("DiT/config_mf_b.py")
    m = mf.model
    assert m.net.hidden_size == 768 and (m.net.scale_t, m.net.r_timestep, m.net.time_cond_type) == (
        False, True, "diff")
    assert (m.precision_amp, m.precision_amp_jvp, m.cond_dropout_prob, m.guidance_mixture_ratio) == (
        "bfloat16", "float32", 0.1, 0.5)
    assert (m.sample_t_cfg.time_dist_type, m.sample_t_cfg.train_p_mean, m.sample_t_cfg.train_p_std) == (
        "logitnormal", -0.4, 1.0)
    assert m.sample_t_cfg.r_sample_ratio == 0.25 and m.loss_config.loss_type == "l2"
    assert (m.loss_config.norm_method, m.loss_config.norm_const) == ("poly_1.0", 1.0)
    assert (m.net_optimizer.optim_type, m.net_optimizer.lr, list(m.net_optimizer.betas)) == ("adam", 1e-4, [0.9, 0.95])
    assert (mf.trainer.max_iter, mf.trainer.batch_size_global, mf.dataloader_train.use_labels) == (1_200_000, 1024, True)
    xl = load("DiT/config_mf_xl.py")
    assert xl.model.net.hidden_size == 1152 and xl.model.guidance_scale == 0.2
    assert (xl.model.guidance_mixture_ratio, xl.model.guidance_t_end, xl.dataloader_train.batch_size) == (0.92, 0.75, 8)
    dit = load("DiT/config_sft_dit_xl.py").model.net
    assert (dit.net_pred_type, dit.learn_sigma, dit.schedule_type) == ("eps", True, "ddpm_linear")
    sit = load("DiT/config_sft_sit_xl.py")
    assert (sit.model.net.use_sit_convention, sit.model.net.net_pred_type, sit.model.guidance_scale) == (True, "flow", 4.0)
    in64 = load("EDM/config_sft_edm_in64.py").model
    assert (in64.precision_amp, in64.grad_scaler_enabled, in64.input_shape) == ("float16", True, [3, 64, 64])
    assert in64.net.model_type == "DhariwalUNet"
    edm2 = load("EDM2/config_sft_xl.py").model
    assert edm2.net.model_channels == 384 and edm2.pretrained_model_path.endswith("edm2-img64-xl-fid.pth")


@pytest.mark.parametrize("key, value, message", [
    ("model.net.chunk_size", 4, "model.net.chunk_size=4 does not divide model.net.total_num_frames=21"),
    ("model.input_shape", [16, 20, 60, 104], "chunk_size=3 does not divide the 20 latent frames of model.input_shape"),
])
def test_causal_chunk_size_must_divide_the_frames_at_dryrun(key, value, message):
    from fastgen.configs.config_utils import ConfigError, override_config_with_opts
    from fastgen.configs.validate import validate_config

    config = import_config_from_python_file(str(REPO / "fastgen/configs/experiments/WanT2V/config_causvid.py"))
    validate_config(config, check_gpu=False)  # as shipped: 3 | 21
    config = override_config_with_opts(config, ["-", f"{key}={value}"])
    with pytest.raises(ConfigError, match=message):
        validate_config(config, check_gpu=False)
