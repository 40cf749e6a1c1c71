"""Single-file checkpoints that meet the reliability contract (DESIGN.md).

Layout: `{save_dir}/{iteration:07d}.pth`, a `torch.save` of
    {"model": {name: state_dict}, "optimizer": {name: sd}, "scheduler": {name: sd}, "grad_scaler": sd,
     "callbacks": {name: sd}, "iteration": int, "rng": [per-rank RNG state], "data": {loader: global position},
     "config": resolved YAML text, "world_size": int, "format_version": 1}
- written atomically: temporary file in the same directory, flush + fsync, `os.replace`, fsync of the directory, so
  a crash mid-write never leaves a file that looks like a checkpoint;
- read with `torch.load(weights_only=True)`: loading never runs code; a file with a pickled payload is refused;
- `load_latest()` walks from the newest file down and reports (warning naming the file and error) every unreadable
  one before falling back to the previous checkpoint.

The interface is deliberately narrow, `save(state, iteration)`, `load(path)`, `load_latest()`, `list_checkpoints()`,
so a sharded (DCP) or S3 variant only has to re-implement those. `S3Checkpointer` (trainer.checkpointer.use_s3=True,
chosen by `Checkpointer.from_config`) keeps the same files as objects `{s3_container}/{project}/{group}/{name}/
checkpoints/{iteration:07d}.pth`; any `load(path)` also accepts an s3:// URL. Turning a model/optimizers into a state dict and
back is done by `collect_state` / `restore_state`.
"""

from __future__ import annotations

import difflib
import os
import pickle
import re
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from loguru import logger

from fastgen.utils import s3

CHECKPOINT_PATTERN = re.compile(r"^(\d{7,})\.pth$")
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used (unreadable, truncated, unsafe, or not a fastgen checkpoint)."""


def checkpoint_path(save_dir: str, iteration: int) -> str:
    return os.path.join(save_dir, f"{int(iteration):07d}.pth")


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # e.g. platforms that cannot open directories; the rename is still atomic
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_torch_save(obj: Any, path: str) -> None:
    """torch.save to `path` so that readers see either the old file, nothing, or the complete new file."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp_path = os.path.join(directory, f".{os.path.basename(path)}.tmp{os.getpid()}")
    try:
        with open(tmp_path, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise
    _fsync_dir(directory)


ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default (zip) format
# how torch's weights-only unpickler names an object it refuses ("Unsupported global: GLOBAL io.open ...")
_UNSAFE_GLOBAL = re.compile(r"unsupported global:? (?:GLOBAL )?([\w.]+)", re.IGNORECASE)


def _looks_like_torch_file(head: bytes) -> bool:
    """torch.save output: a zip archive, or (legacy format) a pickle stream of protocol 2..5."""
    return head.startswith(ZIP_MAGIC) or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5)


def _first_line(error: BaseException) -> str:
    """The error's first line, dropping torch's advice to retry with weights_only=False (never safe to follow)."""
    line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return type(error).__name__ if "weights_only" in line else line


def _first_pickled_global(path: str) -> str | None:
    """The first class/function a plain pickle file refers to (read with pickletools: nothing is executed), or None
    when it names none or is not readable as a pickle (then it is damaged rather than dangerous)."""
    import pickletools

    strings: list[str] = []
    try:
        with open(path, "rb") as file:
            for opcode, arg, _ in pickletools.genops(file):
                if opcode.name == "GLOBAL":
                    return str(arg).replace(" ", ".")
                if opcode.name == "STACK_GLOBAL":
                    return ".".join(strings[-2:]) or "an object"
                if isinstance(arg, str):
                    strings.append(arg)
    except Exception:  # noqa: BLE001 - damaged data: no verdict
        return None
    return None


