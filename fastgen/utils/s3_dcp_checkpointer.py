"""Sharded (DCP) checkpoints on S3: `{s3_container}/{key_prefix}/{iteration:07d}/` holding the DCP files and
extras.pth (trainer.checkpointer.use_s3 with FSDP).

Save: the folder is written locally first (DCPCheckpointer, atomic, in the S3 cache mirror of the prefix), then rank 0
uploads its files, shards and `.metadata` first and `extras.pth` last: a folder counts as a checkpoint on S3 only when
both `.metadata` and `extras.pth` are there, so a crash mid-upload never leaves something that looks complete.
The local folder assumes the shared filesystem DCPCheckpointer already needs. A failed upload keeps the local folder
(warning) and is retried at the next save; until then `list_checkpoints` lists the local folder, so a resume on this
machine still finds it. Load: every rank fetches the folder's objects through the verified download cache, then DCP
reads (and reshards) them as usual. `keep_last` > 0 deletes older folders on S3 and locally after each save.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from typing import Any

from loguru import logger

from fastgen.utils import distributed as dist_utils
from fastgen.utils import s3
from fastgen.utils.checkpointer import error_line, prunable, prune_or_warn, s3_checkpointer_kwargs
from fastgen.utils.dcp_checkpointer import (
    EXTRAS_FILE,
    FOLDER_PATTERN,
    METADATA_FILE,
    DCPCheckpointer,
    is_complete,
)

UPLOADED_MARKER = ".uploaded"  # written into a local folder once all its files are on S3


class S3DCPCheckpointer(DCPCheckpointer):
    LOCAL_COPY_TYPES = ("keep_latest", "keep_all", "delete")

    def __init__(self, s3_container: str, key_prefix: str, credential_file: str | None = None,
                 local_copy_type: str = "keep_latest", pretrained_ckpt_path: str = "",
                 pretrained_ckpt_key_map: Mapping | None = None, keep_last: int = 0, s3_client: Any = None):
        if local_copy_type not in self.LOCAL_COPY_TYPES:
            raise ValueError(f"local_copy_type={local_copy_type!r}; expected one of {', '.join(self.LOCAL_COPY_TYPES)}")
        try:
            self.prefix = s3.parse_s3_url(s3_container).join(key_prefix)
        except ValueError as error:
            raise ValueError(f"trainer.checkpointer.s3_container: {error}") from None
        local_dir = os.path.dirname(s3.cache_path(str(self.prefix.join("x"))))
        super().__init__(local_dir, pretrained_ckpt_path, pretrained_ckpt_key_map, keep_last=0)  # pruned here
        self.keep_last_s3 = int(keep_last)
        self.local_copy_type = local_copy_type
        self.storage = s3_client or s3.S3Client(credential_file)
        self.storage.check_bucket(self.prefix)  # a bad bucket fails now, not at the first save

    @classmethod
    def from_config(cls, checkpointer_config: Any, save_dir: str | None = None) -> S3DCPCheckpointer:
        return cls(**s3_checkpointer_kwargs(checkpointer_config, save_dir))

    def url(self, iteration: int) -> str:
        return str(self.prefix.join(f"{int(iteration):07d}"))

    # --- save -------------------------------------------------------------------------------------------------
    def save(self, state: Mapping[str, Any], iteration: int) -> str:
        """Local atomic folder (all ranks), then rank 0 uploads it (and earlier failed ones); returns the URL, or
        the local folder when the upload failed."""
        folder = super().save(state, iteration)
        uploaded = True
        if dist_utils.is_rank0():
            for _, pending in self.pending_uploads():
                if pending != folder:
                    self._upload(pending)
            uploaded = self._upload(folder)
            self._clean_local(folder)
            prune_or_warn(self)
        uploaded = dist_utils.broadcast_object(uploaded)
        return self.url(iteration) if uploaded else folder

    def _upload(self, folder: str) -> bool:
        url = self.url(int(os.path.basename(folder)))
        names = sorted(n for n in os.listdir(folder) if n not in (EXTRAS_FILE, METADATA_FILE, UPLOADED_MARKER)
                       and not n.endswith(s3.SIDECAR_SUFFIX))
        try:
            for name in [*names, METADATA_FILE, EXTRAS_FILE]:  # extras last: its presence marks a complete folder
                self.storage.upload_file(os.path.join(folder, name), f"{url}/{name}")
        except Exception as error:
            logger.warning(f"checkpoint upload to {url}/ failed ({error_line(error)}); the local "
                           f"folder {folder} is kept and the upload is retried at the next save")
            return False
        with open(os.path.join(folder, UPLOADED_MARKER), "w"):
            pass
        return True

    def _clean_local(self, newest: str) -> None:
        """Apply local_copy_type to uploaded folders; folders still to upload always stay."""
        for _, folder in DCPCheckpointer.list_checkpoints(self):
            if not os.path.exists(os.path.join(folder, UPLOADED_MARKER)):
                continue
            if self.local_copy_type == "delete" or (self.local_copy_type == "keep_latest" and folder != newest):
                shutil.rmtree(folder, ignore_errors=True)

    def pending_uploads(self) -> list[tuple[int, str]]:
        """Complete local folders whose upload has not succeeded (no marker), oldest first."""
        return [(it, f) for it, f in DCPCheckpointer.list_checkpoints(self)
                if not os.path.exists(os.path.join(f, UPLOADED_MARKER)) and not self._on_s3(it)]

    def _on_s3(self, iteration: int) -> bool:
        try:
            return self.storage.exists(f"{self.url(iteration)}/{EXTRAS_FILE}")
        except s3.S3Error:  # unreachable: treat as not uploaded (the retry re-uploads; a PUT is idempotent)
            return False

    def prune(self) -> None:
        for iteration, _ in prunable(self.list_checkpoints(), self.keep_last_s3):
            for item in self.storage.list(self.url(iteration)):
                self.storage.delete(item["url"])
            shutil.rmtree(os.path.join(self.save_dir, f"{iteration:07d}"), ignore_errors=True)

    # --- list / load ------------------------------------------------------------------------------------------
    def list_checkpoints(self) -> list[tuple[int, str]]:
        """(iteration, s3:// folder URL) of complete folders on S3, plus local folders still to upload."""
        files: dict[int, set] = {}
        for item in self.storage.list(self.prefix):
            parts = item["key"].rsplit("/", 2)
            if len(parts) >= 2 and FOLDER_PATTERN.match(parts[-2]):
                files.setdefault(int(parts[-2]), set()).add(parts[-1])
        found = {it: self.url(it) for it, names in files.items() if {METADATA_FILE, EXTRAS_FILE} <= names}
        for iteration, folder in DCPCheckpointer.list_checkpoints(self):
            if not os.path.exists(os.path.join(folder, UPLOADED_MARKER)):
                found.setdefault(iteration, folder)
        return sorted(found.items())

    def fetch(self, url: str) -> str:
        """The local folder holding the objects of checkpoint folder `url` (verified cache; every rank)."""
        items = self.storage.list(url)
        if not items:
            raise FileNotFoundError(f"no checkpoint objects under {url}/")
        for item in items:
            self.storage.cached_download(item["url"])
        folder = os.path.dirname(s3.cache_path(items[0]["url"]))
        if not is_complete(folder):
            raise FileNotFoundError(f"{url}/ lacks {METADATA_FILE} or {EXTRAS_FILE}: an upload that did not finish")
        return folder

    def load(self, path: str, model: Any = None) -> dict[str, Any]:
        if s3.is_s3_url(path):
            path = self.fetch(path.rstrip("/"))
        return super().load(path, model)
