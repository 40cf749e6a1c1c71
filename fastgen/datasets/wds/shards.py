"""Shard sources: `datatags` -> sorted shard URLs, and byte streams over one shard (local file or S3 object).

S3 shards are streamed with ranged GETs (never downloaded whole): `S3ShardStream.read` pulls from the open response
body, and when the connection drops mid-shard it reopens the object at the byte offset already delivered, with
exponential backoff, so the reader above sees one uninterrupted byte stream and the samples are exactly those of an
undisturbed read. Credentials come from ./credentials/s3.json through `fastgen.utils.s3.S3Client`.
"""

from __future__ import annotations

import glob
import io
import os
import time

from loguru import logger

from fastgen.utils.s3 import S3Client, S3Error, is_s3_url, parse_s3_url

TAG_PREFIX = "WDS:"
SHARD_SUFFIXES = (".tar",)


def parse_datatags(datatags) -> list[str]:
    """["WDS:<folder, .tar file or s3://bucket/prefix>", ...] -> the locations; anything else is a clear error."""
    if isinstance(datatags, str):
        datatags = [datatags]
    if not datatags:
        raise ValueError('datatags is empty; give at least one "WDS:<folder or s3://bucket/prefix>"')
    locations = []
    for tag in datatags:
        if not isinstance(tag, str) or not tag.startswith(TAG_PREFIX) or not tag[len(TAG_PREFIX):]:
            raise ValueError(f'datatag {tag!r} must look like "WDS:<folder or s3://bucket/prefix>" (WebDataset tar '
                             "shards); other sources use their own loader configs")
        locations.append(tag[len(TAG_PREFIX):])
    return locations


def list_shards(datatags, credential_file: str | None = None) -> list[str]:
    """All shard URLs named by `datatags`, each source sorted (so every rank lists the same order)."""
    shards: list[str] = []
    for location in parse_datatags(datatags):
        if is_s3_url(location):
            client = S3Client(credential_file=credential_file)
            if location.endswith(SHARD_SUFFIXES):  # one shard object
                found = [location] if client.exists(location) else []
            else:
                found = sorted(item["url"] for item in client.list(location) if item["key"].endswith(SHARD_SUFFIXES))
        elif location.endswith(SHARD_SUFFIXES) and os.path.isfile(location):
            found = [location]
        elif os.path.isdir(location):
            found = sorted(glob.glob(os.path.join(glob.escape(location), "**", "*.tar"), recursive=True))
        else:
            raise FileNotFoundError(f"WDS source {location!r} is neither a folder nor a .tar file; check datatags")
        if not found:
            raise ValueError(f"WDS source {location!r} holds no .tar shards; write shards there or fix datatags")
        shards.extend(found)
    return shards


def _retryable_errors() -> tuple[type[BaseException], ...]:
    from botocore.exceptions import (
        ConnectionClosedError,
        EndpointConnectionError,
        IncompleteReadError,
        ReadTimeoutError,
        ResponseStreamingError,
    )
    from urllib3.exceptions import HTTPError as Urllib3Error

    return (ConnectionError, TimeoutError, ConnectionClosedError, EndpointConnectionError, IncompleteReadError,
            ReadTimeoutError, ResponseStreamingError, Urllib3Error, io.UnsupportedOperation)


class S3ShardStream(io.RawIOBase):
    """A read-only byte stream over one S3 object that survives dropped connections (reopens at the offset).

    `max_retries` consecutive failures without progress raise S3Error naming the object; any successful read
    resets the count. The backoff doubles from `backoff_s` (capped at 8 s).
    """

    def __init__(self, url: str, client: S3Client | None = None, max_retries: int = 5, backoff_s: float = 0.2,
                 chunk_size: int = 1 << 20):
        super().__init__()
        self.url = url
        self.parsed = parse_s3_url(url)
        self.client = client or S3Client()
        self.max_retries, self.backoff_s, self.chunk_size = int(max_retries), float(backoff_s), int(chunk_size)
        self.offset = 0
        self.size: int | None = None
        self.retries = 0  # total reconnects (for logs and tests)
        self._body = None
        self._errors = _retryable_errors()

    def readable(self) -> bool:
        return True

    def _open(self) -> None:
        kwargs = {"Bucket": self.parsed.bucket, "Key": self.parsed.key}
        if self.offset:
            kwargs["Range"] = f"bytes={self.offset}-"
        try:  # connection errors propagate raw (readinto retries them); S3's refusals become one-line S3Errors
            response = self.client.client.get_object(**kwargs)
        except self._errors:
            raise
        except Exception as error:
            translated = self.client.translate_error(error, "read shard", self.url)
            if translated is None:
                raise
            raise translated from None
        if "ContentLength" not in response:  # headers cut short by a dropped connection
            raise ConnectionError("S3 response without Content-Length")
        if self.size is None:
            self.size = self.offset + int(response["ContentLength"])
        self._body = response["Body"]

    def _close_body(self) -> None:
        if self._body is not None:
            try:
                self._body.close()
            except Exception:  # a dropped connection may fail to close; it is discarded either way
                pass
            self._body = None

    def readinto(self, buffer) -> int:
        failures = 0
        while True:
            if self.size is not None and self.offset >= self.size:
                return 0
            try:
                if self._body is None:
                    self._open()
                data = self._body.read(min(len(buffer), self.chunk_size))
                if not data and self.offset < self.size:
                    raise ConnectionError(f"stream ended at byte {self.offset} of {self.size}")
                buffer[:len(data)] = data
                self.offset += len(data)
                return len(data)
            except self._errors as error:
                self._close_body()
                failures += 1
                self.retries += 1
                if failures > self.max_retries:
                    raise S3Error(f"cannot read shard {self.url} at byte {self.offset}: connection kept failing "
                                  f"after {self.max_retries} retries ({type(error).__name__})") from None
                delay = min(8.0, self.backoff_s * 2 ** (failures - 1))
                logger.warning(f"S3 read of {self.url} failed at byte {self.offset} ({type(error).__name__}); "
                               f"retry {failures}/{self.max_retries} in {delay:.1f}s")
                time.sleep(delay)

    def close(self) -> None:
        self._close_body()
        super().close()


def open_shard(url: str, client: S3Client | None = None, **s3_options) -> io.BufferedReader:
    """A buffered binary stream over a local or S3 shard."""
    if is_s3_url(url):
        return io.BufferedReader(S3ShardStream(url, client=client, **s3_options), buffer_size=1 << 20)
    return open(url, "rb", buffering=1 << 20)
