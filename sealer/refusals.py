"""Refused calls, said in the log without saying it once per call.

While the sealer refuses records (a nearly full disk, a halted pipeline), every producer's
retries are refused again; a line each would drown the log. One line says how many calls
were refused since the last one, at most every `every` seconds, for all threads together.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable


class RefusalLog:
    def __init__(
        self,
        logger: logging.Logger,
        level: int,
        every: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._level = level
        self._every = every
        self._clock = clock
        self._lock = threading.Lock()
        self._count = 0  # calls refused since the last line about them
        self._said_at = 0.0

    def refused(self, why: str | None) -> None:
        """One more call refused for `why`; said if the last line is `every` seconds old."""
        now = self._clock()
        with self._lock:
            self._count += 1
            if now - self._said_at >= self._every:
                self._logger.log(self._level, "refused %d Export call(s) since the last report: %s",
                                 self._count, why)  # fmt: skip
                self._count, self._said_at = 0, now

    def said(self) -> None:
        """The reason was just logged another way: the next count waits `every` seconds."""
        with self._lock:
            self._said_at = self._clock()

    def take(self) -> int:
        """The calls refused since the last line, counted from zero again."""
        with self._lock:
            count, self._count = self._count, 0
            return count
