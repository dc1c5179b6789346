"""What passes between the sealing pipeline's stages (sealer/pipeline.py): a caller's
`Batch`, and a `Group` of sealed batches on its way to the store and the journal.

A batch's outcome is a value set on it (`error`, or None once its records are committed and
journaled), and its caller waits on `done`: no exception crosses a thread.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from otel_audit.errors import AuditError, StoreDataError

from .prepare import Prepared
from .seal import RefusedBatch, ToSeal, seal
from .state import LogState


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

    @property
    def records(self) -> int:
        return self.prepared.count

    def wait(self) -> None:
        self.done.wait()
        if self.error is not None:
            raise self.error


@dataclass
class Group:
    """Sealed records on their way to the store: the rows of `batches`, taking the log from
    `before` to `after`. The sealer extends the pending group until the writer takes it."""

    batches: list[Batch]
    before: LogState
    after: LogState
    blocks: list[bytes]  # the rows, as Native blocks
    entry_bytes: int
    journal_later: bool = False  # by the journaler, which then releases the callers

    @property
    def records(self) -> int:
        return self.after.size - self.before.size

    def extend(self, later: Group) -> None:
        self.batches += later.batches
        self.blocks += later.blocks
        self.entry_bytes += later.entry_bytes
        self.after = later.after

    @property
    def token(self) -> str:
        """The INSERT's deduplication token: the same for every retry of these rows."""
        return f"{self.after.origin}:{self.before.size}-{self.after.size - 1}:{self.after.chain_head.hex()}"


def seal_group(
    batches: list[Batch], before: LogState, sealed_at: int
) -> tuple[Group, list[tuple[Batch, StoreDataError]]]:
    """Seal batches on top of `before` (sealer/seal.py) as one group, and the batches whose
    rows cannot be encoded for the store, left out of it, each with why (its caller is to be
    refused). Sets each sealed batch's first Seq and entries."""
    sealed = seal(before, [ToSeal(b.prepared, b.producer, b.masking) for b in batches], sealed_at)
    kept, blocks, refused = [], [], []
    for batch, outcome in zip(batches, sealed.batches):
        if isinstance(outcome, RefusedBatch):
            refused.append((batch, outcome.error))
            continue
        batch.first_seq, batch.entries = outcome.first_seq, outcome.entries
        kept.append(batch)
        blocks.append(outcome.block)
    return Group(kept, before, sealed.after, blocks, sealed.entry_bytes), refused