def safe_torch_load(path: str) -> Any:
    """torch.load(weights_only=True) with clear errors: missing file, not a checkpoint at all, unsafe pickle,
    truncated/corrupt file. torch's own warnings (e.g. about pickle protocols of a damaged file) are not shown."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    with open(path, "rb") as file:
        head = file.read(8)
    if not _looks_like_torch_file(head):
        size = os.path.getsize(path)
        raise CheckpointError(f"{path} is not a checkpoint: {size} bytes that are neither a torch.save archive nor "
                              f"a safetensors file" if size else f"{path} is not a checkpoint: the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        unsafe = _UNSAFE_GLOBAL.search(str(error))
        name = unsafe.group(1) if unsafe else _first_pickled_global(path)
        if name:
            raise CheckpointError(
                f"refusing to load {path}: it stores a Python object ({name}), and loading it could run "
                f"arbitrary code; fastgen checkpoints hold only tensors and plain containers"
            ) from None
        raise CheckpointError(f"{path} is not a readable checkpoint (damaged data)") from None
    except Exception as error:  # truncated zip, bad magic number, EOF ...
        raise CheckpointError(f"cannot read {path} (truncated or corrupt?): {_first_line(error)}") from None


class Checkpointer:
    """Plain (single-file, rank-0-written) checkpoints in `save_dir`."""

    def __init__(self, save_dir: str, pretrained_ckpt_path: str = "", pretrained_ckpt_key_map: Mapping | None = None,
                 keep_last: int = 0):
        self.save_dir = str(save_dir)
        self.pretrained_ckpt_path = pretrained_ckpt_path or ""
        self.pretrained_ckpt_key_map = dict(pretrained_ckpt_key_map or {"net": "net"})
        self.keep_last = check_keep_last(keep_last)

    @classmethod
    def from_config(cls, checkpointer_config: Any, save_dir: str | None = None) -> Checkpointer:
        """The backend the config asks for: S3 (`use_s3=True`, see S3Checkpointer) or local files in `save_dir`."""
        if getattr(checkpointer_config, "use_s3", False) and cls is Checkpointer:
            return S3Checkpointer.from_config(checkpointer_config, save_dir=save_dir)
        return cls(
            save_dir=save_dir or checkpointer_config.save_dir,
            pretrained_ckpt_path=checkpointer_config.pretrained_ckpt_path,
            pretrained_ckpt_key_map=checkpointer_config.pretrained_ckpt_key_map,
            keep_last=getattr(checkpointer_config, "keep_last", 0),
        )

    # --- storage ----------------------------------------------------------------------------------------------------
    def save(self, state: Mapping[str, Any], iteration: int) -> str:
        """Write `state` as `{save_dir}/{iteration:07d}.pth` atomically; returns the path. Call on rank 0 only."""
        path = checkpoint_path(self.save_dir, iteration)
        atomic_torch_save(dict(state), path)
        for _, old in prunable(self.list_checkpoints(), self.keep_last):
            os.remove(old)
        return path

    def list_checkpoints(self) -> list[tuple[int, str]]:
        """(iteration, path) of the complete checkpoint files, oldest first (temporary files are ignored)."""
        if not os.path.isdir(self.save_dir):
            return []
        found = []
        for name in os.listdir(self.save_dir):
            match = CHECKPOINT_PATTERN.match(name)
            if match:
                found.append((int(match.group(1)), os.path.join(self.save_dir, name)))
        return sorted(found)

    def load(self, path: str) -> dict[str, Any]:
        """The state stored in `path` (weights_only); raises CheckpointError / FileNotFoundError with the reason.

        An s3:// URL is read through the verified download cache (fastgen.utils.s3); a corrupt download is evicted.
        """
        if s3.is_s3_url(path):
            local_path = self.s3_client().cached_download(path)
            try:
                return self.load(local_path)
            except CheckpointError as error:
                s3.remove_cached(local_path)
                raise CheckpointError(f"{path}: {error}") from None
        state = safe_torch_load(path)
        if not isinstance(state, dict) or "model" not in state or "iteration" not in state:
            keys = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise CheckpointError(f"{path} is not a fastgen checkpoint (expected keys 'model' and 'iteration', got {keys})")
        return state

    def s3_client(self) -> s3.S3Client:
        """Client for s3:// paths (e.g. a pretrained_ckpt_path on S3), credentials from the environment."""
        return s3.S3Client()

    def load_latest(self) -> tuple[dict[str, Any], str] | None:
        """(state, path) of the newest readable checkpoint, or None when there is none.

        An unreadable newest file is reported and the previous one is tried, so a crash during a save (or a
        damaged file) costs at most one checkpoint interval.
        """
        for iteration, path in reversed(self.list_checkpoints()):
            try:
                return self.load(path), path
            except (CheckpointError, OSError) as error:
                logger.warning(f"checkpoint {path} (iteration {iteration}) is unusable and is skipped; "
                               f"falling back to the previous checkpoint. Reason: {error}")
        return None


