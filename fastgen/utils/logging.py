"""loguru set-up: one stderr sink, rank 0 only (all ranks with a RANK prefix at DEBUG), secrets scrubbed.

Messages pass through `redact_text` so a secret that slips into a log line (an exception message, a config dump)
is replaced before it is written.
"""

from __future__ import annotations

import os
import sys

from loguru import logger

from fastgen.utils.env import redact_text

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def current_rank() -> int:
    """Global rank from torchrun's environment (0 when not launched distributed)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


class CurrentStderr:
    """The default sink: writes to whatever `sys.stderr` is when a message is written, not the stream of the moment
    `setup_logging` ran, so a later redirection (contextlib.redirect_stderr, a test's capture) is followed and a
    closed former stream is never written to."""

    def write(self, message: str) -> None:
        sys.stderr.write(message)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:  # loguru colourises a terminal
        return bool(getattr(sys.stderr, "isatty", lambda: False)())


def setup_logging(level: str = "INFO", rank: int | None = None, sink=None) -> None:
    """Replace loguru's handlers by one sink at `level` (default: the current stderr); non-zero ranks stay silent
    unless level is DEBUG."""
    level = level.upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"log level {level!r} is not supported; expected one of {', '.join(LOG_LEVELS)}")
    rank = current_rank() if rank is None else rank
    logger.remove()
    if rank != 0 and level != "DEBUG":
        return
    prefix = f"RANK {rank}: " if level == "DEBUG" else ""

    def scrub(record) -> None:
        record["message"] = redact_text(record["message"])

    logger.configure(patcher=scrub)
    logger.add(
        sink or CurrentStderr(),
        level=level,
        format=prefix + "<green>{time:HH:mm:ss}</green> | <level>{level: <8}</level> | {message}",
        colorize=None,
        backtrace=level == "DEBUG",
        diagnose=False,  # variable values in tracebacks could include secrets
    )
