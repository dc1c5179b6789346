"""The publisher: makes each committed state current once its rows' column hashes are read back.

It owns the committed states not yet published, the read-back (on a connection of its own,
beside the writer's next INSERT), and whether the store gives back what was acknowledged
(`unconfirmed`). It waits for commits (`committed`, from the writer); while the writer is busy
(`writer_busy`) it lets them pile up a little (`publish_records`, `publish_seconds`) and reads
them back in one query: each query costs the engine a fixed amount of work, and it
decompresses whole granules (8,192 rows), so reading back 2,048 rows costs ~5 us of CPU a row
and 16,384 rows ~1.6 us. The writer calls `nudge` when it goes idle. Callers never wait for
this: they are released at commit.

The column hashes go to `on_commit` (the checkpointer) before the state is published, so the
next checkpoint signs the columns exactly as they were written a moment before. If the store
no longer has every row just committed, acknowledged rows are gone: the log halts
(PublishedLog.halt), naming the Seq ranges, and nothing more is published (so nothing more is
signed); if it cannot read them back, records are refused (`unconfirmed`) until it can.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from backend.store import Store
from otel_audit.errors import StoreDamagedError, StoreUnavailableError

from .losses import lost_rows
from .metrics import SealerMetrics
from .state import LogState

log = logging.getLogger(__name__)


class PublishedLog:
    """The log as the pipeline last published it, and why it halted, if it did.

    Shared from construction on by the pipeline (which publishes each committed state once
    its column hashes are reported, and halts on lost rows) and the checkpointer (which signs
    the published state, and halts the log when the store lacks rows it would sign: its
    `on_lost`), so neither is wired into the other after it is built. Safe to read from any
    thread.
    """

    def __init__(self, state: LogState) -> None:
        self._state = state
        self._halted: str | None = None
        self._lock = threading.Lock()

    def current(self) -> LogState:
        """The last published state: committed, its column hashes handed to on_commit."""
        return self._state

    def publish(self, state: LogState) -> None:
        self._state = state

    @property
    def halted(self) -> str | None:
        """Why the log stopped taking records (until a restart), or None."""
        return self._halted

    def halt(self, reason: str) -> None:
        """Stop acknowledging records for good (until a restart), and say why, once: every
        later call is refused with `reason`, and nothing more is published, so no checkpoint
        signs past what was published before."""
        with self._lock:
            if self._halted is not None:
                return
            self._halted = reason
        log.error("%s", reason)


class Publisher:
    def __init__(
        self,
        reader: Store,
        published: PublishedLog,
        *,
        writer_busy: Callable[[], bool],
        on_commit: Callable[[int, int, bytes | None], None],
        publish_records: int,
        publish_seconds: float,
        read_back_attempts: int,
        metrics: SealerMetrics | None,
    ) -> None:
        self._reader = reader
        self._published = published
        self._writer_busy = writer_busy
        self._on_commit = on_commit
        self._publish_records = publish_records
        self._publish_seconds = publish_seconds
        self._read_back_attempts = read_back_attempts
        self._metrics = metrics
        self._lock = threading.Condition()
        self._to_publish: list[LogState] = []  # committed, in order; read back as one range
        self._publishing = False
        self._hurry = 0  # someone waits for everything to be published: gather nothing
        self._done = False  # the writer stopped: publish what is left, then return
        self._unconfirmed: str | None = None  # committed rows the store does not give back yet
        self._thread = threading.Thread(target=self._run, name="sealer-publish", daemon=True)

    @property
    def unconfirmed(self) -> str | None:
        """Why records are refused while the store does not give back committed rows, or None."""
        return self._unconfirmed

    def start(self) -> None:
        self._thread.start()

    def committed(self, state: LogState) -> None:
        """The rows up to `state` are in the store: publish it."""
        with self._lock:
            self._to_publish.append(state)
            self._lock.notify_all()

    def nudge(self) -> None:
        """What `writer_busy` answers may have changed."""
        with self._lock:
            self._lock.notify_all()

    def wait_published(self, timeout: float | None = None, *, hurry: bool = False) -> bool:
        """Wait until every commit so far is published (or given up); False if `timeout`
        seconds passed first. `hurry`: publish at once, without gathering more commits."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._hurry += hurry
            self._lock.notify_all()
            try:
                while self._to_publish or self._publishing:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._lock.wait(remaining)
                return True
            finally:
                self._hurry -= hurry

    def stop(self) -> None:
        """Publish what is committed (the writer has stopped), then stop the thread."""
        with self._lock:
            self._done = True
            self._lock.notify_all()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._to_publish and not self._done:
                    self._lock.wait()
                if not self._to_publish:
                    return
                deadline = time.monotonic() + self._publish_seconds
                while (  # a busy writer: gather commits, to read them back in one query
                    self._writer_busy()
                    and not (self._hurry or self._done)
                    and self._to_publish[-1].size - self._published.current().size < self._publish_records
                    and (remaining := deadline - time.monotonic()) > 0
                ):
                    self._lock.wait(remaining)
                after = self._to_publish[-1]  # every commit so far, read back as one range
                self._to_publish.clear()
                self._publishing = True
            try:
                self._publish(after)
            except Exception:  # a bug: the checkpoints would stop here; say so, loudly
                first, end = self._published.current().size, after.size
                log.exception("publishing Seq %d..%d failed", first, end - 1)
                self._published.halt(
                    f"internal error after writing Seq {first}..{end - 1}; the sealer stopped "
                    "sealing. Restart it: it continues from the store."
                )
            finally:
                with self._lock:
                    self._publishing = False
                    self._lock.notify_all()

    def _publish(self, after: LogState) -> None:
        """Make a committed state current, after reporting its rows' column hashes; or halt,
        if the store no longer has every row just committed (acknowledged)."""
        if self._published.halted is not None:
            return  # nothing past a halt is published, so nothing past it is signed
        first, end = self._published.current().size, after.size
        hashes = self._read_back(after.origin, first, end)
        if hashes is None:
            return
        self._on_commit(first, end, hashes)
        if self._metrics is not None:
            self._metrics.records_sealed.inc(end - first)
        self._published.publish(after)

    def _read_back(self, origin: str, first: int, end: int) -> bytes | None:
        """The column hashes of the committed Seq [first, end); None once it halted because
        rows are missing (or the pipeline stopped before they could be read back).

        A short read is tried again a few times (a replica on a cluster may lag a moment
        behind the INSERT); after that it means rows that were acknowledged are gone: halt,
        naming the exact Seq ranges. So does data the engine holds but cannot read (a part a
        full disk left empty: StoreDamagedError). A read error is tried again a few times too; if the
        store still does not answer, records are refused (retryable) and it goes on trying,
        until the store answers (and the rows are all there, or the missing ones are named).
        """
        attempt = 0
        while True:
            short = False
            try:
                read = self._reader.column_hashes(origin, first, end)
            except StoreDamagedError as exc:
                problem, short = str(exc), True
            except StoreUnavailableError as exc:
                problem = str(exc)
            else:
                if len(read) == 32 * (end - first):
                    if self._unconfirmed is not None:
                        log.warning("read back Seq %d..%d after all; taking records again", first, end - 1)
                        self._unconfirmed = None
                    return read
                problem, short = f"{len(read) // 32} of {end - first} rows read back", True
            attempt += 1
            log.warning("reading back Seq %d..%d: %s", first, end - 1, problem)
            if attempt == self._read_back_attempts and self._metrics is not None:
                self._metrics.store_errors.inc()
            if short and attempt >= self._read_back_attempts:
                try:
                    lost = lost_rows(self._reader, origin, first, end)
                except StoreUnavailableError as exc:
                    problem, lost = f"{problem}; then {exc}", None
                if lost is not None:
                    self._published.halt(lost)
                    return None
            if attempt >= self._read_back_attempts and self._unconfirmed is None:
                self._unconfirmed = (
                    f"Seq {first}..{end - 1} of log {origin!r} were acknowledged, but the store does not "
                    f"give them back ({problem}); records are refused (retryable) until it does"
                )
                log.error("%s", self._unconfirmed)
            if self._done and attempt >= self._read_back_attempts:  # stopping: give up
                self._published.halt(f"{self._unconfirmed}; the sealer stopped without confirming them")
                return None
            time.sleep(min(1.0, 0.1 * 2 ** (attempt - 1)))
