"""train.py as users run it: the spec's Examples verbatim (as subprocesses), bad input, dry runs."""

import os
import subprocess
import sys

import pytest
import yaml
from _config_files import REPO

CONFIG = "fastgen/configs/experiments/EDM/config_dmd2_test.py"


def run(args, tmp_path, extra_env=None, cwd=REPO):
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "AWS_SECRET_ACCESS_KEY", "RANK")}
    env.update({"FASTGEN_OUTPUT_ROOT": str(tmp_path / "out"), "DATA_ROOT_DIR": str(tmp_path / "data"),
                "CKPT_ROOT_DIR": str(tmp_path / "ckpt"), "WANDB_MODE": "offline"})
    env.update(extra_env or {})
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def one_error_line(result):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_example_override_training_settings(tmp_path):
    # spec Examples #1, verbatim, plus --dryrun since training is checked elsewhere
    r = run(["train.py", f"--config={CONFIG}", "-", "trainer.max_iter=10000", "model.gan_loss_weight_gen=0.",
             "log_config.name=my_experiment", "--dryrun"], tmp_path)
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load(r.stdout)
    assert cfg["trainer"]["max_iter"] == 10000 and cfg["model"]["gan_loss_weight_gen"] == 0.0
    assert cfg["log_config"]["name"] == "my_experiment"
    assert cfg["trainer"]["checkpointer"]["save_dir"] == f"{tmp_path}/out/fastgen/cifar10/my_experiment/checkpoints"
    assert cfg["trainer"]["grad_accum_rounds"] == 1
    assert not (tmp_path / "out").exists()  # a dry run writes nothing


@pytest.mark.slow
def test_example_override_full_command_gets_past_config(tmp_path):
    r = run(["train.py", f"--config={CONFIG}", "-", "trainer.max_iter=10000", "model.gan_loss_weight_gen=0.",
             "log_config.name=my_experiment"], tmp_path)
    saved = tmp_path / "out/fastgen/cifar10/my_experiment/config.yaml"
    assert saved.is_file(), r.stderr
    from fastgen.configs.config_utils import load_config_from_yaml

    loaded = load_config_from_yaml(saved)
    assert loaded.trainer.max_iter == 10000 and loaded.model.gan_loss_weight_gen == 0.0
    if r.returncode != 0:  # the method/trainer/data may not be available here: then one clear line
        assert r.returncode == 1
        one_error_line(r)


def test_example_dryrun(tmp_path):
    r = run(["train.py", f"--config={CONFIG}", "--dryrun"], tmp_path)
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load(r.stdout)
    assert cfg["trainer"]["max_iter"] == 5000 and cfg["trainer"]["batch_size_global"] == 64
    assert cfg["model_class"]["_target_"] == "fastgen.methods.DMD2Model"
    assert cfg["model"]["pretrained_model_path"] == f"{tmp_path}/ckpt/cifar10/edm-cifar10-32x32-cond-vp.pth"
    assert cfg["dataloader_train"]["dataset_path"] == f"{tmp_path}/data/cifar10/cifar10-32x32.zip"
    assert "_config_classes_" not in cfg
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_example_verbose_logging(tmp_path):
    r = run(["train.py", f"--config={CONFIG}", "--log_level", "DEBUG"], tmp_path)
    assert "DEBUG" in r.stderr and "loaded fastgen.configs.methods.config_dmd2.Config" in r.stderr
    assert (tmp_path / "out/fastgen/cifar10/debug/config.yaml").is_file()
    if r.returncode != 0:
        assert r.returncode == 1 and "Traceback" in r.stderr  # DEBUG shows the traceback
        assert r.stderr.strip().splitlines()[-1].startswith("error: ")


def test_log_level_controls_output(tmp_path):
    quiet = run(["train.py", f"--config={CONFIG}", "--dryrun", "--log_level", "ERROR"], tmp_path)
    debug = run(["train.py", f"--config={CONFIG}", "--dryrun", "--log_level=DEBUG"], tmp_path)
    assert quiet.returncode == debug.returncode == 0
    assert quiet.stderr == "" and "DEBUG" in debug.stderr
    assert yaml.safe_load(quiet.stdout) == yaml.safe_load(debug.stdout)


