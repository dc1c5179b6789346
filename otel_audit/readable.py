"""Records as people and programs read them: one dict per record, rendered as JSON lines,
CSV and HTML.

Every rendering is a pure, deterministic function of the records, so `verify-bundle` can
render the entries it has just checked and compare the bundle's readable files byte for
byte: a readable file that says something its entries do not is caught, not trusted.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

from . import attributes as attr
from .columns import DerivedRow

# The CSV/HTML columns, in order; JSON lines carry every key of `record_dict`.
TABLE_COLUMNS = (
    "timestamp", "origin", "seq", "service", "actor", "action", "outcome", "resource",
    "event_name", "severity", "body", "attributes", "sealed_at",
)  # fmt: skip


def iso_ns(ns: int) -> str:
    """RFC 3339 UTC with all nine digits of nanoseconds: 2026-03-03T14:05:06.123456789Z."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{fraction:09d}Z"


def record_dict(row: Sequence[object], leaf_hash: bytes | None = None) -> dict[str, object]:
    """A record's readable form from its derived columns (otel_audit/columns.py: DerivedRow,
    or a plain row of DERIVED_COLUMNS)."""
    c = DerivedRow._make(row)
    log_attributes = c.LogAttributes
    out: dict[str, object] = {
        "origin": c.Origin,
        "seq": c.Seq,
        "sealed_at": iso_ns(c.SealedAt),
        "timestamp": iso_ns(c.Timestamp),
        "service": c.ServiceName,
        "actor": log_attributes.get(attr.ACTOR, ""),
        "action": log_attributes.get(attr.ACTION, ""),
        "outcome": log_attributes.get(attr.OUTCOME, ""),
        "resource": log_attributes.get(attr.RESOURCE, ""),
        "event_name": c.EventName,
        "severity": c.SeverityText,
        "severity_number": c.SeverityNumber,
        "body": c.Body,
        "attributes": dict(sorted(log_attributes.items())),
        "resource_attributes": dict(sorted(c.ResourceAttributes.items())),
        "scope_name": c.ScopeName,
        "scope_version": c.ScopeVersion,
        "trace_id": c.TraceId,
        "span_id": c.SpanId,
        "producer": c.Producer,
    }
    if leaf_hash is not None:
        out["leaf_hash"] = leaf_hash.hex()
    return out


def _cell(value: object) -> str:
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return str(value)


def json_line(record: Mapping[str, object]) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Rows:
    """The records' lines in each readable format, without the files' headers.

    Rendering is per record, so chunks rendered apart (in worker processes) concatenate to
    exactly what rendering all records at once gives.
    """

    jsonl: str = ""
    csv: str = ""
    html: str = ""

    def __add__(self, other: Rows) -> Rows:
        return Rows(self.jsonl + other.jsonl, self.csv + other.csv, self.html + other.html)


def render_rows(records: Sequence[Mapping[str, object]]) -> Rows:
    jsonl, rows = [], []
    for record in records:
        jsonl.append(json_line(record) + "\n")
        rows.append([_cell(record[name]) for name in TABLE_COLUMNS])
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    html_rows = "".join(map(_html_row, rows))
    return Rows("".join(jsonl), buffer.getvalue(), html_rows)


def _html_row(cells: Sequence[str]) -> str:
    """<tr><td>cell</td>...</tr>: the cells escaped in one call, joined by a NUL that
    escaping leaves alone (a cell that holds a NUL itself is escaped on its own)."""
    joined = "\x00".join(cells)
    if joined.count("\x00") == len(cells) - 1:
        return "<tr><td>" + escape(joined).replace("\x00", "</td><td>") + "</td></tr>\n"
    return "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>\n"


def readable_files(rows: Rows, title: str) -> dict[str, bytes]:
    """records.jsonl, records.csv and records.html from rendered rows."""
    header = io.StringIO()
    csv.writer(header, lineterminator="\n").writerow(TABLE_COLUMNS)
    head = "".join(f"<th>{escape(name)}</th>" for name in TABLE_COLUMNS)
    page = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title>"
        "<style>table{border-collapse:collapse}td,th{border:1px solid #999;padding:2px 6px;"
        "vertical-align:top;font-family:monospace}</style></head><body>\n"
        f"<h1>{escape(title)}</h1>\n<table>\n<tr>{head}</tr>\n{rows.html}</table>\n</body></html>\n"
    )
    return {
        "records.jsonl": rows.jsonl.encode(),
        "records.csv": (header.getvalue() + rows.csv).encode(),
        "records.html": page.encode(),
    }