def checkpointer_from_config(checkpointer_config: Any, save_dir: str, sharded: bool) -> Checkpointer:
    """The backend a run uses (the trainer, and the fresh-run check before it): sharded DCP folders under FSDP,
    single files otherwise; each on S3 when `use_s3` is set."""
    if sharded:
        from fastgen.utils.dcp_checkpointer import DCPCheckpointer  # (imports this module)

        return DCPCheckpointer.from_config(checkpointer_config, save_dir=save_dir)
    return Checkpointer.from_config(checkpointer_config, save_dir=save_dir)


def error_line(error: BaseException) -> str:
    """First line of an error's message (S3Errors are already one redacted line), or its type name."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def prune_or_warn(checkpointer: Any) -> None:
    """`keep_last` pruning of an S3 backend; an unreachable S3 postpones it to the next save instead of failing."""
    try:
        checkpointer.prune()
    except s3.S3Error as error:
        logger.warning(f"pruning old checkpoints is postponed to the next save: {error_line(error)}")


def check_keep_last(keep_last: int) -> int:
    if int(keep_last) < 0:
        raise ValueError(f"trainer.checkpointer.keep_last must be >= 0 (0 keeps every checkpoint), got {keep_last}")
    return int(keep_last)


def prunable(checkpoints: list[tuple[int, str]], keep_last: int) -> list[tuple[int, str]]:
    """The (iteration, path) entries beyond the newest `keep_last` (none when keep_last is 0)."""
    return sorted(checkpoints)[:-keep_last] if keep_last > 0 else []


class S3Checkpointer(Checkpointer):
    """Checkpoints as S3 objects `{s3_container}/{key_prefix}/{iteration:07d}.pth` (trainer.checkpointer.use_s3).

    `key_prefix` is the local save_dir relative to $FASTGEN_OUTPUT_ROOT, i.e. `{project}/{group}/{name}/checkpoints`,
    so a run's S3 layout mirrors its local run directory and a resume on another machine finds it.
    save = atomic local file in the S3 cache, then one upload (a completed PUT / multipart upload is atomic: readers
    never see a partial object); list = listing of the prefix; load = verified cached download + the same
    weights_only load, so `load_latest` falls back past a corrupt newest object exactly like the local backend.
    `local_copy_type` says what happens to the local copy after the upload: "keep_latest" (default: the newest stays
    in the cache, so resuming on the same machine downloads nothing), "keep_all", or "delete".
    An upload that fails keeps the local copy (warning) and is retried at the next save; until then
    `list_checkpoints` lists it, so a resume on this machine still finds it. `keep_last` > 0 deletes older
    objects (and their local copies) after each save.
    """

    LOCAL_COPY_TYPES = ("keep_latest", "keep_all", "delete")

    def __init__(self, s3_container: str, key_prefix: str, credential_file: str | None = None,
                 local_copy_type: str = "keep_latest", pretrained_ckpt_path: str = "",
                 pretrained_ckpt_key_map: Mapping | None = None, s3_client: Any = None, keep_last: int = 0):
        if local_copy_type not in self.LOCAL_COPY_TYPES:
            raise ValueError(f"local_copy_type={local_copy_type!r}; expected one of {', '.join(self.LOCAL_COPY_TYPES)}")
        try:
            self.prefix = s3.parse_s3_url(s3_container).join(key_prefix)
        except ValueError as error:
            raise ValueError(f"trainer.checkpointer.s3_container: {error}") from None
        super().__init__(str(self.prefix), pretrained_ckpt_path, pretrained_ckpt_key_map, keep_last=keep_last)
        self.local_copy_type = local_copy_type
        self.storage = s3_client or s3.S3Client(credential_file)
        self.storage.check_bucket(self.prefix)  # a bad bucket / key fails now, not at the first save hours later

    @classmethod
    def from_config(cls, checkpointer_config: Any, save_dir: str | None = None) -> S3Checkpointer:
        return cls(**s3_checkpointer_kwargs(checkpointer_config, save_dir))

    def url(self, iteration: int) -> str:
        return str(self.prefix.join(f"{int(iteration):07d}.pth"))

    def save(self, state: Mapping[str, Any], iteration: int) -> str:
        """Serialise to the local cache, upload as one object, then keep/clean the local copy; returns the URL."""
        url = self.url(iteration)
        local_path = s3.cache_path(url)
        atomic_torch_save(dict(state), local_path)
        for pending_iteration, pending in self.pending_uploads():  # earlier failed uploads first, oldest first
            if pending != local_path:
                self._upload(pending, self.url(pending_iteration))
        uploaded = self._upload(local_path, url)
        if self.local_copy_type == "keep_latest":
            for _, older in self.list_local_copies():
                if older != local_path and s3.read_sidecar(older) is not None:  # never a copy still to upload
                    s3.remove_cached(older)
        prune_or_warn(self)
        return url if uploaded else local_path

    def _upload(self, local_path: str, url: str) -> bool:
        """Upload one local copy; on failure keep it (warning) so the next save retries. True when uploaded."""
        try:
            info = self.storage.upload_file(local_path, url)
        except Exception as error:
            logger.warning(f"checkpoint upload to {url} failed ({error_line(error)}); the local copy {local_path} "
                           "is kept and the upload is retried at the next save")
            return False
        if self.local_copy_type == "delete":
            s3.remove_cached(local_path)
            return True
        sha256, _, size = s3.file_digests(local_path)
        s3.write_sidecar(local_path, {"url": url, "etag": info["etag"], "size": size, "sha256": sha256})
        return True

    def pending_uploads(self) -> list[tuple[int, str]]:
        """Local copies whose upload has not succeeded yet (no sidecar), oldest first."""
        return [(it, path) for it, path in self.list_local_copies() if s3.read_sidecar(path) is None]

    def prune(self) -> None:
        """Keep the newest `keep_last` checkpoints (objects and local copies); 0 keeps all."""
        for _, old in prunable(self.list_checkpoints(), self.keep_last):
            if s3.is_s3_url(old):
                self.storage.delete(old)
                s3.remove_cached(s3.cache_path(old))
            else:
                s3.remove_cached(old)

    def list_local_copies(self) -> list[tuple[int, str]]:
        directory = os.path.dirname(s3.cache_path(self.url(0)))
        return Checkpointer(directory).list_checkpoints()

    def list_checkpoints(self) -> list[tuple[int, str]]:
        """(iteration, s3:// URL) of the checkpoint objects directly under the prefix, plus (iteration, local path)
        of copies whose upload failed and is still pending; oldest first."""
        found = {}
        for item in self.storage.list(self.prefix, recursive=False):
            match = CHECKPOINT_PATTERN.match(item["key"].rsplit("/", 1)[-1])
            if match:
                found[int(match.group(1))] = item["url"]
        for iteration, path in self.pending_uploads():
            found.setdefault(iteration, path)
        return sorted(found.items())

    def s3_client(self) -> s3.S3Client:
        return self.storage


def s3_key_prefix(save_dir: str) -> str:
    """The S3 key prefix of a run: save_dir relative to $FASTGEN_OUTPUT_ROOT ({project}/{group}/{name}/checkpoints)."""
    from fastgen.utils.env import output_root

    root = os.path.abspath(output_root())
    relative = os.path.relpath(os.path.abspath(save_dir), root)
    if relative == "." or relative.startswith(".." + os.sep) or relative == "..":
        raise ValueError(f"trainer.checkpointer.use_s3=True names checkpoints by save_dir relative to "
                         f"FASTGEN_OUTPUT_ROOT ({root}), but save_dir {save_dir} lies outside it; set "
                         "trainer.checkpointer.save_dir to a relative path (default 'checkpoints')")
    return relative.replace(os.sep, "/")


def s3_checkpointer_kwargs(checkpointer_config: Any, save_dir: str | None = None) -> dict:
    """Constructor arguments shared by the S3 checkpointers (single files and DCP folders), from the config."""
    return dict(
        s3_container=checkpointer_config.s3_container,
        key_prefix=s3_key_prefix(save_dir or checkpointer_config.save_dir),
        credential_file=getattr(checkpointer_config, "s3_credential", None),
        local_copy_type=checkpointer_config.s3_local_copy_type,
        pretrained_ckpt_path=checkpointer_config.pretrained_ckpt_path,
        pretrained_ckpt_key_map=checkpointer_config.pretrained_ckpt_key_map,
        keep_last=getattr(checkpointer_config, "keep_last", 0),
    )


# --- model <-> state ---------------------------------------------------------------------------------------------------
def collect_state(model: Any, callbacks: Any = None, iteration: int = 0, rng: list | None = None,
                  data: Mapping[str, int] | None = None, config_yaml: str | None = None, world_size: int = 1) -> dict:
    """Everything needed to continue training `model` (a FastGenModel) from `iteration`."""
    scaler = getattr(model, "grad_scaler", None)
    scaler_state = scaler.state_dict() if scaler is not None and scaler.is_enabled() else {}
    return {
        "format_version": FORMAT_VERSION,
        "iteration": int(iteration),
        "model": {name: module.state_dict() for name, module in model.model_dict.items()},
        "optimizer": {name: opt.state_dict() for name, opt in model.optimizer_dict.items()},
        "scheduler": {name: sch.state_dict() for name, sch in model.scheduler_dict.items()},
        "grad_scaler": scaler_state,
        "callbacks": callbacks.state_dict() if callbacks is not None else {},
        "rng": list(rng or []),
        "data": dict(data or {}),
        "config": config_yaml or "",
        "world_size": int(world_size),
    }


def load_module_state(module: torch.nn.Module, state_dict: Mapping[str, Any], name: str, strict: bool = True) -> None:
    """load_state_dict with an error (strict) or warning naming the network and the mismatching keys."""
    result = module.load_state_dict(state_dict, strict=False)
    problems = []
    if result.missing_keys:
        problems.append(f"missing keys {result.missing_keys[:8]}{' ...' if len(result.missing_keys) > 8 else ''}")
    if result.unexpected_keys:
        extra = result.unexpected_keys
        problems.append(f"unexpected keys {extra[:8]}{' ...' if len(extra) > 8 else ''}")
    if problems:
        message = f"loading weights into '{name}': {'; '.join(problems)}"
        if strict:
            raise CheckpointError(message + " (does the checkpoint come from a different network config?)")
        logger.warning(message)


def has_entry(saved: Mapping[str, Any], name: str, kind: str, strict: bool) -> bool:
    """Whether `saved` holds `name`; a missing one is an error when strict, else a warning (and is skipped), so that
    e.g. an SFT checkpoint (net only) initialises a DMD2 model whose fake_score/discriminator start fresh."""
    if name in saved:
        return True
    message = f"checkpoint has no {kind} for '{name}' (it holds {sorted(saved)})"
    if strict:
        raise CheckpointError(message)
    logger.warning(f"{message}; '{name}' keeps its current {kind}")
    return False


def restore_state(model: Any, state: Mapping[str, Any], callbacks: Any = None, strict: bool = True) -> int:
    """Load networks, optimizers, schedulers, grad scaler and callbacks from `state`; returns its iteration."""
    saved_models = state.get("model") or {}
    for name, module in model.model_dict.items():
        if has_entry(saved_models, name, "weights", strict):
            load_module_state(module, saved_models[name], name, strict=strict)
    for kind, current in (("optimizer", model.optimizer_dict), ("scheduler", model.scheduler_dict)):
        saved = state.get(kind) or {}
        for name, obj in current.items():
            if has_entry(saved, name, f"{kind} state", strict):
                obj.load_state_dict(saved[name])
    scaler = getattr(model, "grad_scaler", None)
    if scaler is not None and scaler.is_enabled() and state.get("grad_scaler"):
        scaler.load_state_dict(state["grad_scaler"])
    if callbacks is not None:
        callbacks.load_state_dict(state.get("callbacks") or {})
    return int(state["iteration"])


def load_pretrained_checkpoint(model: Any, path: str, key_map: Mapping[str, str], checkpointer: Checkpointer) -> int:
    """Load networks of an earlier stage's checkpoint: `model.<attr>` <- `ckpt["model"][key]` for each attr: key."""
    state = checkpointer.load(path)
    saved = state["model"]
    for attr, key in key_map.items():
        module = getattr(model, attr, None)
        if module is None:
            raise ValueError(f"pretrained_ckpt_key_map names model attribute '{attr}', which this model does not have")
        if key not in saved:
            raise CheckpointError(f"{path} has no network '{key}' (pretrained_ckpt_key_map {dict(key_map)}); "
                                  f"it holds {sorted(saved)}")
        load_module_state(module, saved[key], attr, strict=False)
        logger.info(f"loaded '{attr}' from '{key}' of {path} (iteration {state['iteration']})")
    return int(state["iteration"])


def config_drift(saved_yaml: str, current_yaml: str, max_lines: int = 20) -> list[str]:
    """Changed lines between the config a checkpoint was written with and the current one (unified diff)."""
    if not saved_yaml or not current_yaml or saved_yaml == current_yaml:
        return []
    diff = difflib.unified_diff(saved_yaml.splitlines(), current_yaml.splitlines(), "checkpoint", "current",
                                lineterm="", n=0)
    lines = [line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    return lines[:max_lines] + ([f"... ({len(lines) - max_lines} more)"] if len(lines) > max_lines else [])