@pytest.mark.parametrize("args, message", [
    ([f"--config={CONFIG}", "trainer.max_iter=3"], "overrides must follow a '-' separator"),
    (["--config=does/not/exist.py"], "config file 'does/not/exist.py' does not exist"),
    (["--config=README.md"], "config must be a .py file"),
    (["--config=fastgen/configs/config.py"], "has no create_config() function"),
    ([], "the following arguments are required: --config"),
    ([f"--config={CONFIG}", "--log_level", "LOUD"], "invalid choice: 'LOUD'"),
    ([f"--config={CONFIG}", "-", "trainer.max_iter=abc"], "invalid value for trainer.max_iter: expected int, got abc"),
    ([f"--config={CONFIG}", "-", "trainer.max_itr=5"], "did you mean: trainer.max_iter"),
    ([f"--config={CONFIG}", "-", "trainer.max_iter=1", "--bogus"], "unknown flag --bogus"),
])
def test_usage_errors_are_one_line_exit_2(tmp_path, args, message):
    r = run(["train.py", *args, "--dryrun"] if args and "--bogus" not in args else ["train.py", *args], tmp_path)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert message in one_error_line(r)
    assert r.stdout == ""


def test_debug_shows_traceback_for_usage_errors(tmp_path):
    r = run(["train.py", f"--config={CONFIG}", "--log_level", "DEBUG", "--dryrun", "-", "trainer.max_iter=abc"],
            tmp_path)
    assert r.returncode == 2 and "Traceback" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: invalid value for trainer.max_iter")


