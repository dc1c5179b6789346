"""The writer: group commit of sealed records, one INSERT a group, on a thread of its own.

It owns what lies between the sealer and the store: the *pending* group (sealed, not yet
taken), the *tip* (the state the pending group leads to, on which the sealer seals next: a
speculative state), whether a write is on, and the *written* (committed) state. The sealer
(sealer/pipeline.py) waits here for room (`room`), hands each sealed group over
(`hand_over`, answered with a `HandOver` value) and may `drain` it at a partition boundary.
The writer waits for a pending group (`_take`); when more records are already on their way
(`arriving`, a batch being sealed, batches queued), it waits a moment for them, to share the
INSERT's fixed cost (some 10 ms on the embedded engine).

If the INSERT fails, it is retried with the same deduplication token (so a retry of a write
that did land is dropped by ClickHouse, not duplicated). If it still fails, the store's tail
decides: if the rows are there, the group is committed after all; if not, the state does not
move and the callers get a retryable error. If even the tail cannot be read, the writer keeps
both possibilities and settles them before it writes anything else. A group sealed on top of
one that failed is refused too (retryable), and the sealer seals again from what was really
committed.

If the store refuses a group's rows as bad data (its error code says so: StoreDataError), the
writer seals and writes each batch of the group, and of what was sealed on top of it, alone,
on top of what is committed: the culprit alone is refused (not retryable), the others commit,
and the sealer, which waits meanwhile, seals on from there (`HandOver.RESEAL`).

Each committed state goes to the publisher (sealer/publisher.py); each committed group to the
journaler (sealer/journaling.py), which releases its callers after the fsync.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from backend.store import Store
from otel_audit.columns import INSERT_COLUMNS
from otel_audit.errors import (
    AuditError,
    RefusedByStoreError,
    SealerStoppedError,
    StoreDataError,
    StoreError,
    StoreUnavailableError,
)

from .groups import Batch, Group, seal_group
from .journaling import Finish, Journaling
from .metrics import SealerMetrics
from .publisher import PublishedLog, Publisher
from .state import LogState

log = logging.getLogger(__name__)

EARLIER_FAILED = "an earlier write to the store failed, and these records were sealed after it; retry"


class HandOver(enum.Enum):
    """What became of a sealed group handed to the writer."""

    ACCEPTED = "accepted"  # pending: the writer writes it
    RESEAL = "reseal"  # the writer re-ran a refused group meanwhile: seal again, on its tip
    EARLIER_FAILED = "earlier failed"  # what it was sealed on was not written: refuse it


@dataclass(frozen=True)
class Tip:
    """Where the sealer seals on: the tip, and how many re-runs the writer had done then."""

    state: LogState
    reruns: int


@dataclass(frozen=True)
class _Uncertain:
    """A write whose outcome is unknown: the state it would have produced."""

    state: LogState


class GroupCommit:
    def __init__(
        self,
        store: Store,
        published: PublishedLog,
        publisher: Publisher,
        journaling: Journaling,
        finish: Finish,
        *,
        queued: Callable[[], bool],
        max_batch_records: int,
        gather_seconds: float,
        insert_attempts: int,
        metrics: SealerMetrics | None,
    ) -> None:
        """`finish` releases batches' callers; `queued` says whether batches wait for the
        sealer. It writes on from the published state."""
        state = published.current()
        self._store = store
        self._published = published
        self._publisher = publisher
        self._journaling = journaling
        self._finish = finish
        self._queued = queued
        self._max_batch = max_batch_records
        self._gather = gather_seconds
        self._metrics = metrics
        self._written = state  # committed: moved by the writer only
        self._uncertain: _Uncertain | None = None
        self._retrying = Retrying(
            stop=stop_after_attempt(insert_attempts),
            wait=wait_exponential(multiplier=0.05, max=1.0),
            retry=retry_if_exception_type(StoreUnavailableError),
            reraise=True,
        )
        # Between the sealer and the writer, under one lock: the sealed group the writer has
        # not taken yet, the state it leads to (where the sealer goes on), whether a write is
        # on, how many records are on their way to the pending group (requests being
        # prepared, a batch being sealed), which the writer may wait for (_take).
        self._lock = threading.Condition()
        self._pending: Group | None = None
        self._tip = state
        self._writing = False
        self._arriving = 0
        self._sealing = False
        self._draining = False
        self._done = False  # sealing is done: write what is pending, then return
        self._rerunning = False  # the writer writes a refused group batch by batch (_write_alone)
        self._reruns = 0  # how many times it did: a sealer that saw another number seals again
        self._thread = threading.Thread(target=self._run, name="sealer-write", daemon=True)

    def busy(self) -> bool:
        """Whether a write is on or a group is pending (the publisher gathers meanwhile)."""
        return self._writing or self._pending is not None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Write what is pending (sealing is done), then stop the thread."""
        with self._lock:
            self._done = True
            self._lock.notify_all()
        if self._thread.is_alive():
            self._thread.join()

    # -- called by the sealer and the receivers ----------------------------------------------

    @contextmanager
    def arriving(self) -> Iterator[None]:
        """Records are on their way: the writer may wait a moment for them."""
        with self._lock:
            self._arriving += 1
        try:
            yield
        finally:
            with self._lock:
                self._arriving -= 1
                self._lock.notify_all()

    @contextmanager
    def sealing(self) -> Iterator[None]:
        """A group is being sealed: the writer may wait a moment for it."""
        self._set_sealing(True)
        try:
            yield
        finally:
            self._set_sealing(False)

    def _set_sealing(self, sealing: bool) -> None:
        with self._lock:
            self._sealing = sealing
            self._lock.notify_all()

    def room(self) -> Tip:
        """Wait until the writer can take more (it takes at most max_batch records at once,
        and not while it re-runs a refused group); where to seal on."""
        with self._lock:
            while self._rerunning or (self._pending is not None and self._pending.records >= self._max_batch):
                self._lock.wait()
            return Tip(self._tip, self._reruns)

    def hand_over(self, group: Group, tip: Tip) -> HandOver:
        """Make `group`, sealed on `tip`, pending (or add it to the pending group)."""
        with self._lock:
            if self._reruns != tip.reruns or self._rerunning:
                return HandOver.RESEAL
            if self._tip is not tip.state:  # the writer failed what this was sealed on
                return HandOver.EARLIER_FAILED
            self._tip = group.after
            if self._pending is None:
                self._pending = group
            else:
                self._pending.extend(group)
            self._lock.notify_all()
            return HandOver.ACCEPTED

    def drain(self) -> None:
        """Wait until every sealed record is written (or refused)."""
        with self._lock:
            self._draining = True  # the writer must not wait for what cannot come meanwhile
            self._lock.notify_all()
            try:
                while self._pending is not None or self._writing:
                    self._lock.wait()
            finally:
                self._draining = False

    # -- the writer thread -----------------------------------------------------------------

    def _idle(self, error: AuditError | None) -> Group | None:
        """The write is over; if it failed, what was sealed on top of it is void (returned)."""
        stale: Group | None = None
        with self._lock:
            if error is not None:
                stale, self._pending = self._pending, None
                self._tip = self._written
            self._writing = False
            self._lock.notify_all()
        self._publisher.nudge()
        return stale

    def _run(self) -> None:
        while True:
            group = self._take()
            if group is None:
                return
            error: AuditError | None = None
            try:
                self._write(group)
            except StoreDataError:
                self._write_alone(group)  # releases every caller of the group and of what followed
                continue
            except AuditError as exc:
                error = exc
            except Exception as exc:  # a bug must not leave callers waiting forever
                log.exception("writing sealed records failed")
                error = StoreUnavailableError(f"internal error while writing: {exc}")
            stale = self._idle(error)
            if error is None and group.journal_later:
                self._journaling.hand_over(group)  # the journaler releases them
            else:
                self._finish(group.batches, error)  # the rows are in the store: release the callers
            if stale is not None:
                self._finish(stale.batches, StoreUnavailableError(EARLIER_FAILED))

    def _take(self) -> Group | None:
        """The next group to write (None once sealing is done and all is written).

        Every INSERT costs the engine a fixed amount of work besides its rows (some 10 ms on
        the embedded engine), so when more records are already on their way, the writer
        waits for them a moment (`gather_seconds` at most) to write them in the same INSERT.
        A caller alone is never kept waiting: then nothing else is on its way.
        """
        with self._lock:
            while self._pending is None and not self._done:
                self._lock.wait()
            deadline = time.monotonic() + self._gather
            while (
                self._pending is not None
                and self._pending.records < self._max_batch
                and (self._arriving or self._sealing or self._queued())
                and not (self._draining or self._done)
                and (remaining := deadline - time.monotonic()) > 0
            ):
                self._lock.wait(remaining)
            group, self._pending = self._pending, None
            if group is not None:
                group.journal_later = self._journaling.on
                self._writing = True
                self._lock.notify_all()
            return group

    def _write_alone(self, failed: Group) -> None:
        """The store refused a group's rows as bad data: seal and write each of its batches,
        and of those sealed on top of it, alone on top of what is committed, so that only the
        culprit is refused. The sealer waits meanwhile (`_rerunning`), then seals on top.

        Every batch keeps the group's seal time (the latest of them): the sealer checked it
        against the partition boundary when it sealed them first."""
        with self._lock:
            self._rerunning = True
            self._reruns += 1
            stale, self._pending = self._pending, None
        later = stale.batches if stale is not None else []
        sealed_at = (stale or failed).after.sealed_at_ns
        log.warning(
            "the store refused the rows of Seq %d..%d as bad data; writing its %d batches one by one",
            failed.before.size,
            failed.after.size - 1,
            len(failed.batches) + len(later),
        )
        remaining: list[Batch] = failed.batches + later  # each is released as soon as it is decided
        try:
            while remaining:
                group, refused = seal_group(remaining[:1], self._written, sealed_at)
                for batch, why in refused:
                    self._finish([batch], RefusedByStoreError(why))
                try:
                    if group.batches:
                        self._write(group)
                        self._finish(group.batches, None)
                except StoreDataError as exc:
                    self._finish(group.batches, RefusedByStoreError(exc))
                except AuditError as exc:  # the store is down now: the rest may be retried
                    self._finish(remaining, exc)
                    remaining = []
                del remaining[:1]
        except Exception as exc:  # a bug must not leave callers waiting forever
            log.exception("writing refused batches one by one failed")
            error = StoreUnavailableError(f"internal error while writing: {exc}")
            self._finish([b for b in remaining if not b.done.is_set()], error)
        finally:
            with self._lock:
                self._tip = self._written
                self._rerunning = False
                self._writing = False
                self._lock.notify_all()
            self._publisher.nudge()

    def _write(self, group: Group) -> None:
        """Write a group's rows, hand its state on to be published and (unless the journaler
        does) append them to the journal; AuditError if the rows are not in the store or not
        in the journal."""
        if (halted := self._published.halted) is not None:
            raise SealerStoppedError(halted)
        self._settle_uncertain()
        if group.before is not self._written:
            raise StoreUnavailableError(EARLIER_FAILED)
        self._journaling.catch_up_if_broken(group.before.size)  # the journal catches up first
        try:
            for attempt in self._retrying:
                with attempt:
                    self._store.insert_blocks(INSERT_COLUMNS, group.blocks, group.token)
        except StoreUnavailableError as exc:
            log.warning("insert of Seq %d..%d failed: %s", group.before.size, group.after.size - 1, exc)
            if self._metrics is not None:
                self._metrics.store_errors.inc()
            self._uncertain = _Uncertain(group.after)
            self._settle_uncertain()
            if self._written is not group.after:
                raise
            if not group.journal_later:
                self._journaling.append_now(group)
            return
        self._committed(group.after)
        if self._metrics is not None:
            self._metrics.bytes_sealed.inc(group.entry_bytes)
        if not group.journal_later:
            self._journaling.append_now(group)

    def _committed(self, after: LogState) -> None:
        """The rows up to `after` are in the store: write on from there, and publish it."""
        with self._lock:
            self._written = after
        self._publisher.committed(after)

    def _settle_uncertain(self) -> None:
        """Decide from the store's tail whether an unclear write landed."""
        uncertain = self._uncertain
        if uncertain is None:
            return
        before, after = self._written, uncertain.state
        tail = self._store.tail(before.origin)  # StoreUnavailableError: still unknown
        self._uncertain = None
        landed = tail is not None and (tail.next_seq, tail.chain_head) == (after.size, after.chain_head)
        untouched = (tail is None and before.size == 0) or (
            tail is not None and (tail.next_seq, tail.chain_head) == (before.size, before.chain_head)
        )
        if landed:
            log.warning("the unclear insert up to Seq %d did land; continuing", after.size - 1)
            self._committed(after)
        elif not untouched:
            reason = (
                f"the store's log of {before.origin!r} ends at Seq "
                f"{None if tail is None else tail.next_seq - 1}, which this sealer did not write; "
                "it stopped sealing. Run `otel-audit verify` and restart the sealer."
            )
            self._published.halt(reason)
            raise StoreError(reason)
