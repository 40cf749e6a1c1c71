"""Environment variables, credential files and secret redaction.

Paths come from environment variables read when asked (never cached), so a test or a launcher can change them.
Credentials load from `./credentials/` into the environment only where the variable is not already set: an
explicitly exported variable always wins. Secrets must never reach logs, dry-run output, config.yaml or W&B; the
`redact` helpers are the one place that knows which values are secret (configs call them; this module takes no
config types, so `fastgen.utils` stays the ground floor).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loguru import logger

DEFAULT_OUTPUT_ROOT = "FASTGEN_OUTPUT"
DEFAULT_WANDB_CREDENTIAL = "./credentials/wandb_api.txt"
DEFAULT_S3_CREDENTIAL = "./credentials/s3.json"

# s3.json key -> environment variables it sets (the spec's names; AWS_DEFAULT_REGION is what boto3 reads)
S3_JSON_KEYS: dict[str, tuple[str, ...]] = {
    "aws_access_key_id": ("AWS_ACCESS_KEY_ID",),
    "aws_secret_access_key": ("AWS_SECRET_ACCESS_KEY",),
    "region_name": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "endpoint_url": ("AWS_ENDPOINT_URL",),
}
SECRET_ENV_VARS = ("WANDB_API_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
# key names whose values are treated as secret wherever they appear in a config or dict
SECRET_KEY_MARKERS = ("api_key", "apikey", "secret", "password", "token", "access_key")
REDACTED = "***REDACTED***"

_TRUE = {"1", "true", "yes", "y", "on", "t"}
_FALSE = {"0", "false", "no", "n", "off", "f", ""}


def str2bool(value: str | bool) -> bool:
    """'true'/'1'/'yes' -> True, 'false'/'0'/'no'/'' -> False; anything else is an error, not a silent False."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"cannot interpret {value!r} as a boolean; expected one of true/false/1/0/yes/no")


def output_root() -> str:
    """$FASTGEN_OUTPUT_ROOT, default 'FASTGEN_OUTPUT' (relative to the working directory)."""
    return os.environ.get("FASTGEN_OUTPUT_ROOT") or DEFAULT_OUTPUT_ROOT


def data_root_dir() -> str:
    """$DATA_ROOT_DIR, default $FASTGEN_OUTPUT_ROOT/DATA."""
    return os.environ.get("DATA_ROOT_DIR") or f"{output_root()}/DATA"


def ckpt_root_dir() -> str:
    """$CKPT_ROOT_DIR, default $FASTGEN_OUTPUT_ROOT/MODEL."""
    return os.environ.get("CKPT_ROOT_DIR") or f"{output_root()}/MODEL"


def hf_home() -> str:
    """$HF_HOME, default $FASTGEN_OUTPUT_ROOT/.cache."""
    return os.environ.get("HF_HOME") or f"{output_root()}/.cache"


def local_files_only() -> bool:
    """$LOCAL_FILES_ONLY as a bool (default false): pass to every `from_pretrained`."""
    return str2bool(os.environ.get("LOCAL_FILES_ONLY", "false"))


def _set_if_unset(name: str, value: str) -> bool:
    if os.environ.get(name):
        return False
    os.environ[name] = value
    return True


def load_wandb_credential(path: str | os.PathLike = DEFAULT_WANDB_CREDENTIAL) -> bool:
    """Set WANDB_API_KEY from a plain-text file unless already set. Returns True when the file was used."""
    path = Path(path)
    if os.environ.get("WANDB_API_KEY") or not path.is_file():
        return False
    key = path.read_text().strip()
    if not key:
        logger.warning(f"credentials file {path} is empty; WANDB_API_KEY not set")
        return False
    return _set_if_unset("WANDB_API_KEY", key)


def load_s3_credentials(path: str | os.PathLike = DEFAULT_S3_CREDENTIAL) -> list[str]:
    """Set the AWS_* variables from an s3.json file, never overwriting ones already set.

    A malformed file or a missing key is a warning naming the file and key (training without S3 is still possible).
    Returns the names of the variables that were set.
    """
    path = Path(path)
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        logger.warning(f"credentials file {path} is not valid JSON ({e.__class__.__name__}); S3 credentials not loaded")
        return []
    if not isinstance(data, Mapping):
        logger.warning(f"credentials file {path} must hold a JSON object; S3 credentials not loaded")
        return []
    was_set = []
    for key, env_names in S3_JSON_KEYS.items():
        value = data.get(key)
        if value is None or value == "":
            logger.warning(f"credentials file {path} has no key '{key}'; {', '.join(env_names)} not set from it")
            continue
        for name in env_names:
            if _set_if_unset(name, str(value)):
                was_set.append(name)
    if os.environ.get("AWS_ENDPOINT_URL"):
        _set_if_unset("S3_ENDPOINT_URL", os.environ["AWS_ENDPOINT_URL"])
    return was_set


def set_env_vars(s3_credential: str | None = DEFAULT_S3_CREDENTIAL, wandb_credential: str | None = None) -> None:
    """Default HF_HOME under the output root and load credential files (existing variables win)."""
    _set_if_unset("HF_HOME", hf_home())
    if s3_credential:
        load_s3_credentials(s3_credential)
    if wandb_credential:
        load_wandb_credential(wandb_credential)


def secret_values() -> list[str]:
    """The secret strings currently in the environment (longest first, so substrings are replaced last)."""
    values = {os.environ.get(name, "") for name in SECRET_ENV_VARS}
    return sorted((v for v in values if len(v) >= 4), key=len, reverse=True)


def redact_text(text: str, secrets: list[str] | None = None) -> str:
    """Replace every occurrence of a secret value in `text`."""
    for secret in secret_values() if secrets is None else secrets:
        text = text.replace(secret, REDACTED)
    return text


def _is_secret_key(key: Any) -> bool:
    name = str(key).lower()
    return any(marker in name for marker in SECRET_KEY_MARKERS)


def redact(obj: Any, secrets: list[str] | None = None) -> Any:
    """A copy of a nested dict/list structure with secret values and secret-named keys' values replaced."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(obj, Mapping):
        return {k: (REDACTED if _is_secret_key(k) and v not in (None, "") else redact(v, secrets)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact(v, secrets) for v in obj) if isinstance(obj, list) else [redact(v, secrets) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj, secrets)
    return obj

