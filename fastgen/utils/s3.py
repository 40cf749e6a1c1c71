"""S3 storage: one client built from the environment, `s3://` URLs, transfers, and a verified local download cache.

Credentials and endpoint come from the standard variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION /
AWS_DEFAULT_REGION, AWS_ENDPOINT_URL / S3_ENDPOINT_URL), which `fastgen.utils.env.load_s3_credentials` fills from
`./credentials/s3.json`; boto3's other sources (~/.aws, instance roles) still work. Every failure becomes one
`S3Error` line naming the bucket/key and what to fix (which variable or file); secrets are redacted from messages.

Why a cache: pretrained weights, dataset zips and checkpoints are read by every run (and every rank), so a download
is kept under `$FASTGEN_OUTPUT_ROOT/.cache/s3/{bucket}/{key}` with a sidecar `{file}.s3meta.json` holding the
object's ETag and size and the local file's sha256. A cached file is re-used only when the remote ETag and size still
match and the local bytes still hash to the recorded sha256; otherwise it is downloaded again (to a temporary file,
verified, then renamed, so concurrent ranks never read a partial file).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from loguru import logger

from fastgen.utils.env import DEFAULT_S3_CREDENTIAL, load_s3_credentials, output_root, redact_text

S3_SCHEME = "s3://"
SIDECAR_SUFFIX = ".s3meta.json"
MULTIPART_THRESHOLD = 64 * 1024 * 1024  # objects above this go up/down in parts (boto3 managed transfer)
DEFAULT_REGION = "us-east-1"
_ACCESS_DENIED_CODES = {
    "403", "AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled",
    "InvalidToken", "ExpiredToken", "AccountProblem",
}
_NO_BUCKET_CODES = {"NoSuchBucket"}
_NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound"}


class S3Error(RuntimeError):
    """An S3 operation failed; the message names the object and what to fix."""


class S3CredentialsError(S3Error):
    """No (or partial) credentials: nothing was sent to S3."""


class S3AccessDeniedError(S3Error):
    """The endpoint refused the credentials or the permission for this bucket/key."""


class S3BucketNotFoundError(S3Error):
    """The bucket does not exist at this endpoint."""


class S3NotFoundError(S3Error, FileNotFoundError):
    """The object does not exist (a FileNotFoundError, so callers treating missing files alike need no S3 case)."""


# --- URLs --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class S3Url:
    bucket: str
    key: str = ""

    def __str__(self) -> str:
        return f"{S3_SCHEME}{self.bucket}/{self.key}" if self.key else f"{S3_SCHEME}{self.bucket}"

    def join(self, *parts: str) -> S3Url:
        """A child URL: `S3Url("b", "a").join("c/d", "e.pth")` -> s3://b/a/c/d/e.pth (no doubled slashes)."""
        pieces = [p.strip("/") for p in (self.key, *parts) if p and p.strip("/")]
        return S3Url(self.bucket, "/".join(pieces))


def is_s3_url(path: Any) -> bool:
    return isinstance(path, str) and path.startswith(S3_SCHEME)


def parse_s3_url(url: str) -> S3Url:
    """'s3://bucket/some/key' -> S3Url('bucket', 'some/key'); a clear error for anything else."""
    if not is_s3_url(url):
        raise ValueError(f"expected an S3 URL of the form s3://bucket/key, got {url!r}")
    bucket, _, key = url[len(S3_SCHEME):].partition("/")
    if not bucket:
        raise ValueError(f"S3 URL {url!r} has no bucket name; expected s3://bucket/key")
    return S3Url(bucket, key.lstrip("/"))


# --- settings and client -----------------------------------------------------------------------------------------------
def endpoint_url() -> str | None:
    """AWS_ENDPOINT_URL (or S3_ENDPOINT_URL) for S3-compatible stores; None means AWS itself."""
    return os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("S3_ENDPOINT_URL") or None


def region_name() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


def cache_root() -> str:
    """$FASTGEN_OUTPUT_ROOT/.cache/s3: where downloaded objects are kept (one file per bucket/key)."""
    return os.path.join(output_root(), ".cache", "s3")


def cache_path(url: str | S3Url, root: str | None = None) -> str:
    parsed = parse_s3_url(url) if isinstance(url, str) else url
    if not parsed.key or parsed.key.endswith("/"):
        raise ValueError(f"{parsed} names a prefix, not an object; expected s3://bucket/path/to/file")
    parts = parsed.key.split("/")
    if any(part in ("", ".", "..") for part in parts):  # would escape or alias paths inside the cache
        raise ValueError(f"{parsed} has an empty, '.' or '..' path segment; it cannot be cached as a local file")
    return os.path.join(root or cache_root(), parsed.bucket, *parts)


