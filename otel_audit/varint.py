"""Base-128 varints: protobuf's integer encoding, and ClickHouse Native's LEB128 too.

The sealer writes one for every record's Seq and for every length it frames (otel_audit/
entry.py), and the store's Native blocks count columns and rows with them (backend/native.py),
so the common sizes are table lookups rather than a Python loop.
"""

from __future__ import annotations


def _varint_slow(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL_VARINTS = tuple(_varint_slow(n) for n in range(1 << 14))  # every length below 16 KiB
# The first two bytes of a longer varint, by its low 14 bits (both with the continuation bit).
_LOW_14_BITS = tuple(bytes(((n & 0x7F) | 0x80, (n >> 7) | 0x80)) for n in range(1 << 14))


def varint(n: int) -> bytes:
    """Protobuf's base-128 varint of a non-negative integer (unsigned LEB128, which
    ClickHouse's Native format uses too), 14 bits a table lookup: Seq takes one per record."""
    if n < 16384:
        return _SMALL_VARINTS[n]
    return _LOW_14_BITS[n & 0x3FFF] + varint(n >> 14)