def test_config_from_any_directory(tmp_path):
    r = run([str(REPO / "train.py"), f"--config={REPO / CONFIG}", "--dryrun", "-", "+trainer.callbacks.extra={a: 1}",
             "~trainer.callbacks.wandb"], tmp_path, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    callbacks = yaml.safe_load(r.stdout)["trainer"]["callbacks"]
    assert "wandb" not in callbacks and callbacks["extra"] == {"a": 1}


def test_secrets_never_in_dryrun_or_config_yaml(tmp_path):
    secret = "sk-test-0123456789abcdef"
    env = {"WANDB_API_KEY": secret}
    r = run(["train.py", f"--config={CONFIG}", "--dryrun", "-", f"log_config.name={secret}",
             "+model.net.api_key=plain-text-key"], tmp_path, env)
    assert r.returncode == 0 and secret not in r.stdout + r.stderr
    assert "plain-text-key" not in r.stdout and "***REDACTED***" in r.stdout
    r = run(["train.py", f"--config={CONFIG}", "--log_level", "DEBUG", "-", f"+model.net.note={secret}"],
            tmp_path, env)
    text = (tmp_path / "out/fastgen/cifar10/debug/config.yaml").read_text()
    assert secret not in text and secret not in r.stdout + r.stderr


def test_global_batch_not_divisible_by_world_size_is_a_usage_error(tmp_path):
    r = run(["train.py", f"--config={CONFIG}", "--dryrun", "-", "trainer.batch_size_global=64", "trainer.ddp=true"],
            tmp_path, {"WORLD_SIZE": "3"})
    assert r.returncode == 2 and "not divisible by the world size (3)" in one_error_line(r)


@pytest.mark.parametrize("world, global_bs, micro, rounds", [(8, 64, 8, 1), (1, 100, 50, 2), (2, 256, 64, 2)])
def test_global_batch_is_honoured_exactly(tmp_path, world, global_bs, micro, rounds):
    r = run(["train.py", f"--config={CONFIG}", "--dryrun", "-", f"trainer.batch_size_global={global_bs}",
             "trainer.ddp=true"], tmp_path, {"WORLD_SIZE": str(world)})
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load(r.stdout)
    assert (cfg["dataloader_train"]["batch_size"], cfg["trainer"]["grad_accum_rounds"]) == (micro, rounds)


def test_grad_accum_derived_from_world_size(tmp_path):
    r = run(["train.py", f"--config={CONFIG}", "--dryrun", "-", "trainer.batch_size_global=256",
             "trainer.ddp=true"], tmp_path, {"WORLD_SIZE": "2"})
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load(r.stdout)["trainer"]["grad_accum_rounds"] == 2


@pytest.mark.parametrize("path", ["fastgen/configs/experiments/EDM/config_cm_cifar10.py",
                                  "fastgen/configs/experiments/EDM2/config_sft_s.py"])
def test_other_experiments_dryrun(tmp_path, path):
    r = run(["train.py", f"--config={path}", "--dryrun"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load(r.stdout)["trainer"]["batch_size_global"] in (512, 2048)


def test_loading_every_config_imports_no_torch_networks_or_methods(tmp_path):
    from _config_files import EXPERIMENT_FILES, METHOD_FILES

    code = (
        "import sys\n"
        "from fastgen.configs.config_utils import import_config_from_python_file, serialize_config\n"
        f"for p in {METHOD_FILES + EXPERIMENT_FILES!r}:\n"
        "    serialize_config(import_config_from_python_file(p), return_type='yaml')\n"
        "heavy = [m for m in sys.modules if m == 'torch' or m.startswith(('fastgen.networks.', 'fastgen.methods.',"
        " 'fastgen.callbacks.', 'fastgen.datasets.', 'fastgen.trainer'))]\n"
        "print(heavy)\n"
    )
    r = run(["-c", code], tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


TOY_CONFIG = '''
from fastgen.configs.data import GaussianMixture_Loader_Config
from fastgen.configs.methods import config_sft
from fastgen.configs.net import Toy_MLP_Config


def create_config():
    c = config_sft.create_config()
    c.model.net = Toy_MLP_Config
    c.model.input_shape = [2]
    c.model.device = "cpu"
    c.dataloader_train = GaussianMixture_Loader_Config
    c.dataloader_train.batch_size = 16
    c.trainer.max_iter = 3
    c.trainer.save_ckpt_iter = 3
    c.log_config.wandb_mode = "disabled"
    c.log_config.group = "toy"
    return c
'''


@pytest.mark.slow
def test_train_py_runs_a_tiny_real_training(tmp_path):
    pytest.importorskip("fastgen.trainer")
    (tmp_path / "toy_sft.py").write_text(TOY_CONFIG)
    r = run([str(REPO / "train.py"), "--config=toy_sft.py", "-", "~trainer.callbacks.wandb",
             "trainer.batch_size_global=32"], tmp_path, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    run_dir = tmp_path / "out/fastgen/toy/debug"
    assert (run_dir / "checkpoints/0000003.pth").is_file()
    from fastgen.configs.config_utils import load_config_from_yaml

    saved = load_config_from_yaml(run_dir / "config.yaml")
    assert saved.trainer.grad_accum_rounds == 2 and "wandb" not in saved.trainer.callbacks
    assert saved.trainer.checkpointer.save_dir == str(run_dir / "checkpoints")


CAUSAL_WITH_BIDIRECTIONAL_NET = '''
from fastgen.configs.experiments.Toy import config_sft_causal
from fastgen.configs.net import Toy_Video_Config


def create_config():
    c = config_sft_causal.create_config()
    c.model.net = Toy_Video_Config  # bidirectional: no chunks, no KV cache
    c.model.device = "cpu"
    c.log_config.wandb_mode = "disabled"
    return c
'''


def test_causal_method_with_a_non_causal_net_is_one_line_exit_2(tmp_path):
    (tmp_path / "bad_causal.py").write_text(CAUSAL_WITH_BIDIRECTIONAL_NET)
    r = run([str(REPO / "train.py"), "--config=bad_causal.py"], tmp_path, cwd=tmp_path)
    line = one_error_line(r)
    assert r.returncode == 2, r.stderr
    assert line.startswith("error: CausalSFTModel needs a causal video network") and "got ToyVideoNet" in line
    assert not list((tmp_path / "out").rglob("*.pth"))  # refused before training: nothing saved