def credential_hint(credential_file: str | None) -> str:
    return (f"set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or put aws_access_key_id / aws_secret_access_key "
            f"into {credential_file or DEFAULT_S3_CREDENTIAL} (trainer.checkpointer.s3_credential)")


class S3Client:
    """A boto3 S3 client plus fastgen's error messages, transfers and cache. Cheap to share, safe across threads."""

    def __init__(self, credential_file: str | None = DEFAULT_S3_CREDENTIAL):
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError

        if credential_file:
            load_s3_credentials(credential_file)  # variables already set win
        self.credential_file = credential_file
        self.endpoint_url = endpoint_url()
        self.region = region_name()
        session = boto3.session.Session(region_name=self.region)
        try:
            credentials = session.get_credentials()
        except BotoCoreError as error:  # e.g. PartialCredentialsError: a key id without its secret
            raise S3CredentialsError(f"incomplete S3 credentials ({_one_line(error)}): "
                                     f"{credential_hint(credential_file)}") from None
        if credentials is None:
            raise S3CredentialsError(f"no S3 credentials found: {credential_hint(credential_file)}")
        s3_options = {"addressing_style": "path"} if self.endpoint_url else {}  # custom endpoints rarely do DNS buckets
        retries = {"max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS") or 5),  # the standard variables win
                   "mode": os.environ.get("AWS_RETRY_MODE") or "standard"}
        config = Config(retries=retries, connect_timeout=10, read_timeout=120, s3=s3_options)
        self.client = session.client("s3", endpoint_url=self.endpoint_url, config=config)

    # ----------------------------------------------------------------------------------------------------- errors
    @contextlib.contextmanager
    def errors(self, action: str, url: str | S3Url) -> Iterator[None]:
        """Turn boto3/botocore exceptions into one-line S3Errors naming `url`, the endpoint and the fix."""
        try:
            yield
        except S3Error:
            raise
        except Exception as error:
            translated = self.translate_error(error, action, str(url))
            if translated is None:
                raise
            raise translated from None

    def translate_error(self, error: BaseException, action: str, url: str) -> S3Error | None:
        """The S3Error for a boto3/botocore exception (None for anything else)."""
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        where = f" at endpoint {self.endpoint_url}" if self.endpoint_url else ""
        if isinstance(error, Boto3Error):  # the transfer manager wraps the real cause (e.g. S3UploadFailedError)
            cause = error.__cause__ or error.__context__
            if cause is not None and cause is not error:
                return self.translate_error(cause, action, url) or S3Error(
                    redact_text(f"cannot {action} {url}{where}: {_one_line(error)}"))
            return S3Error(redact_text(f"cannot {action} {url}{where}: {_one_line(error)}"))
        if isinstance(error, ClientError):
            code = str(error.response.get("Error", {}).get("Code", ""))
            detail = _one_line(error.response.get("Error", {}).get("Message", "") or code)
            bucket = parse_s3_url(url).bucket
            if code in _ACCESS_DENIED_CODES:
                return S3AccessDeniedError(redact_text(
                    f"access denied while trying to {action} {url}{where} ({code}: {detail}); check that "
                    f"AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (environment or {self.credential_file}) are valid "
                    f"and allowed to access bucket '{bucket}'"))
            if code in _NO_BUCKET_CODES:
                return self.no_bucket_error(bucket, action, url)
            if code in _NOT_FOUND_CODES:
                return S3NotFoundError(f"cannot {action} {url}: no such object{where}")
            return S3Error(redact_text(f"cannot {action} {url}{where}: {code}: {detail}"))
        if isinstance(error, (NoCredentialsError, PartialCredentialsError)):
            return S3CredentialsError(f"cannot {action} {url}: no S3 credentials; {credential_hint(self.credential_file)}")
        if isinstance(error, EndpointConnectionError):
            return S3Error(f"cannot {action} {url}: the S3 endpoint {self.endpoint_url or 'of AWS'} is unreachable; "
                           f"check AWS_ENDPOINT_URL (or endpoint_url in {self.credential_file}) and the network")
        if isinstance(error, BotoCoreError):
            return S3Error(redact_text(f"cannot {action} {url}{where}: {_one_line(error)}"))
        return None

    def no_bucket_error(self, bucket: str, action: str, url: str) -> S3BucketNotFoundError:
        where = f" at endpoint {self.endpoint_url}" if self.endpoint_url else f" in region {self.region}"
        return S3BucketNotFoundError(f"cannot {action} {url}: S3 bucket '{bucket}' does not exist{where}; create it "
                                     "or fix the bucket in the s3:// path (e.g. trainer.checkpointer.s3_container)")

    # ------------------------------------------------------------------------------------------------ operations
    def check_bucket(self, url: str | S3Url) -> None:
        """Fail early (before training) when the bucket is missing or the credentials may not use it."""
        parsed = parse_s3_url(str(url))
        from botocore.exceptions import ClientError

        with self.errors("access", parsed):
            try:
                self.client.head_bucket(Bucket=parsed.bucket)
            except ClientError as error:  # HEAD has no body: a bare 404 means the bucket is missing
                if str(error.response.get("Error", {}).get("Code")) in _NOT_FOUND_CODES:
                    raise self.no_bucket_error(parsed.bucket, "access", str(parsed)) from None
                raise

    def head(self, url: str | S3Url) -> dict | None:
        """{"etag", "size"} of an object, or None when it does not exist (a missing bucket is an error)."""
        parsed = parse_s3_url(str(url))
        try:
            with self.errors("read", parsed):
                response = self.client.head_object(Bucket=parsed.bucket, Key=parsed.key)
        except S3NotFoundError:
            self.check_bucket(parsed)  # a 404 on HEAD does not say whether the bucket or the key is missing
            return None
        return {"etag": str(response.get("ETag", "")).strip('"'), "size": int(response.get("ContentLength", 0))}

    def exists(self, url: str | S3Url) -> bool:
        return self.head(url) is not None

    def list(self, url: str | S3Url, recursive: bool = True) -> list[dict]:
        """Objects under the prefix `url` (a folder: a trailing '/' is implied) as {"url", "key", "size", "etag"}."""
        parsed = parse_s3_url(str(url))
        prefix = parsed.key.rstrip("/") + "/" if parsed.key else ""
        kwargs: dict[str, Any] = {"Bucket": parsed.bucket, "Prefix": prefix}
        if not recursive:
            kwargs["Delimiter"] = "/"
        found = []
        with self.errors("list", parsed):
            for page in self.client.get_paginator("list_objects_v2").paginate(**kwargs):
                for item in page.get("Contents", []):
                    key = item["Key"]
                    found.append({"url": str(S3Url(parsed.bucket, key)), "key": key, "size": int(item["Size"]),
                                  "etag": str(item.get("ETag", "")).strip('"')})
        return found

    def upload_file(self, local_path: str, url: str | S3Url) -> dict:
        """Upload a file as one object (multipart above MULTIPART_THRESHOLD); returns its {"etag", "size"}.

        The object becomes visible only when the upload completes (a PUT or CompleteMultipartUpload is atomic), so
        readers never see a partial object; a failed multipart upload is aborted by the transfer manager.
        """
        from boto3.s3.transfer import TransferConfig

        parsed = parse_s3_url(str(url))
        size = os.path.getsize(local_path)
        with self.errors("upload to", parsed):
            self.client.upload_file(local_path, parsed.bucket, parsed.key,
                                    Config=TransferConfig(multipart_threshold=MULTIPART_THRESHOLD))
        info = self.head(parsed)
        if info is None or info["size"] != size:
            raise S3Error(f"upload of {local_path} to {parsed} did not complete: the object has "
                          f"{None if info is None else info['size']} bytes, the file {size}")
        return info

    def upload_bytes(self, data: bytes, url: str | S3Url) -> None:
        parsed = parse_s3_url(str(url))
        with self.errors("upload to", parsed):
            self.client.put_object(Bucket=parsed.bucket, Key=parsed.key, Body=data)

    def delete(self, url: str | S3Url) -> None:
        parsed = parse_s3_url(str(url))
        with self.errors("delete", parsed):
            self.client.delete_object(Bucket=parsed.bucket, Key=parsed.key)

    def download_file(self, url: str | S3Url, local_path: str, expected: dict | None = None) -> dict:
        """Download to `local_path` atomically (temporary file + rename) and verify the size (and the MD5 when the
        ETag is one, i.e. single-part uploads). Returns the sidecar record {"url", "etag", "size", "sha256"}."""
        parsed = parse_s3_url(str(url))
        info = expected or self.head(parsed)
        if info is None:
            raise S3NotFoundError(f"cannot download {parsed}: no such object"
                                  + (f" at endpoint {self.endpoint_url}" if self.endpoint_url else ""))
        directory = os.path.dirname(os.path.abspath(local_path))
        os.makedirs(directory, exist_ok=True)
        tmp_path = os.path.join(directory, f".{os.path.basename(local_path)}.tmp{os.getpid()}.{uuid.uuid4().hex[:8]}")
        from boto3.s3.transfer import TransferConfig

        try:
            with self.errors("download", parsed):
                self.client.download_file(parsed.bucket, parsed.key, tmp_path,
                                          Config=TransferConfig(multipart_threshold=MULTIPART_THRESHOLD))
            sha256, md5, size = file_digests(tmp_path)
            if size != info["size"]:
                raise S3Error(f"download of {parsed} is incomplete: {size} of {info['size']} bytes (object changed "
                              "during the download?); retry")
            if _is_md5_etag(info["etag"]) and md5 != info["etag"]:
                raise S3Error(f"download of {parsed} is corrupt: MD5 {md5} does not match the ETag {info['etag']}")
            os.replace(tmp_path, local_path)
        finally:
            if os.path.exists(tmp_path):
                os.remove(tmp_path)
        return {"url": str(parsed), "etag": info["etag"], "size": size, "sha256": sha256}

    def cached_download(self, url: str | S3Url, cache_dir: str | None = None) -> str:
        """A local path holding the object's current bytes, downloading only when the cached copy is stale.

        Re-use needs the remote ETag and size to equal the recorded ones and the local file to hash to the recorded
        sha256 (catches a file damaged or edited on disk). If S3 cannot be reached, a verified cached copy is used
        with a warning.
        """
        parsed = parse_s3_url(str(url))
        local_path = cache_path(parsed, cache_dir)
        try:
            info = self.head(parsed)
        except S3Error as error:
            if isinstance(error, (S3AccessDeniedError, S3CredentialsError)) or not _cache_valid(local_path, None):
                raise
            logger.warning(f"{error}; using the cached copy {local_path} verified by its sha256")
            return local_path
        if info is None:
            raise S3NotFoundError(f"cannot download {parsed}: no such object"
                                  + (f" at endpoint {self.endpoint_url}" if self.endpoint_url else ""))
        if _cache_valid(local_path, info):
            logger.debug(f"using cached {parsed} at {local_path}")
            return local_path
        logger.info(f"downloading {parsed} ({info['size']} bytes) to {local_path}")
        record = self.download_file(parsed, local_path, expected=info)
        write_sidecar(local_path, record)
        return local_path


