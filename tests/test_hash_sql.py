"""The SQL form of the leaf and chain rules gives the same bytes as the Python rule, on real chDB.

otel_audit/merkle.py `hash_leaf_sql` and otel_audit/chain.py `chain_next_sql` are what the
engine runs to check every stored row (backend/store.py `row_anomalies`). Here both forms hash
the RFC 6962 leaf inputs (published leaf hashes of transparency-dev/merkle, tests/test_merkle.py)
and random bytes, including every single byte value and a NUL-only entry.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from backend.store import Store
from otel_audit.chain import CHAIN_START, chain_next, chain_next_sql
from otel_audit.merkle import hash_leaf, hash_leaf_sql

from .test_merkle import LEAF_HASHES, LEAF_INPUTS

_RNG = random.Random(9162)
ENTRIES = [*LEAF_INPUTS, bytes(range(256)), b"\x00" * 33, _RNG.randbytes(5000)]
CHAIN_PAIRS = [
    (CHAIN_START, LEAF_HASHES[0]),
    *((_RNG.randbytes(32), _RNG.randbytes(32)) for _ in range(4)),
    (b"\x00" * 31 + b"\x01", b"\xff" * 32),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    opened = Store.open(f"chdb://{tmp_path_factory.mktemp('hash_sql') / 'store'}")
    yield opened
    opened.close()


def _engine_hash(store: Store, expression: str, values: dict[str, bytes]) -> bytes:
    params = {name: value.hex() for name, value in values.items()}
    (digest,) = store.select(f"SELECT hex({expression})", params)[0]
    return bytes.fromhex(digest)


def test_leaf_hash_sql_matches_the_published_vectors(store: Store) -> None:
    for entry, published in zip(LEAF_INPUTS, LEAF_HASHES, strict=True):
        assert _engine_hash(store, hash_leaf_sql("unhex({e:String})"), {"e": entry}) == published


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: f"{len(e)}B")
def test_leaf_hash_sql_matches_python(store: Store, entry: bytes) -> None:
    assert _engine_hash(store, hash_leaf_sql("unhex({e:String})"), {"e": entry}) == hash_leaf(entry)


@pytest.mark.parametrize("previous, leaf", CHAIN_PAIRS)
def test_chain_next_sql_matches_python(store: Store, previous: bytes, leaf: bytes) -> None:
    fixed = "toFixedString(unhex({%s:String}), 32)"  # the columns' type: FixedString(32)
    expression = chain_next_sql(fixed % "p", fixed % "l")
    assert _engine_hash(store, expression, {"p": previous, "l": leaf}) == chain_next(previous, leaf)
