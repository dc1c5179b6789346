"""The store's disk: refuse new records while its file system is nearly full.

When the file system under an embedded store fills, the engine may commit parts whose files
are empty (and drop them at the next start), losing rows that were acknowledged. So the
sealer stops taking records well before: below `min_free_bytes` free (`serve
--min-free-disk`, default DEFAULT_MIN_FREE_BYTES) every Export is refused, retryable, until
space is freed again; /readyz, `status` and the metrics say why. The engine's own guard
(backend/sql/007_disk_guard.sql: MergeTree refuses an INSERT below ENGINE_MIN_FREE_BYTES,
error 243 NOT_ENOUGH_SPACE) is lower, so ours speaks first and the engine's still holds if
the space goes faster than we look. Checkpoints are not refused: they are small, and they
keep signing what was acknowledged.

The free space is read with statvfs (a few microseconds), at most every `recheck_seconds`,
on each Export call and each /readyz probe; so it recovers by itself once space is freed.
While it refuses, the engine's background merges are paused too (`on_change`): a merge that
meets a full disk may leave a part whose files are empty, losing every row it merged.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from otel_audit.errors import ConfigError

from .refusals import RefusalLog

log = logging.getLogger(__name__)

MIB = 1 << 20
DEFAULT_MIN_FREE_BYTES = 256 * MIB
# What backend/sql/007_disk_guard.sql sets as min_free_disk_bytes_to_perform_insert; ours
# must stay above it (parse_size refuses less), so that the sealer refuses first.
ENGINE_MIN_FREE_BYTES = 64 * MIB
_UNITS = {"": 1, "k": 1 << 10, "m": MIB, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", re.I)


def parse_size(text: str, flag: str = "--min-free-disk") -> int:
    """Bytes from '512MiB', '2G', '1.5GiB' or a plain number of bytes (units of 1024)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ConfigError(f"{flag} {text!r}: give a size such as 256MiB, 2GiB or a number of bytes")
    size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if size <= ENGINE_MIN_FREE_BYTES:
        raise ConfigError(
            f"{flag} {text!r}: must be more than the engine's own limit of "
            f"{format_size(ENGINE_MIN_FREE_BYTES)} (backend/sql/007_disk_guard.sql), so that the sealer "
            "refuses records before the engine does"
        )
    return size


def format_size(size: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", MIB), ("KiB", 1 << 10)):
        if size >= factor:
            return f"{size / factor:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} B"


def store_path(dsn: str) -> Path | None:
    """The data directory of an embedded store; None for a server (its disk is its own)."""
    parts = urlsplit(dsn)
    return Path(parts.path) if parts.scheme == "chdb" and parts.path else None


class DiskGuard:
    """Whether the store's file system has room for more records; thread-safe."""

    def __init__(
        self,
        path: Path,
        min_free_bytes: int,
        *,
        recheck_seconds: float = 0.1,
        log_every_seconds: float = 10.0,
        free_bytes: Callable[[Path], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[bool], None] = lambda _: None,
    ) -> None:
        self.path = path
        self._on_change = on_change  # called with True when an episode starts, False when it ends
        self.min_free_bytes = min_free_bytes
        self._recheck = recheck_seconds
        self._measure = free_bytes or _available_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._checked_at: float | None = None
        self._free = -1
        self._why: str | None = None
        self._refusals = RefusalLog(log, logging.WARNING, log_every_seconds, clock)

    @property
    def free_bytes(self) -> int:
        """Free bytes at the last look (-1 before the first, or when it could not be read)."""
        self.refusal()
        return self._free

    def refusal(self) -> str | None:
        """Why records are refused now (the disk is nearly full), or None."""
        now = self._clock()
        with self._lock:
            if self._checked_at is None or now - self._checked_at >= self._recheck:
                self._checked_at = now
                self._look()
            return self._why

    def refused(self) -> None:
        """A call was refused for the reason refusal() gave: said at most every log_every_seconds."""
        self._refusals.refused(self._why)

    def _look(self) -> None:
        why: str | None = None
        try:
            free = self._measure(self.path)
        except OSError as exc:
            self._free = -1
            why = f"cannot read the free space of the store's file system ({self.path}): {exc}"
        else:
            self._free = free
            if free < self.min_free_bytes:
                why = (
                    f"the store's disk is nearly full: {format_size(free)} free on {self.path}, less than "
                    f"the {format_size(self.min_free_bytes)} kept free (--min-free-disk); records are "
                    "refused (retryable) until space is freed"
                )
        if why is not None and self._why is None:  # once per episode
            log.error("%s", why)
            self._refusals.said()
            self._on_change(True)
        elif why is None and self._why is not None:
            log.warning(
                "the store's disk has room again (%s free on %s): taking records again; %d more call(s) "
                "were refused meanwhile",
                format_size(self._free),
                self.path,
                self._refusals.take(),
            )
            self._on_change(False)
        self._why = why


def _available_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the file system holding `path`."""
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize
