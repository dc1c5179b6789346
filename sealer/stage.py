"""One stage of a pipeline: a queue, one worker thread, and the accounting around them.

Modelled on opentelemetry-python's generic batch processor: the engine knows nothing of
what it carries (here: OTLP batches on their way to sealing, sealed groups on their way to
the journal). Items are offered or put; the worker takes every item waiting, up to
`max_batch` of weight, and hands them to `handle` as one list, in the order they came.

Outcomes are values, never exceptions across threads: `offer` answers with an `Offer`, and
`handle` decides each item's outcome itself (the pipeline sets it on the item its caller
waits on). If `handle` raises all the same (a bug), `on_error` gets the items and the
exception (called inside the except clause, so it may log the traceback), so that no caller
is left waiting; the worker goes on with the next items.

Backpressure counts weight *outstanding*: from `offer` until the owner calls `release`
(with `hold=True`: the outcome is decided later, in another stage) or until `handle`
returns (`hold=False`). `offer` refuses what would go past `max_outstanding` (FULL), `put`
waits for room. One item is always let in, however heavy, when nothing is outstanding, so a
large request is never refused for ever.

Lifecycle: `start`; `force_flush(timeout)` waits until nothing is outstanding; `shutdown
(timeout)` refuses new items (CLOSED), lets the worker handle everything already queued,
and joins it.
"""

from __future__ import annotations

import enum
import queue
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Offer(enum.Enum):
    """What became of an item offered to a stage."""

    ACCEPTED = "accepted"
    FULL = "full"  # as much weight outstanding as the stage may hold: try again later
    CLOSED = "closed"  # the stage is shutting down


class _Stop:
    """Queued by shutdown: the worker returns once it has handled what came before."""


_STOP = _Stop()


class Stage(Generic[T]):
    def __init__(
        self,
        name: str,
        handle: Callable[[list[T]], None],
        on_error: Callable[[list[T], Exception], None],
        *,
        weight: Callable[[T], int] = lambda _: 1,
        max_batch: int = 1,
        max_outstanding: int | None = None,
        hold: bool = False,
    ) -> None:
        self._handle = handle
        self._on_error = on_error
        self._weight = weight
        self._max_batch = max_batch
        self._max_outstanding = max_outstanding
        self._hold = hold
        self._queue: queue.SimpleQueue[T | _Stop] = queue.SimpleQueue()
        self._room = threading.Condition()  # guards _outstanding and _closed
        self._outstanding = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def outstanding(self) -> int:
        """The weight offered and not yet released."""
        return self._outstanding

    def full(self) -> bool:
        """Whether an offer now would be refused as FULL."""
        return self._max_outstanding is not None and self._outstanding >= self._max_outstanding

    def waiting(self) -> bool:
        """Whether items wait for the worker (queued, not yet handed to `handle`)."""
        return not self._queue.empty()

    def start(self) -> None:
        self._thread.start()

    def offer(self, item: T) -> Offer:
        """Queue `item` unless the stage is closed or this would exceed max_outstanding."""
        weight = self._weight(item)
        with self._room:
            if self._closed:
                return Offer.CLOSED
            if self._no_room(weight):
                return Offer.FULL
            self._outstanding += weight
        self._queue.put(item)
        return Offer.ACCEPTED

    def put(self, item: T) -> Offer:
        """Queue `item`, waiting for room; CLOSED if the stage is shutting down."""
        weight = self._weight(item)
        with self._room:
            while not self._closed and self._no_room(weight):
                self._room.wait()
            if self._closed:
                return Offer.CLOSED
            self._outstanding += weight
        self._queue.put(item)
        return Offer.ACCEPTED

    def _no_room(self, weight: int) -> bool:
        limit = self._max_outstanding
        return limit is not None and self._outstanding > 0 and self._outstanding + weight > limit

    def release(self, weight: int) -> None:
        """Items of this weight are decided: make room for others."""
        with self._room:
            self._outstanding -= weight
            self._room.notify_all()

    def force_flush(self, timeout: float | None = None) -> bool:
        """Wait until nothing is outstanding; False if `timeout` (seconds) passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._room:
            while self._outstanding > 0:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._room.wait(remaining)
        return True

    def shutdown(self, timeout: float | None = None) -> bool:
        """Refuse new items, handle those queued, stop the worker; False if it is still at
        work after `timeout` seconds."""
        with self._room:
            self._closed = True
            self._room.notify_all()  # a put waiting for room gets CLOSED
        if not self._thread.is_alive():
            return True
        self._queue.put(_STOP)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            taken = [first]
            weight = 0 if isinstance(first, _Stop) else self._weight(first)
            while weight < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                taken.append(item)
                if not isinstance(item, _Stop):
                    weight += self._weight(item)
            items = [item for item in taken if not isinstance(item, _Stop)]
            if items:
                try:
                    self._handle(items)
                except Exception as exc:  # a bug must not leave callers waiting forever
                    self._on_error(items, exc)  # inside the except clause: it may log.exception
                finally:
                    if not self._hold:
                        self.release(weight)
            if len(items) < len(taken) and self._queue.empty():
                return
