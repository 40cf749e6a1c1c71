"""Environment variables, credential files (existing variables win), redaction and logging scrubbing."""

import io
import json

import pytest
from loguru import logger

from fastgen.configs.config import BaseConfig
from fastgen.configs.config_utils import public_config_dict
from fastgen.utils import env
from fastgen.utils.logging import setup_logging

AWS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL",
       "S3_ENDPOINT_URL")


@pytest.fixture
def clean_env(monkeypatch):
    for name in (*AWS, "WANDB_API_KEY", "FASTGEN_OUTPUT_ROOT", "DATA_ROOT_DIR", "CKPT_ROOT_DIR", "HF_HOME",
                 "LOCAL_FILES_ONLY"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def log_sink():
    stream = io.StringIO()
    setup_logging("INFO", rank=0, sink=stream)
    yield stream
    setup_logging("INFO", rank=0)


def test_path_defaults_and_overrides(clean_env, tmp_path):
    assert env.output_root() == "FASTGEN_OUTPUT"
    assert (env.data_root_dir(), env.ckpt_root_dir(), env.hf_home()) == (
        "FASTGEN_OUTPUT/DATA", "FASTGEN_OUTPUT/MODEL", "FASTGEN_OUTPUT/.cache")
    clean_env.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path))
    assert env.data_root_dir() == f"{tmp_path}/DATA" and env.ckpt_root_dir() == f"{tmp_path}/MODEL"
    clean_env.setenv("DATA_ROOT_DIR", "/data")
    clean_env.setenv("CKPT_ROOT_DIR", "/ckpt")
    clean_env.setenv("HF_HOME", "/hf")
    assert (env.data_root_dir(), env.ckpt_root_dir(), env.hf_home()) == ("/data", "/ckpt", "/hf")
    cfg = BaseConfig()
    assert cfg.log_config.save_path == f"{tmp_path}/fastgen/cifar10/debug"


def test_local_files_only(clean_env):
    assert env.local_files_only() is False
    for text, value in (("true", True), ("1", True), ("FALSE", False), ("no", False)):
        clean_env.setenv("LOCAL_FILES_ONLY", text)
        assert env.local_files_only() is value
    clean_env.setenv("LOCAL_FILES_ONLY", "maybe")
    with pytest.raises(ValueError, match="'maybe'"):
        env.local_files_only()


def test_set_env_vars_sets_hf_home_under_output_root(clean_env, tmp_path):
    clean_env.setenv("FASTGEN_OUTPUT_ROOT", str(tmp_path))
    env.set_env_vars(s3_credential=str(tmp_path / "none.json"))
    import os

    assert os.environ["HF_HOME"] == f"{tmp_path}/.cache"


def write_s3(path, data):
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_s3_json_sets_spec_variables(clean_env, tmp_path):
    import os

    file = write_s3(tmp_path / "s3.json", {"aws_access_key_id": "AKIAEXAMPLE", "aws_secret_access_key": "s3cr3tKEY",
                                           "region_name": "eu-west-1", "endpoint_url": "http://127.0.0.1:9"})
    was_set = env.load_s3_credentials(file)
    assert os.environ["AWS_ACCESS_KEY_ID"] == "AKIAEXAMPLE" and os.environ["AWS_SECRET_ACCESS_KEY"] == "s3cr3tKEY"
    assert os.environ["AWS_REGION"] == "eu-west-1" and os.environ["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert os.environ["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9"
    assert set(was_set) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_DEFAULT_REGION",
                            "AWS_ENDPOINT_URL"}


