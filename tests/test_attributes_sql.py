"""The rule of what an audit event is exists once: its SQL form (otel_audit/attributes.py) decides every
case as the Python predicate does, on real chDB, over the column types of otel_audit.logs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from backend.store import Store
from otel_audit import attributes as attr

COMPLETE = {attr.ACTOR: "trader-7", attr.ACTION: "order.place", attr.OUTCOME: "success"}
CASES = [
    ("audit", {}),
    ("audit.order.place", {}),
    ("audit.", {}),
    ("auditor", {}),
    ("Audit.order", {}),
    ("", {}),
    ("orders.log", {"user.id": "u"}),
    ("", {attr.ACTION: "order.place"}),
    ("", {"audit.": ""}),
    ("", {"x.audit.y": "1"}),
    ("", {"auditx": "1"}),
    ("audit.order.place", COMPLETE),
    ("", COMPLETE),
    ("audit", {**COMPLETE, attr.OUTCOME: ""}),
    ("audit.x", {attr.ACTOR: "u", attr.ACTION: "a"}),
    ("plain", {attr.ACTOR: "", attr.ACTION: "", attr.OUTCOME: ""}),
    ("plain", {attr.RESOURCE: "order/1"}),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    opened = Store.open(f"chdb://{tmp_path_factory.mktemp('attributes_sql') / 'store'}")
    yield opened
    opened.close()


def _engine(store: Store, expression: str) -> list[bool]:
    """The expression over every case, as stored columns, in one query."""
    rows, params = [], {}
    for i, (event_name, attributes) in enumerate(CASES):
        rows.append(
            f"SELECT {i} AS i, {{n{i}:String}} AS EventName, CAST(mapFromArrays({{k{i}:Array(String)}}, "
            f"{{v{i}:Array(String)}}), 'Map(LowCardinality(String), String)') AS LogAttributes"
        )
        params.update({f"n{i}": event_name, f"k{i}": list(attributes), f"v{i}": list(attributes.values())})
    union = " UNION ALL ".join(rows)
    return [bool(v) for (v,) in store.select(f"SELECT {expression} FROM ({union}) ORDER BY i", params)]


def test_is_audit_event_sql_agrees_with_python(store: Store) -> None:
    expected = [attr.is_audit_event(n, a) for n, a in CASES]
    assert _engine(store, attr.is_audit_event_sql()) == expected


def test_incomplete_audit_event_sql_agrees_with_python(store: Store) -> None:
    expected = [attr.missing_fields(n, a) != [] for n, a in CASES]
    assert _engine(store, attr.incomplete_audit_event_sql()) == expected


def test_the_cases_cover_both_answers() -> None:
    """The table is not one-sided: some cases are audit events and some are not, some complete."""
    assert {attr.is_audit_event(n, a) for n, a in CASES} == {True, False}
    assert {attr.missing_fields(n, a) != [] for n, a in CASES} == {True, False}
