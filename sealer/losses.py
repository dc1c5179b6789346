"""Acknowledged rows the store no longer has: how the sealer finds them and says so.

The publisher (sealer/publisher.py) reads back every committed range, and the checkpointer
(sealer/checkpointer.py) checks the store holds every row of the range it is about to sign.
Either may find rows missing (an engine that lost a part on a full disk, a deletion) or
unreadable (a part whose files a full disk left empty, which the engine drops at its next
start); then the sealer stops acknowledging and `lost_rows`, naming the exact Seq ranges, is
what /readyz, the log and every refused Export call say.
"""

from __future__ import annotations

from collections.abc import Sequence

from backend.store import Store
from otel_audit.errors import StoreDamagedError

RESTORE = (
    "the sealer stopped acknowledging records and signs no checkpoint over them. Restore them from "
    "the journal with `otel-audit restore` (see README 'Restoring lost rows'), then restart the sealer"
)


def ranges_text(gaps: Sequence[tuple[int, int]], limit: int = 5) -> str:
    """'Seq 5..9, Seq 12' for inclusive ranges; the first `limit`, then how many more."""
    shown = [f"Seq {a}" if a == b else f"Seq {a}..{b}" for a, b in gaps[:limit]]
    if len(gaps) > limit:
        shown.append(f"and {len(gaps) - limit} more range(s)")
    return ", ".join(shown)


def lost_rows_message(origin: str, gaps: Sequence[tuple[int, int]], damaged: Sequence[str] = ()) -> str:
    """Why the sealer halted: these acknowledged rows are gone (or in `damaged` parts, which
    the engine cannot read)."""
    count = sum(b - a + 1 for a, b in gaps)
    parts = f" (the engine cannot read its part(s) {', '.join(damaged)})" if damaged else ""
    return (
        f"{ranges_text(gaps)} of log {origin!r} ({count} record(s)) were acknowledged but the store "
        f"no longer has them{parts}; {RESTORE}"
    )


def lost_rows(store: Store, origin: str, first: int, end: int) -> str | None:
    """Which rows of Seq [first, end) the store lacks or cannot read, said as lost_rows_message;
    None if it has them all (StoreUnavailableError if it does not answer)."""
    try:
        damaged = store.damaged_parts(origin, first, end)
        if damaged:  # a damaged merged part may hold older rows too: name all it holds (with
            # nothing readable left, from Seq 0, though retention may have dropped the first)
            readable = store.first_seq(origin, damaged)
            first = 0 if readable is None else min(first, readable)
        gaps = store.seq_gaps(origin, first, end, damaged)
    except StoreDamagedError as exc:  # damage it could not place in a part
        return (
            f"the store cannot read rows it holds of log {origin!r} within Seq {first}..{end - 1} ({exc}); "
            f"{RESTORE}"
        )
    return lost_rows_message(origin, gaps, damaged) if gaps or damaged else None
