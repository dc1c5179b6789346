"""Retention: with a fake clock, months sealed long ago are dropped by the table's TTL (whole
partitions) and `verify` still passes, from the signed checkpoint at the partition boundary;
a removed middle partition, or a prefix removed before its time, is still tampering."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from backend.evidence import Search, consistency_proof, export, inclusion_proof
from backend.log_verifier import verify_origin
from backend.migrations import set_retention
from backend.store import Store
from otel_audit.bundle import verify_bundle
from otel_audit.errors import StoreError
from otel_audit.note import SignerKey
from sealer.checkpointer import Checkpointer
from sealer.pipeline import Pipeline, PublishedLog
from sealer.state import LogState

from .conftest import run_cli
from .test_pipeline import items

KEY = SignerKey.from_seed("retention.example/audit", b"\x05" * 32)


def _ns(*date: int) -> int:
    return int(datetime(*date, tzinfo=UTC).timestamp()) * 10**9


class FakeClock:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


def _seal_months(store: Store, anchors: Path, months: list[tuple[int, int]], per_month: int = 50) -> None:
    clock = FakeClock()
    published = PublishedLog(LogState.empty(KEY.name))
    checkpointer = Checkpointer(store, KEY, anchors, published.current, 3600, clock=clock)
    pipeline = Pipeline(
        store,
        published,
        on_commit=checkpointer.record_column_hashes,
        on_partition_boundary=checkpointer.checkpoint_now,
        clock=clock,
    )
    pipeline.start()
    for year, month in months:
        for day in (3, 17):  # two batches a month
            clock.now = _ns(year, month, day)
            pipeline.seal(items(per_month // 2, f"{year}-{month}-{day}-"))
        checkpointer.checkpoint_now()  # and a checkpoint mid-log, as the interval would
    pipeline.stop()
    checkpointer.checkpoint_now()


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = Store.open(f"chdb://{tmp_path / 'store'}")
    s.ensure_schema()
    # The fake clock seals months that are already past the TTL, which the engine would drop
    # on insert: seal them first, then put the retention back (as `migrate` does).
    s.command("ALTER TABLE otel_audit.logs REMOVE TTL")
    yield s
    s.close()


def _partitions(store: Store) -> list[str]:
    return [r[0] for r in store.select(
        "SELECT DISTINCT partition FROM system.parts WHERE database = 'otel_audit' AND table = 'logs' "
        "AND active AND rows > 0 ORDER BY 1"
    )]  # fmt: skip


@pytest.mark.parametrize("deep", [False, True])
def test_expired_prefix_is_not_tampering(store: Store, tmp_path: Path, deep: bool) -> None:
    _seal_months(store, tmp_path / "anchors", [(2017, 1), (2017, 2), (2017, 3), (2026, 10), (2026, 11)])
    assert _partitions(store) == ["201701", "201702", "201703", "202610", "202611"]
    set_retention(store, years=7, minimum_years=6)
    # The engine drops whole expired parts in a background pass that cannot be triggered on
    # demand; with ttl_only_drop_parts off, OPTIMIZE applies the same month-wide TTL now.
    store.command("ALTER TABLE otel_audit.logs MODIFY SETTING ttl_only_drop_parts = 0")
    store.command("OPTIMIZE TABLE otel_audit.logs FINAL")
    assert _partitions(store) == ["202610", "202611"]  # whole 2017 months expired (TTL: 7 years)
    assert store.seq_range(KEY.name) == (100, 150, 249)
    report = verify_origin(store, KEY.verifier(), tmp_path / "anchors", deep=deep)
    assert report.ok, report.findings
    assert (report.expired_records, report.records, report.signed_size) == (150, 100, 250)


def test_cli_says_what_expired(store: Store, tmp_path: Path) -> None:
    _seal_months(store, tmp_path / "anchors", [(2018, 5), (2026, 11)])
    store.command("ALTER TABLE otel_audit.logs DROP PARTITION 201805")  # as the TTL would
    dsn = store.dsn
    store.close()
    done = run_cli(
        "verify",
        "--store",
        dsn,
        "--anchor-dir",
        str(tmp_path / "anchors"),
        "--key",
        KEY.verifier().serialize(),
    )
    assert done.returncode == 0, done.stdout
    assert "Seq 0..49 expired under the retention policy (older than 7 years)" in done.stdout
    strict = run_cli("verify", "--store", dsn, "--key", KEY.verifier().serialize(), "--retention-years", "10")
    assert strict.returncode == 1 and "missing" in strict.stdout  # 2018 is not 10 years old yet


def test_removed_middle_partition_is_tampering(store: Store, tmp_path: Path) -> None:
    _seal_months(store, tmp_path / "anchors", [(2017, 1), (2017, 2), (2017, 3)])
    store.command("ALTER TABLE otel_audit.logs DROP PARTITION 201702")
    report = verify_origin(store, KEY.verifier(), tmp_path / "anchors")
    assert not report.ok
    assert (report.findings[0].kind, report.findings[0].first_seq, report.findings[0].last_seq) == (
        "missing",
        50,
        99,
    )


def test_prefix_removed_before_its_time_is_tampering(store: Store, tmp_path: Path) -> None:
    _seal_months(store, tmp_path / "anchors", [(2026, 9), (2026, 10), (2026, 11)])
    store.command("ALTER TABLE otel_audit.logs DROP PARTITION 202609")
    report = verify_origin(store, KEY.verifier(), tmp_path / "anchors")
    assert not report.ok and report.expired_records == 0
    assert ("missing", 0, 49) in [(f.kind, f.first_seq, f.last_seq) for f in report.findings]


def test_every_partition_boundary_has_a_checkpoint(store: Store, tmp_path: Path) -> None:
    _seal_months(store, tmp_path / "anchors", [(2020, 1), (2020, 2), (2020, 4)])
    sizes = {c.tree_size for c in store.checkpoints(KEY.name)}
    assert {50, 100, 150} <= sizes  # 50 and 100 are where February and April begin


def test_records_next_to_the_expired_prefix_still_have_proofs(store: Store, tmp_path: Path) -> None:
    """Retention drops whole months, not whole 16-leaf tiles: a retained record whose tile
    began in an expired month still gets an inclusion proof (its expired siblings come from
    the signed checkpoint at the boundary), and so does an export of every retained record."""
    _seal_months(store, tmp_path / "anchors", [(2017, 1), (2017, 2), (2017, 3), (2026, 10), (2026, 11)])
    store.command("ALTER TABLE otel_audit.logs DROP PARTITION 201701")  # as the TTL would
    store.command("ALTER TABLE otel_audit.logs DROP PARTITION 201702")
    store.command("ALTER TABLE otel_audit.logs DROP PARTITION 201703")
    assert store.seq_range(KEY.name)[1] == 150  # 150 = 9 * 16 + 6: tile 144..159 is cut
    key = KEY.verifier()
    for seq in (150, 151, 155, 159, 160, 249):
        assert inclusion_proof(store, KEY.name, seq, key).index == seq
    done = export(store, Search(), [key])
    assert done.records == 100
    report = verify_bundle(done.bundle, [key])
    assert report.ok and report.ranges == {KEY.name: [(150, 249)]}, report.findings
    assert consistency_proof(store, KEY.name, 150, None, key).new_size == 250
    with pytest.raises(StoreError, match="expired under retention"):
        consistency_proof(store, KEY.name, 100, None, key)  # its old tree is gone
