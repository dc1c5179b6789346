"""The log's partitions and their retention: the one home of both rules.

A partition of otel_audit.logs is a month of SealedAt, in the store's time zone. Seq grows with
SealedAt, so every partition is a contiguous Seq range of each origin, and retention expires
whole partitions: every row of a month gets the same expiry, the start of the next month plus
the retention period, so an expired prefix never cuts a month. The sealer signs a checkpoint at
every partition boundary (`partition_of` tells it when one is crossed), from which `verify`
proves the rest of the log after an expired prefix.

FINRA Rule 4511 asks for six years (MINIMUM_RETENTION_YEARS); the default is seven. The schema
files say ${partition_key} and ${retention_ttl} where they need these rules
(backend/migrations.py fills them in), `migrate --retention-years` and the verifier's own
policy read the same names.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

PARTITION_KEY = "toYYYYMM(SealedAt)"
DEFAULT_RETENTION_YEARS = 7
MINIMUM_RETENTION_YEARS = 6


def partition_of(sealed_at_ns: int, timezone: tzinfo) -> str:
    """PARTITION_KEY in Python: toYYYYMM(SealedAt) as the store computes it in `timezone`.

    Whole seconds, floored as the engine does: a float of the nanoseconds rounds the last
    fraction of a microsecond before midnight into the next second, and so into the next month
    at a month's end, where the boundary checkpoint would then be missed.
    """
    return datetime.fromtimestamp(sealed_at_ns // 10**9, timezone).strftime("%Y%m")


def retention_ttl(years: int) -> str:
    """The table TTL that expires each partition whole, `years` after its month ends."""
    return f"toStartOfMonth(toDateTime(SealedAt)) + toIntervalMonth(1) + toIntervalYear({int(years)})"