def test_existing_env_vars_win_over_files(clean_env, tmp_path):
    import os

    clean_env.setenv("AWS_SECRET_ACCESS_KEY", "from-env")
    clean_env.setenv("WANDB_API_KEY", "env-wandb-key")
    write_s3(tmp_path / "s3.json", {"aws_access_key_id": "a", "aws_secret_access_key": "from-file",
                                    "region_name": "r", "endpoint_url": "e"})
    (tmp_path / "wandb_api.txt").write_text("file-wandb-key\n")
    env.load_s3_credentials(tmp_path / "s3.json")
    assert env.load_wandb_credential(tmp_path / "wandb_api.txt") is False
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == "from-env" and os.environ["WANDB_API_KEY"] == "env-wandb-key"
    assert os.environ["AWS_ACCESS_KEY_ID"] == "a"


def test_wandb_key_from_file_is_stripped(clean_env, tmp_path):
    import os

    (tmp_path / "wandb_api.txt").write_text("  abcdef123456  \n")
    assert env.load_wandb_credential(tmp_path / "wandb_api.txt") is True
    assert os.environ["WANDB_API_KEY"] == "abcdef123456"
    assert env.load_wandb_credential(tmp_path / "missing.txt") is False


def test_missing_key_warns_naming_file_and_key(clean_env, tmp_path, log_sink):
    import os

    file = write_s3(tmp_path / "s3.json", {"aws_access_key_id": "a", "aws_secret_access_key": "b", "region_name": "r"})
    env.load_s3_credentials(file)
    out = log_sink.getvalue()
    assert f"credentials file {file} has no key 'endpoint_url'" in out and "WARNING" in out
    assert "AWS_ENDPOINT_URL" not in os.environ and os.environ["AWS_REGION"] == "r"


def test_malformed_json_warns_naming_file(clean_env, tmp_path, log_sink):
    import os

    file = write_s3(tmp_path / "s3.json", "{not json")
    assert env.load_s3_credentials(file) == []
    assert f"credentials file {file} is not valid JSON" in log_sink.getvalue()
    file = write_s3(tmp_path / "list.json", "[1, 2]")
    assert env.load_s3_credentials(file) == []
    assert "must hold a JSON object" in log_sink.getvalue()
    assert "AWS_ACCESS_KEY_ID" not in os.environ


def test_redact_values_and_secret_keys(clean_env):
    clean_env.setenv("WANDB_API_KEY", "wandb-secret-value")
    clean_env.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-value")
    data = {"a": "url?key=wandb-secret-value", "nested": [{"api_key": "literal"}, "aws-secret-value"],
            "aws_secret_access_key": "x", "password": None, "n": 3}
    out = env.redact(data)
    assert out == {"a": "url?key=***REDACTED***", "nested": [{"api_key": "***REDACTED***"}, "***REDACTED***"],
                   "aws_secret_access_key": "***REDACTED***", "password": None, "n": 3}
    assert data["a"] == "url?key=wandb-secret-value"  # the input is not modified


def test_public_config_dict_redacts(clean_env):
    clean_env.setenv("WANDB_API_KEY", "my-wandb-secret")
    cfg = BaseConfig()
    cfg.log_config.name = "run-my-wandb-secret"
    cfg.model.net.api_key = "abc"
    public = public_config_dict(cfg)
    assert public["log_config"]["name"] == "run-***REDACTED***"
    assert public["model"]["net"]["api_key"] == "***REDACTED***"
    assert public["trainer"]["max_iter"] == 1000000


def test_logs_are_scrubbed(clean_env, log_sink):
    clean_env.setenv("AWS_SECRET_ACCESS_KEY", "super-secret-aws")
    logger.info("connecting with super-secret-aws now")
    assert "super-secret-aws" not in log_sink.getvalue() and "***REDACTED***" in log_sink.getvalue()


def test_non_zero_rank_silent_unless_debug():
    stream = io.StringIO()
    setup_logging("INFO", rank=1, sink=stream)
    logger.info("hidden")
    setup_logging("DEBUG", rank=1, sink=stream)
    logger.debug("shown")
    setup_logging("INFO", rank=0)
    assert "hidden" not in stream.getvalue() and "RANK 1: " in stream.getvalue() and "shown" in stream.getvalue()
    with pytest.raises(ValueError, match="TRACE"):
        setup_logging("TRACE")
