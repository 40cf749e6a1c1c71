"""Run folders are never shared or mixed: a lock for the live run, a refusal for a fresh run into old checkpoints.

`prepare_run_folder` runs once per training run on rank 0, before `config.yaml` is written (fastgen.cli.setup):

1. **Lock.** `{run_dir}/run.lock` holds the owner's host, pid and start time. A second live run into the same folder is
   refused; a lock whose process is gone (same host, pid not running, e.g. after `kill -9`) is stale and taken over.
   The lock is removed when the process exits. The same process may lock again (the demo trains several stages).
2. **No mixing.** A fresh run (`trainer.resume=False`) into a folder that already holds checkpoints is refused: its
   first save would interleave with the other run's files and a later resume would pick up the wrong one. With
   `trainer.checkpointer.use_s3` the run's S3 prefix is listed too (through the checkpointer's own listing), so an
   earlier run whose checkpoints live on S3 only is found from any machine.
3. **Leftovers.** Partial checkpoints of a killed save (`.0000100.pth.tmp<pid>` files, `0000100.tmp/` DCP folders)
   are removed: they are never loaded, but they hold disk space.
4. **Writable.** The checkpoint folder is created and a probe file written, so a read-only or full disk fails now,
   not at the first save hours later.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import socket
import time
from collections.abc import Callable

LOCK_FILE = "run.lock"
# complete checkpoints: single files (fastgen.utils.checkpointer) and DCP folders (fastgen.utils.dcp_checkpointer)
CHECKPOINT_NAME = re.compile(r"^(\d{7,})(\.pth)?$")
# what an interrupted save leaves: atomic_torch_save's temporary file, DCP's temporary folder
PARTIAL_CHECKPOINT_NAME = re.compile(r"^(\.\d{7,}\.pth\.tmp\d+|\d{7,}\.tmp)$")

_HELD: set[str] = set()  # lock files this process owns (removed at exit)


class RunFolderError(RuntimeError):
    """The run folder cannot be used by this run (another live run, another run's checkpoints, not writable)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _read_lock(path: str) -> dict:
    try:
        with open(path) as file:
            data = json.load(file)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # half-written or foreign: treated as stale below unless its owner is provably alive


def _owner_alive(owner: dict) -> bool:
    if owner.get("host") != socket.gethostname():
        return True  # cannot check a process on another machine: assume it runs
    pid = owner.get("pid")
    return isinstance(pid, int) and pid != os.getpid() and _pid_alive(pid)


def acquire_run_lock(run_dir: str) -> str:
    """Create `{run_dir}/run.lock` for this process; take over a stale one; refuse a live foreign one."""
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, LOCK_FILE)
    record = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()})
    for _ in range(3):  # create, or remove a stale lock and create again (another process may race us)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _read_lock(path)
            if _owner_alive(owner):
                raise RunFolderError(
                    f"{run_dir} is in use by another run (pid {owner.get('pid')} on {owner.get('host')}, lock file "
                    f"{path}); choose another folder with log_config.name=NEW_NAME, or delete the lock file if that "
                    f"run is not running any more"
                ) from None
            try:
                os.remove(path)  # stale: its process is gone (or it is our own from an earlier stage)
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as file:
            file.write(record)
        if not _HELD:
            atexit.register(_release_all)
        _HELD.add(path)
        return path
    raise RunFolderError(f"could not take the lock {path}: another process keeps re-creating it")


def release_run_lock(run_dir: str) -> None:
    """Remove this process's lock on `run_dir` (no-op if it holds none)."""
    path = os.path.join(run_dir, LOCK_FILE)
    if path in _HELD:
        _HELD.discard(path)
        if _read_lock(path).get("pid") == os.getpid():
            try:
                os.remove(path)
            except FileNotFoundError:
                pass


def _release_all() -> None:
    for path in list(_HELD):
        release_run_lock(os.path.dirname(path))


def local_checkpoints(save_dir: str) -> list[str]:
    """Names of the complete-looking checkpoints (files or DCP folders) in `save_dir`, sorted."""
    if not os.path.isdir(save_dir):
        return []
    return sorted(name for name in os.listdir(save_dir) if CHECKPOINT_NAME.match(name))


def refuse_fresh_run_over_checkpoints(location: str, found: list[str], resume: bool) -> None:
    """Refuse a fresh run when `location` (a folder or an S3 prefix) holds the checkpoints named in `found`."""
    if resume or not found:
        return
    raise RunFolderError(
        f"{location} already holds {len(found)} checkpoint(s) of another run (newest: {found[-1]}) and "
        f"trainer.resume=False; start the new run in its own folder with log_config.name=NEW_NAME, or continue "
        f"that run with trainer.resume=True"
    )


def remove_partial_checkpoints(save_dir: str) -> list[str]:
    """Delete the temporary files/folders of interrupted saves in `save_dir`; returns their names."""
    if not os.path.isdir(save_dir):
        return []
    removed = []
    for name in sorted(os.listdir(save_dir)):
        if PARTIAL_CHECKPOINT_NAME.match(name):
            path = os.path.join(save_dir, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
            removed.append(name)
    return removed


def check_writable(folder: str) -> None:
    """Write/delete a probe file in `folder`; a RunFolderError names the folder and the cause.

    Folders created for the probe are removed again (a run whose checkpoints live on S3 only keeps no local folder).
    """
    created, parent = [], os.path.abspath(folder)
    while not os.path.exists(parent):
        created.append(parent)
        parent = os.path.dirname(parent)
    probe = os.path.join(folder, f".write_probe{os.getpid()}")
    try:
        os.makedirs(folder, exist_ok=True)
        with open(probe, "wb") as file:  # (no fsync: on a busy disk it costs seconds and proves nothing more here)
            file.write(b"0" * 4096)
        os.remove(probe)
        for path in created:  # deepest first
            os.rmdir(path)
    except OSError as error:
        raise RunFolderError(
            f"checkpoint folder {folder} is not writable ({type(error).__name__}: {error.strerror or error}); fix "
            f"its permissions or free space, or point FASTGEN_OUTPUT_ROOT / trainer.checkpointer.save_dir elsewhere"
        ) from None


def prepare_run_folder(run_dir: str, save_dir: str, resume: bool,
                       list_remote: Callable[[], tuple[str, list[str]]] | None = None) -> list[str]:
    """Steps 1-4 of the module docstring; returns the names of removed partial checkpoints.

    `list_remote` (called only for a fresh run) returns (location, sorted checkpoint names) of the checkpoints the
    run's backend keeps elsewhere, e.g. on S3 (fastgen.cli passes the checkpointer's own listing).
    """
    acquire_run_lock(run_dir)
    try:
        refuse_fresh_run_over_checkpoints(save_dir, local_checkpoints(save_dir), resume)
        if list_remote is not None and not resume:
            refuse_fresh_run_over_checkpoints(*list_remote(), resume)
        removed = remove_partial_checkpoints(save_dir)
        check_writable(save_dir)
    except BaseException:
        release_run_lock(run_dir)
        raise
    return removed
