"""The sealing pipeline: group commit of Export calls into one INSERT each.

Receivers hand over prepared requests (sealer/prepare.py: the per-record work that does not
need a Seq, done by the sealing workers). Threads then work in a row, so that Python seals
the next group while ClickHouse (which releases the GIL) writes the previous one. This
module coordinates them; the sealing itself is pure (sealer/seal.py), and the queue-and-
worker engine of the sealer and the journaler is generic (sealer/stage.py):

- the *sealer* (a Stage, which also counts the records held against `max_queued_records`
  until their callers are released: backpressure) takes every batch waiting and seals it
  (seal.seal: Seq, seal time, leaf hash, chain hash and the seal columns) on top of the
  state the previous group will leave (its *speculative* state);
- the *writer* writes each sealed group with a single INSERT; the *journaler* appends it to
  the journal (sealer/journal.py: one fsync a group, beside the next INSERT) and only then
  releases its callers. One sealer means one order: Seq is contiguous and the chain has no
  forks, whichever receiver a record came through. When more records are already on their way
  (`arriving`), it waits for them a moment, to share the INSERT's fixed cost;
- the *publisher* reads back the column hashes of the rows just written (otel_audit/columns.py),
  on a connection of its own while the writer goes on with the next INSERT, hands them to
  `on_commit` (the checkpointer) and then publishes the new state, so the next checkpoint
  signs the columns exactly as they were written a moment before. While the writer is busy
  it lets commits pile up a little (`publish_records`, `publish_seconds`) and reads them
  back in one query: each query costs the engine a fixed amount of work, and it decompresses
  whole granules (8,192 rows), so reading back 2,048 rows costs ~5 us of CPU a row and
  16,384 rows ~1.6 us. Callers never wait for this: they are released at commit. If the
  store no longer has every row just committed, acknowledged rows are gone: the pipeline
  halts (PublishedLog.halt), naming the Seq ranges, and publishes nothing more (so nothing more is
  signed); if it cannot read them back, records are refused until it can.

While the store's disk is nearly full (sealer/disk.py), records are refused before any work
is done on them (`arriving`, `submit`) and again before sealing what was queued meanwhile.

If the INSERT fails, it is retried with the same deduplication token (so a retry of a write
that did land is dropped by ClickHouse, not duplicated). If it still fails, the store's tail
decides: if the rows are there, the group is committed after all; if not, the state does not
move and the callers get a retryable error. If even the tail cannot be read, the pipeline
keeps both possibilities and settles them before it writes anything else. A group sealed on
top of one that failed is refused too (retryable), and the sealer starts again from what was
really committed once the writer has drained.

One batch's data never fails another's. Each batch's rows are encoded apart, so one that
does not fit the store's column types is refused alone while its group is sealed (prepare.py
checks every record against the store's limits before this, backend/limits.py; this is the
defence behind it). If the store nevertheless refuses a group's rows as bad data (its error
code says so: StoreDataError), the writer seals and writes each batch of the group, and of
what was sealed on top of it, alone, on top of what is committed: the culprit alone is
refused (not retryable), the others commit, and the sealer seals on from there.

Collaborators come in at construction: the store, the journal, the disk guard, metrics, and
the checkpointer's callbacks (`on_commit`, `on_partition_boundary`); the published state and
the halt live in a PublishedLog the checkpointer shares. Lifecycle: `start`, `force_flush
(timeout)`, `stop` (commits and publishes everything queued; sealer/service.py says when).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from backend.store import Store
from otel_audit.columns import INSERT_COLUMNS
from otel_audit.errors import (
    AuditError,
    BackpressureError,
    DiskFullError,
    RefusedByStoreError,
    SealerStoppedError,
    StoreDamagedError,
    StoreDataError,
    StoreError,
    StoreUnavailableError,
)

from .disk import DiskGuard
from .journal import Journal, catch_up
from .losses import lost_rows
from .metrics import SealerMetrics
from .prepare import Prepared
from .refusals import RefusalLog
from .seal import RefusedBatch, ToSeal, crosses_partition, seal
from .stage import Offer, Stage
from .state import LogState

log = logging.getLogger(__name__)


@dataclass
class Batch:
    """One caller's records and the outcome it waits for."""

    prepared: Prepared
    producer: str = ""  # who sent them, as authenticated (sealed into every entry)
    masking: str = ""  # the identity of the masking rules applied to them
    done: threading.Event = field(default_factory=threading.Event)
    error: AuditError | None = None
    first_seq: int = -1
    queued_at: float = field(default_factory=time.monotonic)
    entries: list[bytes] = field(default_factory=list)  # once sealed: for the journal

    def wait(self) -> None:
        self.done.wait()
        if self.error is not None:
            raise self.error


