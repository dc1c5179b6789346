"""The journaler: appends each committed group to the journal, then releases its callers.

It owns the journal (sealer/journal.py) and the one lock its users take, and a Stage with one
worker that waits for committed groups (`hand_over`, from the writer): the fsync runs beside
the writer's next INSERT and costs it nothing. At most two committed groups are not yet
journaled: one appended, one waiting. Then every acknowledged record is in the journal, and
every journal record was committed once. If appending fails the rows are in the store, and the
callers get a retryable error (a retry duplicates them, never loses them).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from backend.store import Store
from otel_audit.errors import AuditError, SealerStoppedError, StoreUnavailableError

from .groups import Batch, Group
from .journal import Journal, catch_up
from .stage import Offer, Stage

log = logging.getLogger(__name__)

Finish = Callable[[Sequence[Batch], AuditError | None], None]


class Journaling:
    def __init__(self, journal: Journal | None, store: Store, finish: Finish) -> None:
        """`finish` releases batches' callers, with the error if they were not committed."""
        self._journal = journal  # None: no journal; everything here is then a no-op
        self._store = store
        self._finish = finish
        self._lock = threading.Lock()  # one thread at a time uses the journal
        self._stage: Stage[Group] = Stage("sealer-journal", self._append_all, self._failed, max_outstanding=2)

    @property
    def on(self) -> bool:
        return self._journal is not None

    def start(self) -> None:
        if self._journal is not None:
            self._stage.start()

    def shutdown(self) -> None:
        """Journal the groups handed over, then stop the worker."""
        self._stage.shutdown()

    def hand_over(self, group: Group) -> None:
        """A committed group: journal it, then release its callers (waits for room)."""
        if self._stage.put(group) is not Offer.ACCEPTED:
            self._finish(group.batches, SealerStoppedError("the sealer stopped before journaling"))

    def catch_up_if_broken(self, first: int) -> None:
        """Before writing Seq `first` on: if the journal lost track, copy what it lacks from
        the store first. AuditError if it cannot."""
        if self._journal is not None and self._journal.broken:
            with self._lock:
                self._append(first, None)

    def append_now(self, group: Group) -> None:
        """Append a committed group on this thread. AuditError if it cannot."""
        with self._lock:
            self._append(group.before.size, group)

    def _append_all(self, groups: list[Group]) -> None:
        """The stage's handler: append committed groups, then release their callers."""
        for group in groups:
            error: AuditError | None = None
            try:
                self.append_now(group)
            except AuditError as exc:
                error = exc
            self._finish(group.batches, error)

    def _failed(self, groups: list[Group], exc: Exception) -> None:
        log.exception("journaling sealed records failed")  # a bug: its callers get a retryable error
        error = StoreUnavailableError(f"internal error while journaling: {exc}")
        for group in groups:
            self._finish([b for b in group.batches if not b.done.is_set()], error)

    def _append(self, first: int, group: Group | None) -> None:
        """Append `group` (committed, Seq from `first`) to the journal, after any committed
        rows it lacks, copied from the store. Called after the INSERT and before the callers
        are released."""
        journal = self._journal
        if journal is None:
            return
        if group is not None and journal.end is not None and journal.end >= group.after.size:
            return  # copied from the store already, by a catch-up for a later group
        try:
            catch_up(journal, self._store, first)
            if group is not None:
                entries = [entry for batch in group.batches for entry in batch.entries]
                journal.append(first, entries, group.before.chain_head, group.after.chain_head)
        except AuditError as exc:  # JournalError, or the store while catching up
            log.error("journal: %s", exc)
            raise StoreUnavailableError(
                f"the records were stored but could not be copied to the journal ({exc}); retry"
            ) from None