# --- cache bookkeeping -------------------------------------------------------------------------------------------------
def file_digests(path: str, chunk_size: int = 8 * 1024 * 1024) -> tuple[str, str, int]:
    """(sha256 hex, md5 hex, size) of a file in one pass."""
    sha256, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    with open(path, "rb") as file:
        while chunk := file.read(chunk_size):
            sha256.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return sha256.hexdigest(), md5.hexdigest(), size


def sidecar_path(local_path: str) -> str:
    return local_path + SIDECAR_SUFFIX


def write_sidecar(local_path: str, record: dict) -> None:
    """Record what `local_path` holds (written after the data file, atomically: a stale record only costs a download)."""
    path = sidecar_path(local_path)
    tmp_path = f"{path}.tmp{os.getpid()}.{uuid.uuid4().hex[:8]}"
    with open(tmp_path, "w") as file:
        json.dump(record, file)
    os.replace(tmp_path, path)


def read_sidecar(local_path: str) -> dict | None:
    try:
        with open(sidecar_path(local_path)) as file:
            record = json.load(file)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def remove_cached(local_path: str) -> None:
    """Drop a cached object and its record (e.g. a checkpoint found corrupt), so it is downloaded afresh next time."""
    for path in (local_path, sidecar_path(local_path)):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def _cache_valid(local_path: str, remote: dict | None) -> bool:
    """Cached copy usable: the record matches `remote` (skipped when None) and the bytes match the record."""
    record = read_sidecar(local_path)
    if record is None or not os.path.isfile(local_path):
        return False
    if remote is not None and (record.get("etag") != remote["etag"] or record.get("size") != remote["size"]):
        return False
    if os.path.getsize(local_path) != record.get("size"):
        return False
    return file_digests(local_path)[0] == record.get("sha256")


