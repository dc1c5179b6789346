"""The committed state of one log: what the next record continues from."""

from __future__ import annotations

from dataclasses import dataclass

from otel_audit.chain import CHAIN_START
from otel_audit.merkle import CompactRange


@dataclass(frozen=True)
class LogState:
    """Immutable snapshot; the pipeline publishes a new one after each commit.

    `tree` must not be mutated once the state is published: readers (the checkpointer)
    take the reference without a lock.
    """

    origin: str
    tree: CompactRange
    chain_head: bytes
    sealed_at_ns: int

    @property
    def size(self) -> int:
        return self.tree.size

    @classmethod
    def empty(cls, origin: str) -> LogState:
        return cls(origin, CompactRange(), CHAIN_START, 0)
