"""One OTLP request made ready for sealing: all the per-record work that does not need a Seq.

This is most of the cost of sealing, in Python: reading each record's attributes, checking
them, deriving its columns, encoding them for the store and serializing the record. It runs
in the sealing workers (sealer/workers.py), processes of their own, so that it uses every
core instead of queueing for the sealer's one interpreter lock. What is left for the sealer
is short: give each record its Seq, splice the seal attributes into its bytes (otel_audit/
entry.py: EntryFrame, SealEncoder), hash and chain it, and encode the seal columns.

Records with reserved ``otel_audit.*`` attributes, and (by default) audit events without an
actor, action or outcome (otel_audit/attributes.py), are rejected here, each with its reason.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from backend.native import Columns
from otel_audit import attributes as attr
from otel_audit.entry import (
    RECORD_COLUMNS,
    Context,
    EntryFrame,
    attributes_as_map,
    record_timestamp,
    record_values,
    reserved_attribute,
    split_record,
)
from otel_audit.errors import AuditError

from .masking import Masking


class RequestError(AuditError):
    """The request is not an OTLP ExportLogsServiceRequest; sending it again will not help."""


# The columns made here, with the types they are sent as (the engine converts to the table's:
# LowCardinality dictionaries, for one, are built by the engine, in C++).
_SENT_AS = {"ObservedTimestamp": "DateTime64(9)", "TraceFlags": "UInt8", "SeverityNumber": "UInt8"}
_SENT_AS |= dict.fromkeys(("ResourceAttributes", "ScopeAttributes", "LogAttributes"), "Map(String, String)")
PREPARED_COLUMNS = Columns(RECORD_COLUMNS, tuple(_SENT_AS.get(name, "String") for name in RECORD_COLUMNS))


@dataclass(frozen=True)
class Rules:
    """What preparing needs to know, fixed when the sealer starts (sent to every worker)."""

    incomplete: str = "reject"  # audit events without actor/action/outcome: reject | seal
    masking: Masking | None = None


@dataclass(frozen=True)
class Rejection:
    reason: str  # the metric's label: reserved_attribute | incomplete_audit_event
    message: str


@dataclass
class Prepared:
    """A request's accepted records, in order, as the sealer takes them.

    Record i of a group is `frame.entry(befores[i], seal, afters[i])` once sealed.
    `timestamps` is each record's own time in nanoseconds (record_timestamp), 0 when it has
    none (the sealer derives the Timestamp columns); `columns` is RECORD_COLUMNS, encoded.
    """

    count: int = 0
    groups: list[tuple[EntryFrame, list[bytes], list[bytes]]] = field(default_factory=list)
    timestamps: array = field(default_factory=lambda: array("q"))
    columns: bytes = b""
    rejected: list[Rejection] = field(default_factory=list)
    producer_seqs: list[tuple[str, str]] = field(default_factory=list)  # (instance, seq) seen


def prepare_request(raw: bytes, rules: Rules) -> Prepared:
    """Decode a serialized ExportLogsServiceRequest and prepare its records (RequestError if
    it cannot be decoded)."""
    try:
        request = ExportLogsServiceRequest.FromString(raw)
    except DecodeError as exc:
        raise RequestError(f"request is not a valid OTLP ExportLogsServiceRequest: {exc}") from None
    out = Prepared()
    rows = []
    for resource_logs in request.resource_logs:
        for scope_logs in resource_logs.scope_logs:
            if not scope_logs.log_records:
                continue
            context = Context(resource_logs, scope_logs)
            befores: list[bytes] = []
            afters: list[bytes] = []
            for record in scope_logs.log_records:
                attributes = attributes_as_map(record.attributes)
                rejection = _rejection(record, attributes, rules)
                if rejection is not None:
                    out.rejected.append(rejection)
                    continue
                instance = attributes.get(attr.PRODUCER_INSTANCE)
                if instance:
                    out.producer_seqs.append((instance, attributes.get(attr.PRODUCER_SEQ, "")))
                rows.append(record_values(context.shared, record, attributes))
                out.timestamps.append(record_timestamp(record))
                before, after = split_record(record)
                befores.append(before)
                afters.append(after)
            if befores:
                out.groups.append((context.frame, befores, afters))
    out.count = len(rows)
    if rows:
        out.columns = PREPARED_COLUMNS.encode(list(zip(*rows)))
    return out


def _rejection(record: LogRecord, attributes: dict[str, str], rules: Rules) -> Rejection | None:
    """Why a record is refused, or None; masks an accepted record's attributes in place."""
    key = reserved_attribute(attributes)
    if key is not None:
        return Rejection(
            "reserved_attribute",
            f"attribute {key!r} uses the reserved otel_audit. prefix, which only the sealer may set",
        )
    if rules.masking is not None:
        rules.masking.apply(record, attributes)
    missing = attr.missing_fields(record.event_name, attributes)
    if missing and rules.incomplete == "reject":
        return Rejection(
            "incomplete_audit_event",
            f"audit event without {', '.join(missing)} (required: actor, action, outcome)",
        )
    return None