@dataclass(frozen=True)
class _Uncertain:
    """A write whose outcome is unknown: the state it would have produced."""

    state: LogState


@dataclass
class _Job:
    """Sealed records on their way to the store: the rows of `batches`, taking the log from
    `before` to `after`. The sealer appends to the pending job until the writer takes it."""

    batches: list[Batch]
    before: LogState
    after: LogState
    blocks: list[bytes]  # the rows, as Native blocks
    entry_bytes: int
    journal_later: bool = False  # by the journaler, which then releases the callers

    @property
    def records(self) -> int:
        return self.after.size - self.before.size

    def extend(self, later: _Job) -> None:
        self.batches += later.batches
        self.blocks += later.blocks
        self.entry_bytes += later.entry_bytes
        self.after = later.after

    @property
    def token(self) -> str:
        """The INSERT's deduplication token: the same for every retry of these rows."""
        return f"{self.after.origin}:{self.before.size}-{self.after.size - 1}:{self.after.chain_head.hex()}"


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


def _records(batch: Batch) -> int:
    return batch.prepared.count


_EARLIER_FAILED = "an earlier write to the store failed, and these records were sealed after it; retry"


class Pipeline:
    def __init__(
        self,
        store: Store,
        published: PublishedLog,
        *,
        on_commit: Callable[[int, int, bytes | None], None] = lambda *_: None,
        on_partition_boundary: Callable[[], object] = lambda: None,
        max_batch_records: int = 20_000,
        max_queued_records: int = 200_000,
        insert_attempts: int = 3,
        gather_seconds: float = 0.02,
        publish_records: int = 32_768,
        publish_seconds: float = 0.5,
        clock: Callable[[], int] = time.time_ns,
        metrics: SealerMetrics | None = None,
        journal: Journal | None = None,
        disk: DiskGuard | None = None,
        read_back_attempts: int = 4,
    ) -> None:
        """`on_commit` is called with (first Seq, end Seq, column hashes or None) before a
        commit is published (the checkpointer's record_column_hashes). `on_partition_boundary`
        is called before the first record of a new partition (month of SealedAt) is sealed,
        to sign a checkpoint exactly at the boundary: retention drops whole partitions, and
        the verifier restarts from that checkpoint (backend/log_verifier.py)."""
        state = published.current()
        self._store = store
        self._journal = journal  # the durable copy of what is acknowledged (sealer/journal.py)
        self._disk = disk  # refuses records while the store's disk is nearly full (sealer/disk.py)
        self._read_back_attempts = read_back_attempts
        # Column hashes are read back on a connection of their own, beside the next INSERT.
        self._reader = Store.open(store.dsn, cluster=store.cluster)
        self._published = published  # committed, and its column hashes reported; and the halt
        self._written = state  # committed: moved by the writer only
        self._clock = clock
        self._metrics = metrics
        if metrics is not None:
            metrics.queue_depth.set_function(lambda: self._intake.outstanding)
        self._max_batch = max_batch_records
        self._gather = gather_seconds
        self._publish_records = publish_records
        self._publish_seconds = publish_seconds
        # The sealer: takes every batch waiting (up to max_batch_records) and seals it. A
        # batch's records count against max_queued_records until its callers are released.
        self._intake: Stage[Batch] = Stage(
            "sealer-seal",
            self._seal_group,
            self._sealing_failed,
            weight=_records,
            max_batch=max_batch_records,
            max_outstanding=max_queued_records,
            hold=True,
        )
        # Between the threads, under one lock: the sealed job the writer has not taken yet,
        # the state it leads to (where the sealer goes on), whether a write is on, and the
        # committed states whose column hashes are still to be read (and whether that is on);
        # and how many records are on their way to the pending job (requests being prepared,
        # batches being sealed), which the writer may wait for (_take).
        self._lock = threading.Condition()
        self._pending: _Job | None = None
        self._tip = state
        self._writing = False
        self._arriving = 0
        self._sealing = False
        self._draining = False
        self._sealing_done = False
        self._to_publish: list[LogState] = []
        self._publishing = False
        self._writing_done = False
        self._accepting = False
        self._halt_refusals = RefusalLog(log, logging.ERROR)  # said, but not per call
        self._unconfirmed: str | None = None  # committed rows the store does not give back yet
        self._uncertain: _Uncertain | None = None
        self._rerunning = False  # the writer writes a refused group batch by batch (_write_alone)
        self._reruns = 0  # how many times it did: a sealer that saw another number seals again
        self._writer = threading.Thread(target=self._run_writer, name="sealer-write", daemon=True)
        # The journaler appends each job the writer committed to the journal, then releases its
        # callers, while the writer goes on with the next INSERT: the fsync costs it nothing.
        # At most two committed jobs are not yet journaled: one appended, one waiting.
        self._journaling: Stage[_Job] = Stage(
            "sealer-journal", self._journal_jobs, self._journaling_failed, max_outstanding=2
        )
        self._journal_lock = threading.Lock()  # one thread at a time uses the journal
        self._publisher = threading.Thread(target=self._run_publisher, name="sealer-publish", daemon=True)
        self._on_commit = on_commit
        self._on_partition_boundary = on_partition_boundary
        self._timezone = ZoneInfo(store.timezone())
        self._retrying = Retrying(
            stop=stop_after_attempt(insert_attempts),
            wait=wait_exponential(multiplier=0.05, max=1.0),
            retry=retry_if_exception_type(StoreUnavailableError),
            reraise=True,
        )

    def problem(self) -> str | None:
        """Why the pipeline does not accept records now, or None (for /readyz)."""
        if (halted := self._published.halted) is not None:
            return halted
        if not self._accepting:
            return "the sealer is not accepting records (starting or stopping)"
        if self._unconfirmed is not None:
            return self._unconfirmed
        if self._disk is not None:
            return self._disk.refusal()
        return None

    @property
    def state(self) -> LogState:
        """The last published state: committed, its column hashes handed to on_commit (while
        the writer is busy, up to publish_seconds behind it). Safe to read from any thread."""
        return self._published.current()

    def start(self) -> None:
        self._accepting = True
        self._publisher.start()
        self._writer.start()
        if self._journal is not None:
            self._journaling.start()
        self._intake.start()

    def submit(self, prepared: Prepared, producer: str = "", masking: str = "") -> Batch:
        """Queue records for sealing; raises BackpressureError or SealerStoppedError."""
        self._refuse_if_closed()
        batch = Batch(prepared, producer, masking)
        offer = self._intake.offer(batch)
        if offer is Offer.FULL:
            raise self._queue_full()
        if offer is Offer.CLOSED:
            raise SealerStoppedError("the sealer is shutting down; retry against a running one")
        return batch

    def seal(self, prepared: Prepared, producer: str = "", masking: str = "") -> int:
        """Seal and commit records; returns the first Seq. Blocks until committed."""
        batch = self.submit(prepared, producer, masking)
        batch.wait()
        return batch.first_seq

    def _refuse_if_closed(self) -> None:
        if (halted := self._published.halted) is not None:
            self._halt_refusals.refused(halted)
            raise SealerStoppedError(halted)
        if not self._accepting:
            raise SealerStoppedError("the sealer is shutting down; retry against a running one")
        if self._unconfirmed is not None:
            raise StoreUnavailableError(self._unconfirmed)
        self._refuse_if_disk_full()

    def _queue_full(self) -> BackpressureError:
        return BackpressureError(
            f"sealer queue is full ({self._intake.outstanding} records waiting); retry later"
        )

    def _refuse_if_disk_full(self) -> None:
        if self._disk is not None and (why := self._disk.refusal()) is not None:
            self._disk.refused()
            if self._metrics is not None:
                self._metrics.rejected.labels("disk_full").inc()
            raise DiskFullError(why)

    @contextmanager
    def arriving(self) -> Iterator[None]:
        """Records are on their way (a request being prepared, then submitted).

        Refused at once (SealerStoppedError, BackpressureError) when the pipeline could not
        take them anyway, before a worker spends any time on them. Otherwise the writer may
        wait a moment for them, to write them in the same INSERT as what is pending.
        """
        self._refuse_if_closed()
        if self._intake.full():
            raise self._queue_full()
        with self._lock:
            self._arriving += 1
        try:
            yield
        finally:
            with self._lock:
                self._arriving -= 1
                self._lock.notify_all()

    def stop(self) -> None:
        """Refuse new records, commit and publish everything queued, stop the threads."""
        self._accepting = False
        self._intake.shutdown()
        with self._lock:
            self._sealing_done = True
            self._lock.notify_all()
        if self._writer.is_alive():
            self._writer.join()
        self._journaling.shutdown()
        with self._lock:
            self._writing_done = True
            self._lock.notify_all()
        if self._publisher.is_alive():
            self._publisher.join()
        self._reader.close()

    def force_flush(self, timeout: float | None = None) -> bool:
        """Wait until every record submitted so far is decided (committed or refused, its
        callers released) and every commit published; False if `timeout` seconds passed
        first (the store does not give back what was committed, for one)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._intake.force_flush(timeout):
            return False
        with self._lock:
            while self._to_publish or self._publishing:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._lock.wait(remaining)
        return True

    def _finish(self, batches: Sequence[Batch], error: AuditError | None) -> None:
        """Release the callers of `batches`, with `error` if their records were not committed."""
        now = time.monotonic()
        for batch in batches:
            batch.error = error
            if self._metrics is not None and error is None:
                self._metrics.commit_seconds.observe(now - batch.queued_at)
        self._intake.release(sum(b.prepared.count for b in batches))
        for batch in batches:
            batch.done.set()

    # -- sealer thread -------------------------------------------------------------------

    def _seal_group(self, batches: list[Batch]) -> None:
        """The intake stage's handler: seal what was waiting, as one group."""
        self._set_sealing(True)
        try:
            self._seal_batches(batches)
        finally:
            self._set_sealing(False)

    def _sealing_failed(self, batches: list[Batch], exc: Exception) -> None:
        log.exception("sealing failed")  # a bug: its callers get a retryable error
        error = StoreUnavailableError(f"internal error while sealing: {exc}")
        self._finish([b for b in batches if not b.done.is_set()], error)

    def _seal_batches(self, batches: list[Batch]) -> None:
        """Seal batches on top of the tip and hand them to the writer, or fail them."""
        try:
            if (halted := self._published.halted) is not None:
                raise SealerStoppedError(halted)
            self._refuse_if_disk_full()  # the disk may have filled while these were queued
            with self._lock:  # the writer takes at most max_batch records at once
                while self._rerunning or (
                    self._pending is not None and self._pending.records >= self._max_batch
                ):
                    self._lock.wait()
                tip, reruns = self._tip, self._reruns
            sealed_at = max(self._clock(), tip.sealed_at_ns)
            if crosses_partition(tip, sealed_at, self._timezone):
                tip = self._drain()  # the boundary checkpoint signs exactly what precedes it
                sealed_at = max(self._clock(), tip.sealed_at_ns)
                if crosses_partition(tip, sealed_at, self._timezone):
                    self._on_partition_boundary()  # AuditError: these batches fail, retryable
            job = self._seal(batches, tip, sealed_at)
            batches = job.batches  # the others are refused already
            if not batches:
                return
            with self._lock:
                again = self._reruns != reruns or self._rerunning  # the writer re-ran a refused group
                if not again:
                    if self._tip is not tip:  # the writer failed what this was sealed on
                        raise StoreUnavailableError(_EARLIER_FAILED)
                    self._tip = job.after
                    if self._pending is None:
                        self._pending = job
                    else:
                        self._pending.extend(job)
                    self._lock.notify_all()
            if again:
                self._seal_batches(batches)  # on top of what it committed
        except AuditError as exc:
            self._finish([b for b in batches if not b.done.is_set()], exc)  # _seal refuses some
        except Exception as exc:  # a bug must not leave callers waiting forever
            log.exception("sealing failed")
            error = StoreUnavailableError(f"internal error while sealing: {exc}")
            self._finish([b for b in batches if not b.done.is_set()], error)

    def _set_sealing(self, sealing: bool) -> None:
        with self._lock:
            self._sealing = sealing
            self._lock.notify_all()

    def _drain(self) -> LogState:
        """Wait until every sealed record is written (or refused) and published; the
        committed state."""
        with self._lock:
            self._draining = True  # the writer must not wait for what cannot come meanwhile
            self._lock.notify_all()
            try:
                while self._pending is not None or self._writing or self._to_publish or self._publishing:
                    self._lock.wait()
                return self._tip
            finally:
                self._draining = False

    def _seal(self, batches: list[Batch], before: LogState, sealed_at: int) -> _Job:
        """Seal batches on top of `before` (sealer/seal.py). A batch whose block cannot be
        encoded is refused (its callers released) and left out: the job holds the others."""
        sealed = seal(before, [ToSeal(b.prepared, b.producer, b.masking) for b in batches], sealed_at)
        kept, blocks = [], []
        for batch, outcome in zip(batches, sealed.batches):
            if isinstance(outcome, RefusedBatch):
                self._finish([batch], RefusedByStoreError(outcome.error))
                continue
            batch.first_seq, batch.entries = outcome.first_seq, outcome.entries
            kept.append(batch)
            blocks.append(outcome.block)
        return _Job(kept, before, sealed.after, blocks, sealed.entry_bytes)

    # -- writer thread -------------------------------------------------------------------

    def _run_writer(self) -> None:
        while True:
            job = self._take()
            if job is None:
                return
            error: AuditError | None = None
            try:
                self._write(job)
            except StoreDataError:
                self._write_alone(job)  # releases every caller of the job and of what followed
                continue
            except AuditError as exc:
                error = exc
            except Exception as exc:  # a bug must not leave callers waiting forever
                log.exception("writing sealed records failed")
                error = StoreUnavailableError(f"internal error while writing: {exc}")
            stale: _Job | None = None
            with self._lock:
                if error is not None:  # what was sealed on top of the failed job is void
                    stale, self._pending = self._pending, None
                    self._tip = self._written
                self._writing = False
                self._lock.notify_all()
            if error is None and job.journal_later:
                if self._journaling.put(job) is not Offer.ACCEPTED:  # the journaler releases them
                    self._finish(job.batches, SealerStoppedError("the sealer stopped before journaling"))
            else:
                self._finish(job.batches, error)  # the rows are in the store: release the callers
            if stale is not None:
                self._finish(stale.batches, StoreUnavailableError(_EARLIER_FAILED))

    def _write_alone(self, failed: _Job) -> None:
        """The store refused a job's rows as bad data: seal and write each of its batches, and
        of those sealed on top of it, alone on top of what is committed, so that only the
        culprit is refused. The sealer waits meanwhile (`_rerunning`), then seals on top.

        Every batch keeps the job's seal time (the latest of them): the sealer checked it
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
        remaining = failed.batches + later  # each is released as soon as it is decided
        try:
            while remaining:
                job = self._seal(remaining[:1], self._written, sealed_at)  # may refuse it itself
                try:
                    if job.batches:
                        self._write(job)
                        self._finish(job.batches, None)
                except StoreDataError as exc:
                    self._finish(job.batches, RefusedByStoreError(exc))
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

    def _take(self) -> _Job | None:
        """The next job to write (None once sealing is done and all is written).

        Every INSERT costs the engine a fixed amount of work besides its rows (some 10 ms on
        the embedded engine), so when more records are already on their way, the writer
        waits for them a moment (`gather_seconds` at most) to write them in the same INSERT.
        A caller alone is never kept waiting: then nothing else is on its way.
        """
        with self._lock:
            while self._pending is None and not self._sealing_done:
                self._lock.wait()
            deadline = time.monotonic() + self._gather
            while (
                self._pending is not None
                and self._pending.records < self._max_batch
                and (self._arriving or self._sealing or self._intake.waiting())
                and not (self._draining or self._sealing_done)
                and (remaining := deadline - time.monotonic()) > 0
            ):
                self._lock.wait(remaining)
            job, self._pending = self._pending, None
            if job is not None:
                job.journal_later = self._journal is not None
                self._writing = True
                self._lock.notify_all()
            return job

    def _write(self, job: _Job) -> None:
        """Write a job's rows, hand its state on to be published and append them to the
        journal; AuditError if the rows are not in the store or not in the journal."""
        if (halted := self._published.halted) is not None:
            raise SealerStoppedError(halted)
        self._settle_uncertain()
        if job.before is not self._written:
            raise StoreUnavailableError(_EARLIER_FAILED)
        if self._journal is not None and self._journal.broken:  # the journal catches up first
            with self._journal_lock:
                self._to_journal(job.before.size, None)
        try:
            for attempt in self._retrying:
                with attempt:
                    self._store.insert_blocks(INSERT_COLUMNS, job.blocks, job.token)
        except StoreUnavailableError as exc:
            log.warning("insert of Seq %d..%d failed: %s", job.before.size, job.after.size - 1, exc)
            if self._metrics is not None:
                self._metrics.store_errors.inc()
            self._uncertain = _Uncertain(job.after)
            self._settle_uncertain()
            if self._written is not job.after:
                raise
            if not job.journal_later:
                self._journal_now(job)
            return
        self._committed(job.after)
        if self._metrics is not None:
            self._metrics.bytes_sealed.inc(job.entry_bytes)
        if not job.journal_later:
            self._journal_now(job)

    def _journal_now(self, job: _Job) -> None:
        with self._journal_lock:
            self._to_journal(job.before.size, job)

    # -- journaler thread ----------------------------------------------------------------

    def _journal_jobs(self, jobs: list[_Job]) -> None:
        """The journaling stage's handler: append committed jobs, then release their callers."""
        for job in jobs:
            error: AuditError | None = None
            try:
                self._journal_now(job)
            except AuditError as exc:
                error = exc
            self._finish(job.batches, error)

    def _journaling_failed(self, jobs: list[_Job], exc: Exception) -> None:
        log.exception("journaling sealed records failed")  # a bug: its callers get a retryable error
        error = StoreUnavailableError(f"internal error while journaling: {exc}")
        for job in jobs:
            self._finish([b for b in job.batches if not b.done.is_set()], error)

    def _to_journal(self, first: int, job: _Job | None) -> None:
        """Append `job` (committed, Seq from `first`) to the journal, after any committed rows
        it lacks, copied from the store. Called after the INSERT and before the callers are
        released: then every acknowledged record is in the journal, and every journal record
        was committed once. If it fails the rows are in the store, and the callers get a
        retryable error (a retry duplicates them, never loses them)."""
        journal = self._journal
        if journal is None:
            return
        if job is not None and journal.end is not None and journal.end >= job.after.size:
            return  # copied from the store already, by a catch-up for a later job
        try:
            catch_up(journal, self._store, first)
            if job is not None:
                entries = [entry for batch in job.batches for entry in batch.entries]
                journal.append(first, entries, job.before.chain_head, job.after.chain_head)
        except AuditError as exc:  # JournalError, or the store while catching up
            log.error("journal: %s", exc)
            raise StoreUnavailableError(
                f"the records were stored but could not be copied to the journal ({exc}); retry"
            ) from None

    def _committed(self, after: LogState) -> None:
        """The rows up to `after` are in the store: write on from there, and publish it."""
        with self._lock:
            self._written = after
            self._to_publish.append(after)
            self._lock.notify_all()

    # -- publisher thread ----------------------------------------------------------------

    def _run_publisher(self) -> None:
        while True:
            with self._lock:
                while not self._to_publish and not self._writing_done:
                    self._lock.wait()
                if not self._to_publish:
                    return
                deadline = time.monotonic() + self._publish_seconds
                while (  # a busy writer: gather commits, to read them back in one query
                    (self._writing or self._pending is not None)
                    and not (self._draining or self._writing_done)
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
            if self._writing_done and attempt >= self._read_back_attempts:  # stopping: give up
                self._published.halt(f"{self._unconfirmed}; the sealer stopped without confirming them")
                return None
            time.sleep(min(1.0, 0.1 * 2 ** (attempt - 1)))

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
