"""The partition rule in Python (`partition_of`, which tells the sealer when it crosses into a
new partition) gives the month the engine files a row under (`PARTITION_KEY`), on real chDB,
around month and year boundaries in the store's time zone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from backend.partitions import PARTITION_KEY, partition_of, retention_ttl
from backend.store import Store


def _ns(*when: int) -> int:
    return int(datetime(*when, tzinfo=UTC).timestamp()) * 10**9  # type: ignore[misc]


BOUNDARIES = [_ns(2026, 1, 1), _ns(2026, 2, 28, 23, 59, 59), _ns(2026, 3, 1), _ns(2017, 12, 31, 23, 59, 59)]
SEALED_AT = sorted({ns + delta for ns in BOUNDARIES for delta in (-(10**9), -1, 0, 1, 10**9)} | {0})


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    opened = Store.open(f"chdb://{tmp_path_factory.mktemp('partitions') / 'store'}")
    yield opened
    opened.close()


def test_partition_of_is_the_engines_partition_key(store: Store) -> None:
    zone = ZoneInfo(store.timezone())
    rows = store.select(
        f"SELECT toString({PARTITION_KEY}) FROM (SELECT fromUnixTimestamp64Nano(toInt64(arrayJoin("
        "{t:Array(Int64)}))) AS SealedAt) ORDER BY SealedAt",
        {"t": SEALED_AT},
    )
    engine = [month for (month,) in rows]
    assert engine == [partition_of(ns, zone) for ns in SEALED_AT]
    assert len(set(engine)) > 4  # the values do straddle the boundaries


def test_retention_ttl_expires_a_month_whole(store: Store) -> None:
    """Every row of a month expires at the same instant: the next month's start plus the years."""
    expiry = retention_ttl(7).replace("SealedAt", "toDateTime64({t:String}, 9, 'UTC')")
    for sealed in ("2026-03-01 00:00:00", "2026-03-17 12:00:00", "2026-03-31 23:59:59.999999999"):
        (when,) = store.select(f"SELECT toString({expiry})", {"t": sealed})[0]
        assert when.startswith("2033-04-01"), (sealed, when)
