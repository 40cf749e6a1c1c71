"""config_utils: import from any path, typed overrides, serialisation and the config.yaml round trip."""

import os

import pytest
import yaml
from _config_files import EXPERIMENT_FILES, METHOD_FILES, REPO
from omegaconf import DictConfig

from fastgen.configs.config import BaseConfig
from fastgen.configs.config_utils import (
    CLASSES_KEY,
    ConfigError,
    apply_overrides,
    flatten_dict,
    import_config_from_python_file,
    load_config_from_yaml,
    override_config_with_opts,
    override_config_with_yaml,
    serialize_config,
)

ALL_FILES = METHOD_FILES + EXPERIMENT_FILES
DMD2_TEST = "fastgen/configs/experiments/EDM/config_dmd2_test.py"


@pytest.fixture(scope="module")
def dmd2():
    return import_config_from_python_file(REPO / DMD2_TEST)


@pytest.mark.parametrize("path", ALL_FILES)
def test_yaml_round_trip_every_shipped_config(path, tmp_path):
    config = import_config_from_python_file(REPO / path)
    file = serialize_config(config, return_type="file", path=tmp_path)
    loaded = load_config_from_yaml(file)
    assert type(loaded) is type(config) and type(loaded.model) is type(config.model)
    assert loaded == config
    again = serialize_config(loaded, return_type="file", path=tmp_path / "second")
    assert open(file).read() == open(again).read()
    assert load_config_from_yaml(again) == config


def test_import_from_relative_absolute_and_outside_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    relative = import_config_from_python_file(DMD2_TEST)
    absolute = import_config_from_python_file(str(REPO / DMD2_TEST))
    assert relative == absolute
    outside = tmp_path / "my cfg dir" / "my-config.py"  # not an importable module name
    outside.parent.mkdir()
    outside.write_text(
        "from fastgen.configs.methods import config_sft\n"
        "def create_config():\n    c = config_sft.create_config()\n    c.trainer.max_iter = 7\n    return c\n"
    )
    monkeypatch.chdir(tmp_path)
    cfg = import_config_from_python_file("my cfg dir/my-config.py")
    assert cfg.trainer.max_iter == 7 and cfg.model_class._target_ == "fastgen.methods.SFTModel"


