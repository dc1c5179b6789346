"""The hash chain over leaf hashes (DESIGN.md, "Formats").

chain[i] = SHA-256(chain[i-1] || leaf_hash[i]), chain[-1] = 32 zero bytes. The chain lets a
reader check a contiguous run of rows without the tree, and its head is carried in every
checkpoint as an extension line.
"""

from __future__ import annotations

import hashlib

CHAIN_START = bytes(32)


def chain_next(previous: bytes, leaf_hash: bytes) -> bytes:
    return hashlib.sha256(previous + leaf_hash).digest()
