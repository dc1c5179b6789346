"""The hash chain over leaf hashes (DESIGN.md, "Formats").

chain[i] = SHA-256(chain[i-1] || leaf_hash[i]), chain[-1] = 32 zero bytes. The chain lets a
reader check a contiguous run of rows without the tree, and its head is carried in every
checkpoint as an extension line.
"""

from __future__ import annotations

import hashlib

CHAIN_START = bytes(32)


def chain_next(previous: bytes, leaf_hash: bytes) -> bytes:
    """chain[i] from chain[i-1] and leaf_hash[i]."""
    return hashlib.sha256(previous + leaf_hash).digest()


def chain_next_sql(previous: str, leaf_hash: str) -> str:
    """`chain_next` as a ClickHouse expression over two FixedString(32) expressions.

    The same rule, not a second one: the engine checks every stored row's ChainHash in one
    ordered scan (backend/store.py `row_anomalies`); tests/test_hash_sql.py checks both give
    the same bytes.
    """
    return f"SHA256(concat({previous}, {leaf_hash}))"
