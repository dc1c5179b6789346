"""The sealing pipeline: the assembly of the stages that seal, write, journal and publish.

Receivers hand over prepared requests (sealer/prepare.py: the per-record work that does not
need a Seq, done by the sealing workers). Four threads then work in a row, so that Python
seals the next group while ClickHouse (which releases the GIL) writes the previous one; each
owns its part, and outcomes pass between them as values (sealer/groups.py: a `Batch`'s error,
a `Group`, a `HandOver`):

1. the *sealer* (a Stage, sealer/stage.py, which also counts the records held against
   `max_queued_records` until their callers are released: backpressure) takes every batch
   waiting and seals it (sealer/seal.py: Seq, seal time, leaf hash, chain hash, the seal
   columns) on top of the state the previous group will leave (the writer's *tip*); here,
   below. One sealer means one order: Seq is contiguous and the chain has no forks, whichever
   receiver a record came through.
2. the *writer* (sealer/group_commit.py) writes each sealed group with a single INSERT, and
   re-runs a group the store refused as bad data batch by batch;
3. the *journaler* (sealer/journaling.py) appends each committed group to the journal (one
   fsync a group, beside the next INSERT) and only then releases its callers;
4. the *publisher* (sealer/publisher.py) reads back the column hashes of the rows just
   written, hands them to `on_commit` (the checkpointer) and publishes the new state, or
   halts the log (PublishedLog.halt) if acknowledged rows are gone.

While the store's disk is nearly full (sealer/disk.py), records are refused before any work
is done on them (`arriving`, `submit`) and again before sealing what was queued meanwhile.

One batch's data never fails another's. Each batch's rows are encoded apart, so one that
does not fit the store's column types is refused alone while its group is sealed (prepare.py
checks every record against the store's limits before this, backend/limits.py; this is the
defence behind it).

Retention drops whole partitions (month of SealedAt), so before the first record of a new
partition is sealed, the sealer drains the writer and the publisher and has a checkpoint
signed exactly at the boundary (`on_partition_boundary`); the verifier restarts from it.

Collaborators come in at construction: the store, the journal, the disk guard, metrics, and
the checkpointer's callbacks (`on_commit`, `on_partition_boundary`); the published state and
the halt live in a PublishedLog the checkpointer shares. Lifecycle: `start`, `force_flush
(timeout)`, `stop` (commits and publishes everything queued; sealer/service.py says when).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from zoneinfo import ZoneInfo

from backend.store import Store
from otel_audit.errors import (
    AuditError,
    BackpressureError,
    DiskFullError,
    RefusedByStoreError,
    SealerStoppedError,
    StoreUnavailableError,
)

from .disk import DiskGuard
from .group_commit import EARLIER_FAILED, GroupCommit, HandOver, Tip
from .groups import Batch, seal_group
from .journal import Journal
from .journaling import Journaling
from .metrics import SealerMetrics
from .prepare import Prepared
from .publisher import PublishedLog, Publisher
from .refusals import RefusalLog
from .seal import crosses_partition
from .stage import Offer, Stage
from .state import LogState

log = logging.getLogger(__name__)

__all__ = ["Batch", "Pipeline", "PublishedLog"]


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
        self._published = published  # committed, and its column hashes reported; and the halt
        self._disk = disk  # refuses records while the store's disk is nearly full (sealer/disk.py)
        self._clock = clock
        self._metrics = metrics
        self._on_partition_boundary = on_partition_boundary
        self._timezone = ZoneInfo(store.timezone())
        self._accepting = False
        self._halt_refusals = RefusalLog(log, logging.ERROR)  # said, but not per call
        # The sealer: takes every batch waiting (up to max_batch_records) and seals it. A
        # batch's records count against max_queued_records until its callers are released.
        self._intake: Stage[Batch] = Stage(
            "sealer-seal",
            self._seal_group,
            self._sealing_failed,
            weight=lambda batch: batch.records,
            max_batch=max_batch_records,
            max_outstanding=max_queued_records,
            hold=True,
        )
        if metrics is not None:
            metrics.queue_depth.set_function(lambda: self._intake.outstanding)
        # Column hashes are read back on a connection of their own, beside the next INSERT.
        self._reader = Store.open(store.dsn, cluster=store.cluster)
        self._publisher = Publisher(
            self._reader,
            published,
            writer_busy=lambda: self._writer.busy(),
            on_commit=on_commit,
            publish_records=publish_records,
            publish_seconds=publish_seconds,
            read_back_attempts=read_back_attempts,
            metrics=metrics,
        )
        self._journaling = Journaling(journal, store, self._finish)
        self._writer = GroupCommit(
            store,
            published,
            self._publisher,
            self._journaling,
            self._finish,
            queued=self._intake.waiting,
            max_batch_records=max_batch_records,
            gather_seconds=gather_seconds,
            insert_attempts=insert_attempts,
            metrics=metrics,
        )

    def problem(self) -> str | None:
        """Why the pipeline does not accept records now, or None (for /readyz)."""
        if (halted := self._published.halted) is not None:
            return halted
        if not self._accepting:
            return "the sealer is not accepting records (starting or stopping)"
        if (unconfirmed := self._publisher.unconfirmed) is not None:
            return unconfirmed
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
        if (unconfirmed := self._publisher.unconfirmed) is not None:
            raise StoreUnavailableError(unconfirmed)
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
        with self._writer.arriving():
            yield

    def stop(self) -> None:
        """Refuse new records, commit and publish everything queued, stop the threads (each
        after the one that feeds it)."""
        self._accepting = False
        self._intake.shutdown()
        self._writer.stop()
        self._journaling.shutdown()
        self._publisher.stop()
        self._reader.close()

    def force_flush(self, timeout: float | None = None) -> bool:
        """Wait until every record submitted so far is decided (committed or refused, its
        callers released) and every commit published; False if `timeout` seconds passed
        first (the store does not give back what was committed, for one)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._intake.force_flush(timeout):
            return False
        return self._publisher.wait_published(None if deadline is None else deadline - time.monotonic())

    def _finish(self, batches: Sequence[Batch], error: AuditError | None) -> None:
        """Release the callers of `batches`, with `error` if their records were not committed."""
        now = time.monotonic()
        for batch in batches:
            batch.error = error
            if self._metrics is not None and error is None:
                self._metrics.commit_seconds.observe(now - batch.queued_at)
        self._intake.release(sum(b.records for b in batches))
        for batch in batches:
            batch.done.set()

    # -- the sealer thread -----------------------------------------------------------------

    def _seal_group(self, batches: list[Batch]) -> None:
        """The intake stage's handler: seal what was waiting, as one group."""
        with self._writer.sealing():
            self._seal_batches(batches)

    def _sealing_failed(self, batches: list[Batch], exc: Exception) -> None:
        log.exception("sealing failed")  # a bug: its callers get a retryable error
        error = StoreUnavailableError(f"internal error while sealing: {exc}")
        self._finish([b for b in batches if not b.done.is_set()], error)

    def _seal_batches(self, batches: list[Batch]) -> None:
        """Seal batches on the writer's tip and hand them over, or fail them."""
        try:
            if (halted := self._published.halted) is not None:
                raise SealerStoppedError(halted)
            self._refuse_if_disk_full()  # the disk may have filled while these were queued
            tip = self._writer.room()
            sealed_at = max(self._clock(), tip.state.sealed_at_ns)
            if crosses_partition(tip.state, sealed_at, self._timezone):
                tip = self._drain()  # the boundary checkpoint signs exactly what precedes it
                sealed_at = max(self._clock(), tip.state.sealed_at_ns)
                if crosses_partition(tip.state, sealed_at, self._timezone):
                    self._on_partition_boundary()  # AuditError: these batches fail, retryable
            group, refused = seal_group(batches, tip.state, sealed_at)
            for batch, why in refused:
                self._finish([batch], RefusedByStoreError(why))
            batches = group.batches  # the others are refused already
            if not batches:
                return
            handed = self._writer.hand_over(group, tip)
            if handed is HandOver.EARLIER_FAILED:
                raise StoreUnavailableError(EARLIER_FAILED)
            if handed is HandOver.RESEAL:
                self._seal_batches(batches)  # on top of what the writer committed
        except AuditError as exc:
            self._finish([b for b in batches if not b.done.is_set()], exc)
        except Exception as exc:  # a bug must not leave callers waiting forever
            log.exception("sealing failed")
            error = StoreUnavailableError(f"internal error while sealing: {exc}")
            self._finish([b for b in batches if not b.done.is_set()], error)

    def _drain(self) -> Tip:
        """Wait until every sealed record is written (or refused) and published; where to
        seal on then."""
        self._writer.drain()
        self._publisher.wait_published(hurry=True)
        return self._writer.room()
