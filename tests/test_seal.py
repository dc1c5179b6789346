"""Pure sealing (sealer/seal.py) on its own: no store, no threads, no clock."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from backend.partitions import partition_of
from otel_audit.chain import CHAIN_START, chain_next
from otel_audit.entry import Seal, decode_entry
from otel_audit.errors import StoreDataError
from otel_audit.merkle import hash_leaf, root_from_leaf_hashes
from sealer.prepare import Prepared, Rules, prepare_request
from sealer.seal import RefusedBatch, SealedBatch, ToSeal, crosses_partition, seal
from sealer.state import LogState

ORIGIN = "seal.example/audit"
T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z


def items(n: int, tag: str = "r") -> Prepared:
    request = ExportLogsServiceRequest()
    scope_logs = request.resource_logs.add().scope_logs.add()
    for i in range(n):
        scope_logs.log_records.add(body=AnyValue(string_value=f"{tag}{i}"))
    return prepare_request(request.SerializeToString(), Rules())


def unencodable(n: int) -> Prepared:
    """Records whose Timestamp the store's TimestampTime (UInt32 seconds) cannot hold."""
    prepared = items(n, "bad")
    prepared.timestamps[0] = 2**62
    return prepared


def _batches(sizes: list[int], tag: str) -> list[ToSeal]:
    return [
        ToSeal(items(n, f"{tag}{b}-"), producer=f"p{b}", masking="m" if b % 2 else "")
        for b, n in enumerate(sizes)
    ]


def _sealed(outcomes: tuple[SealedBatch | RefusedBatch, ...]) -> list[SealedBatch]:
    return [o for o in outcomes if isinstance(o, SealedBatch)]


def test_the_same_input_gives_the_same_bytes() -> None:
    batches = _batches([3, 1, 4], "a")
    one, two = (seal(LogState.empty(ORIGIN), batches, T0) for _ in range(2))
    assert [(b.first_seq, b.entries, b.block) for b in _sealed(one.batches)] == [
        (b.first_seq, b.entries, b.block) for b in _sealed(two.batches)
    ]
    assert (one.after.tree.root(), one.after.chain_head) == (two.after.tree.root(), two.after.chain_head)


def test_before_is_left_untouched() -> None:
    before = LogState.empty(ORIGIN)
    sealed = seal(before, _batches([5], "u"), T0)
    assert (before.size, before.chain_head, sealed.before) == (0, CHAIN_START, before)
    assert (sealed.after.size, sealed.records, sealed.after.sealed_at_ns) == (5, 5, T0)


@pytest.mark.parametrize(
    "calls",
    [
        [[1]],
        [[5, 1, 2]],
        [[5], [1], [2]],
        [[5, 1], [2]],
        [[1, 1, 1, 1], [3, 4]],
    ],
)
def test_seq_and_chain_continue_across_calls_as_the_verifier_recomputes_them(calls: list[list[int]]) -> None:
    """However the batches are split into calls, Seq is contiguous from 0, every entry holds
    its own seal, and leaves, chain and root are what otel_audit recomputes from the entries."""
    state = LogState.empty(ORIGIN)
    entries: list[bytes] = []
    firsts: list[int] = []
    for call, sizes in enumerate(calls):
        sealed_at = T0 + call
        batches = _batches(sizes, f"c{call}-")
        result = seal(state, batches, sealed_at)
        assert result.before is state
        for batch, outcome in zip(batches, _sealed(result.batches), strict=True):
            firsts.append(outcome.first_seq)
            for i, entry in enumerate(outcome.entries):
                decoded, _ = decode_entry(entry)
                want = Seal(ORIGIN, outcome.first_seq + i, sealed_at, batch.producer, batch.masking)
                assert decoded == want
            entries += outcome.entries
        state = result.after
    sizes = [n for call in calls for n in call]
    assert firsts == [sum(sizes[:i]) for i in range(len(sizes))]
    leaves = [hash_leaf(e) for e in entries]
    chain = CHAIN_START
    for leaf in leaves:
        chain = chain_next(chain, leaf)
    assert (state.size, state.tree.root(), state.chain_head) == (
        len(entries),
        root_from_leaf_hashes(leaves),
        chain,
    )


def test_a_split_into_calls_changes_no_byte_at_one_seal_time() -> None:
    """Sealed in one call or one batch at a time (at the same seal time), the entries and
    blocks are the same: a batch's bytes depend on where it stands, not on its group."""
    batches = _batches([2, 3, 1], "s")
    whole = seal(LogState.empty(ORIGIN), batches, T0)
    state, parts = LogState.empty(ORIGIN), []
    for batch in batches:
        result = seal(state, [batch], T0)
        parts += _sealed(result.batches)
        state = result.after
    assert _sealed(whole.batches) == parts
    assert (whole.after.tree.root(), whole.after.chain_head) == (state.tree.root(), state.chain_head)


@pytest.mark.parametrize("bad_at", [0, 1, 2])
def test_a_batch_the_store_cannot_hold_is_refused_alone(bad_at: int) -> None:
    batches = _batches([2, 3, 4], "g")
    batches[bad_at] = dataclasses.replace(batches[bad_at], prepared=unencodable(3))
    result = seal(LogState.empty(ORIGIN), batches, T0)
    refused = [i for i, o in enumerate(result.batches) if isinstance(o, RefusedBatch)]
    assert refused == [bad_at]
    assert isinstance(result.batches[bad_at], RefusedBatch)
    assert isinstance(result.batches[bad_at].error, StoreDataError)
    kept = [b for i, b in enumerate(batches) if i != bad_at]
    without = seal(LogState.empty(ORIGIN), kept, T0)  # Seq and chain go on as if it never came
    assert _sealed(result.batches) == _sealed(without.batches)
    assert result.after.chain_head == without.after.chain_head
    assert (
        result.entry_bytes
        == without.entry_bytes
        == sum(len(e) for b in _sealed(without.batches) for e in b.entries)
    )


def _ns(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp()) * 1_000_000_000


@pytest.mark.parametrize(
    ("tip_size", "tip_at", "sealed_at", "zone", "crosses"),
    [
        (0, "2026-01-15T00:00:00+00:00", "2026-02-15T00:00:00+00:00", "UTC", False),  # nothing to cut off
        (5, "2026-01-15T00:00:00+00:00", "2026-01-31T23:59:59+00:00", "UTC", False),
        (5, "2026-01-15T00:00:00+00:00", "2026-02-01T00:00:00+00:00", "UTC", True),
        (5, "2026-01-31T12:00:00+00:00", "2026-01-31T23:30:00+00:00", "UTC", False),
        (5, "2026-01-31T12:00:00+00:00", "2026-01-31T23:30:00+00:00", "Europe/Berlin", True),  # Feb 1 there
        (5, "2026-12-31T22:00:00+00:00", "2027-01-01T00:00:00+00:00", "UTC", True),
    ],
)
def test_a_new_partition_starts_with_the_month_in_the_stores_time_zone(  # type: ignore[no-untyped-def]
    tip_size, tip_at, sealed_at, zone, crosses
) -> None:
    timezone = ZoneInfo(zone)
    tip = (
        seal(LogState.empty(ORIGIN), _batches([tip_size], "t"), _ns(tip_at)).after
        if tip_size
        else LogState.empty(ORIGIN)
    )
    assert crosses_partition(tip, _ns(sealed_at), timezone) is crosses
    late_january = _ns("2026-01-31T23:30:00+00:00")
    assert (
        partition_of(late_january, ZoneInfo("UTC")),
        partition_of(late_january, ZoneInfo("Europe/Berlin")),
    ) == (
        "202601",
        "202602",
    )