def test_import_errors(tmp_path):
    with pytest.raises(ConfigError, match="must be a .py file"):
        import_config_from_python_file("config.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        import_config_from_python_file(tmp_path / "missing.py")
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(ConfigError, match="has no create_config"):
        import_config_from_python_file(empty)
    wrong = tmp_path / "wrong.py"
    wrong.write_text("def create_config():\n    return {'a': 1}\n")
    with pytest.raises(ConfigError, match="expected a BaseConfig"):
        import_config_from_python_file(wrong)


def test_overrides_values_and_types(dmd2):
    cfg = override_config_with_opts(dmd2, [
        "-", "trainer.max_iter=10000", "model.gan_loss_weight_gen=0", "log_config.name=my_experiment",
        "model.net_optimizer.lr=1e-5", "model.sample_t_cfg.t_list=[80,0.8,0]", "model.guidance_scale=null",
        "model.use_ema=[ema_a,ema_b]", "trainer.val_seed=3", "model.precision_amp=bfloat16",
        "trainer.checkpointer.pretrained_ckpt_key_map={net: ema}", "model.net.channel_mult=[1,2]",
        "log_config.group='0042'", "log_config.project=123",
    ])
    assert cfg.trainer.max_iter == 10000
    assert cfg.model.gan_loss_weight_gen == 0.0 and isinstance(cfg.model.gan_loss_weight_gen, float)
    assert cfg.log_config.name == "my_experiment" and cfg.model.net_optimizer.lr == 1e-5
    assert cfg.model.sample_t_cfg.t_list == [80.0, 0.8, 0.0] and cfg.model.guidance_scale is None
    assert cfg.model.use_ema == ["ema_a", "ema_b"] and cfg.trainer.val_seed == 3
    assert cfg.trainer.checkpointer.pretrained_ckpt_key_map == {"net": "ema"}
    assert list(cfg.model.net.channel_mult) == [1, 2] and cfg.model.precision_amp == "bfloat16"
    assert cfg.log_config.group == "0042" and cfg.log_config.project == "123"
    assert dmd2.trainer.max_iter == 5000  # the input config is untouched


def test_add_and_delete_in_dict_nodes(dmd2):
    cfg = override_config_with_opts(dmd2, ["-", "~trainer.callbacks.wandb", "+model.net.extra_arg=3",
                                           "++model.net.dropout=0.1", "+trainer.callbacks.ema={_target_: x.Y}"])
    assert "wandb" not in cfg.trainer.callbacks and cfg.model.net.extra_arg == 3 and cfg.model.net.dropout == 0.1
    assert cfg.trainer.callbacks.ema._target_ == "x.Y"
    assert "wandb" in dmd2.trainer.callbacks


def test_replace_whole_nodes(dmd2):
    cfg = apply_overrides(dmd2, ["model.sample_t_cfg={min_t: 0.01, max_t: 10}",
                                 "model.discriminator=null", "model.net={_target_: a.B, width: 4}"])
    assert cfg.model.sample_t_cfg.min_t == 0.01 and cfg.model.sample_t_cfg.max_t == 10.0
    assert cfg.model.sample_t_cfg.time_dist_type == "polynomial"  # unspecified fields keep their values
    assert cfg.model.discriminator is None
    assert isinstance(cfg.model.net, DictConfig) and cfg.model.net.width == 4


@pytest.mark.parametrize("override, message", [
    ("trainer.max_iter=abc", "invalid value for trainer.max_iter: expected int, got abc"),
    ("trainer.max_iter=3.5", "invalid value for trainer.max_iter: expected int, got 3.5"),
    ("trainer.ddp=1", "invalid value for trainer.ddp: expected bool, got 1"),
    ("model.guidance_scale=high", "invalid value for model.guidance_scale: expected float or null, got high"),
    ("model.input_shape=[3,a]", "invalid value for model.input_shape: expected list of int"),
    ("model.net=null", "invalid value for model.net: expected mapping (LazyCall), got null"),
    ("trainer.checkpointer.pretrained_ckpt_key_map={net: 1}", "expected mapping of str"),
    ("trainer.max_itr=1", "unknown config key 'trainer.max_itr'; did you mean: trainer.max_iter"),
    ("model.net.model_chanels=1", "did you mean: model.net.model_channels"),
    ("+trainer.nope=1", "unknown config key 'trainer.nope'"),
    ("+trainer.max_iter=1", "cannot add 'trainer.max_iter': it already exists"),
    ("+model.net.dropout=1", "cannot add 'model.net.dropout': it already exists"),
    ("~trainer.max_iter", "cannot delete 'trainer.max_iter': it is a config field"),
    ("~trainer.callbacks.nothere", "unknown config key 'trainer.callbacks.nothere'"),
    ("trainer.max_iter", "cannot parse override 'trainer.max_iter'"),
    ("trainer.max_iter=1,2", "is a sweep"),
    ("model.dataloader.x=1", "unknown config key 'model.dataloader.x'"),
])
def test_bad_overrides(dmd2, override, message):
    with pytest.raises(ConfigError) as info:
        override_config_with_opts(dmd2, ["-", override])
    assert message in str(info.value)


def test_missing_separator_is_an_error(dmd2):
    with pytest.raises(ConfigError, match="'-' separator"):
        override_config_with_opts(dmd2, ["trainer.max_iter=3"])
    assert override_config_with_opts(dmd2, []) == dmd2


def test_overrides_on_a_sub_dictconfig(dmd2):
    net = override_config_with_opts(dmd2.model.net, ["-", "dropout=0.3", "+foo=1"])
    assert net.dropout == 0.3 and net.foo == 1 and dmd2.model.net.dropout == 0.0


def test_serialize_forms(dmd2, tmp_path):
    data = serialize_config(dmd2, return_type="dict")
    assert data["trainer"]["max_iter"] == 5000 and CLASSES_KEY not in data
    assert data["model"]["net"]["_target_"] == "fastgen.networks.EDM.network.EDMPrecond"
    text = serialize_config(dmd2, return_type="yaml")
    parsed = yaml.safe_load(text)
    assert parsed[CLASSES_KEY][""] == "fastgen.configs.methods.config_dmd2.Config"
    assert parsed[CLASSES_KEY]["model.sample_t_cfg"] == "fastgen.configs.config.SampleTConfig"
    file = serialize_config(dmd2, return_type="file", path=tmp_path / "a" / "b", filename="c.yaml")
    assert file == str(tmp_path / "a" / "b" / "c.yaml") and os.path.isfile(file)
    with pytest.raises(ValueError, match="needs a path"):
        serialize_config(dmd2, return_type="file")
    with pytest.raises(ValueError, match="return_type"):
        serialize_config(dmd2, return_type="json")


def test_include_defaults_adds_callable_defaults():
    cfg = BaseConfig()
    data = serialize_config(cfg, include_defaults=True)
    sched = data["model"]["net_scheduler"]
    assert sched["verbosity_interval"] == 0  # a LambdaLinearScheduler default not in the config
    assert "fused" in data["model"]["net_optimizer"]
    assert data["model"]["net"]["_target_"] == "fastgen.networks.EDM.network.EDMPrecond"  # not importable: kept


def test_override_config_with_yaml_is_loose(dmd2, tmp_path):
    file = tmp_path / "o.yaml"
    file.write_text(yaml.safe_dump({"trainer": {"max_iter": 9, "not_a_field": 1},
                                    "model": {"net": {"_target_": "ignored", "dropout": 0.25}}}))
    cfg = override_config_with_yaml(dmd2, file)
    assert cfg.trainer.max_iter == 9 and cfg.model.net.dropout == 0.25
    assert cfg.model.net._target_ == dmd2.model.net._target_


def test_load_plain_yaml_without_class_map(tmp_path):
    file = tmp_path / "plain.yaml"
    file.write_text(serialize_config(BaseConfig(), return_type="yaml", include_classes=False))
    assert load_config_from_yaml(file) == BaseConfig()


def test_load_rejects_unknown_fields(tmp_path):
    file = tmp_path / "bad.yaml"
    file.write_text(yaml.safe_dump({"trainer": {"max_iters": 1}, CLASSES_KEY: {
        "": "fastgen.configs.config.BaseConfig", "trainer": "fastgen.configs.config.BaseTrainerConfig"}}))
    with pytest.raises(ConfigError, match="max_iters"):
        load_config_from_yaml(file)


def test_flatten_dict():
    assert flatten_dict({"a": {"b": 1, "c": {"d": None}}, "e": [1]}) == {"a.b": 1, "a.c.d": None, "e": [1]}
    assert flatten_dict({"a": {"b": None}}, skip_none=True) == {}


def test_top_level_file_named_like_a_stdlib_module(tmp_path, monkeypatch):
    file = tmp_path / "json.py"  # must not resolve to the stdlib json module
    file.write_text("from fastgen.configs.config import BaseConfig\n"
                    "def create_config():\n    c = BaseConfig()\n    c.log_config.name = 'mine'\n    return c\n")
    monkeypatch.chdir(tmp_path)
    assert import_config_from_python_file("json.py").log_config.name == "mine"


def test_yaml_from_a_config_file_outside_packages_loads_back(tmp_path):
    file = tmp_path / "own_classes.py"
    file.write_text(
        "import attrs\nfrom fastgen.configs.config import BaseConfig, LogConfig\n"
        "@attrs.define(slots=False)\nclass MyLog(LogConfig):\n    pass\n"
        "@attrs.define(slots=False)\nclass MyConfig(BaseConfig):\n    log_config: LogConfig = attrs.Factory(MyLog)\n"
        "def create_config():\n    c = MyConfig()\n    c.trainer.max_iter = 11\n    return c\n"
    )
    config = import_config_from_python_file(file)
    text = serialize_config(config, return_type="yaml")
    assert "fastgen_user_config_" in text  # the classes were loaded from a path
    (tmp_path / "c.yaml").write_text(text.replace("fastgen_user_config_", "gone_module_"))
    loaded = load_config_from_yaml(tmp_path / "c.yaml")  # classes not importable: the base classes are used
    assert type(loaded) is BaseConfig and loaded.trainer.max_iter == 11
    assert serialize_config(loaded) == serialize_config(config)


def test_config_syntax_error_names_file_and_line(tmp_path):
    from fastgen.configs.config_utils import ConfigError, import_config_from_python_file

    path = tmp_path / "broken_config.py"
    path.write_text("from fastgen.configs.config import BaseConfig\n\n\ndef create_config(:\n    return BaseConfig()\n")
    with pytest.raises(ConfigError) as error:
        import_config_from_python_file(str(path))
    assert str(error.value) == f"syntax error in config file {path}, line 4: invalid syntax: def create_config(:"