def _is_md5_etag(etag: str) -> bool:
    return len(etag) == 32 and all(c in "0123456789abcdef" for c in etag.lower())


def _one_line(error: Any) -> str:
    return " ".join(str(error).split())


# --- convenience -------------------------------------------------------------------------------------------------------
def cached_download(url: str, credential_file: str | None = DEFAULT_S3_CREDENTIAL, cache_dir: str | None = None) -> str:
    """Local path of `s3://...` through the verified cache (a fresh client; see S3Client.cached_download)."""
    return S3Client(credential_file).cached_download(url, cache_dir)


def cached_download_rank0_first(url: str, credential_file: str | None = DEFAULT_S3_CREDENTIAL) -> str:
    """cached_download on rank 0, then on the other ranks (which find it cached on a shared file system).

    Every rank of the process group must call this. Rank 0's failure is raised after the barrier, so the other
    ranks never wait forever; they then try (and usually fail with the same clear error) themselves.
    """
    from fastgen.utils import distributed as dist_utils

    if not dist_utils.is_initialized() or dist_utils.world_size() == 1:
        return cached_download(url, credential_file)
    path, failure = None, None
    if dist_utils.is_rank0():
        try:
            path = cached_download(url, credential_file)
        except Exception as error:  # re-raised below, after releasing the other ranks
            failure = error
    dist_utils.barrier()
    if failure is not None:
        raise failure
    return path or cached_download(url, credential_file)
