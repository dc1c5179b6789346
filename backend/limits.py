"""What the columns of otel_audit.logs can hold: each limit of the store, written down once.

The sealer checks every record against these before sealing it (sealer/prepare.py), so that
a value the store cannot hold is refused for that record alone, with a message naming the
field, instead of failing the INSERT that carries other producers' records too. Each number
comes from a column's type in backend/sql/001_schema.sql and ClickHouse's documentation of
that type (docs: sql-reference/data-types):

- TimestampTime is `DateTime`: UInt32 seconds since the epoch, so 2106-02-07T06:28:15Z at the
  latest. It is Timestamp's second (otel_audit/derivation.py: the Timestamp rule), so the record
  time that becomes Timestamp (its time_unix_nano, else its observed_time_unix_nano) must
  fall in or before that second.
- ObservedTimestamp, Timestamp and SealedAt are `DateTime64(9)`: Int64 nanoseconds, so
  2^63 - 1 ns (2262-04-11T23:47:16.854775807Z) at the latest. OTLP times are fixed64 (up to
  2^64 - 1), and never before the epoch, so only the upper bound can be crossed.
- SeverityNumber is `UInt8` (0 to 255); OTLP's severity_number is an int32 enum.

Not limits, on purpose: TraceFlags (`UInt8`) holds the trace-flags byte of OTLP's fixed32
`flags` (LOG_RECORD_FLAGS_TRACE_FLAGS_MASK, 0xFF), as the Collector's exporter stores it; the
other bits are reserved by OTLP and kept in the entry. Strings and maps are bounded by the
receivers' message limit (16 MiB, sealer/config.py): even rendered as JSON (a Body or an
attribute value that is an array or a map; a control character becomes a six-byte backslash-u00XX
escape) no value comes near the Native format's 1 GiB string and array limits
(format_binary_max_string_size, format_binary_max_array_size). Nesting is bounded by
protobuf's parser (no more than 100 messages deep; sealer/salvage.py refuses a record past
it alone), and an entry is one level shallower than the request it came in, so every sealed
entry decodes again.

The engine's error codes that say the rows themselves are bad (a value it cannot parse or
convert, out of its type's range: sending them again cannot help) are in backend/error_codes.py,
with every other code the store's errors are told apart by.
"""

from __future__ import annotations

from datetime import UTC, datetime

NS_PER_SECOND = 1_000_000_000
TIMESTAMP_TIME_MAX_S = 2**32 - 1  # DateTime: UInt32 seconds
LATEST_TIMESTAMP_NS = (TIMESTAMP_TIME_MAX_S + 1) * NS_PER_SECOND - 1  # its last second's last ns
LATEST_DATETIME64_NS = 2**63 - 1  # DateTime64(9): Int64 nanoseconds
UINT8_MAX = 255


def _utc(ns: int) -> str:
    seconds = ns // NS_PER_SECOND
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def timestamp_error(ns: int) -> str | None:
    """Why a record time cannot be the store's Timestamp (and TimestampTime), or None."""
    if ns <= LATEST_TIMESTAMP_NS:
        return None
    return (
        f"{ns} ns is after {_utc(LATEST_TIMESTAMP_NS)}, the latest time the store's "
        "TimestampTime column can hold"
    )


def datetime64_error(ns: int, column: str) -> str | None:
    """Why a time in nanoseconds cannot be stored in a DateTime64(9) column, or None."""
    if ns <= LATEST_DATETIME64_NS:
        return None
    return (
        f"{ns} ns is after {_utc(LATEST_DATETIME64_NS)}, the latest time the store's "
        f"{column} column (DateTime64(9), Int64 nanoseconds) can hold"
    )


def uint8_error(value: int, column: str) -> str | None:
    """Why an integer cannot be stored in a UInt8 column, or None."""
    if 0 <= value <= UINT8_MAX:
        return None
    return f"{value} is outside 0..{UINT8_MAX}, what the store's {column} column (UInt8) can hold"
