"""One OTLP request made ready for sealing: all the per-record work that does not need a Seq.

This is most of the cost of sealing, in Python: reading each record's attributes, checking
them, deriving its columns, encoding them for the store and serializing the record. It runs
in the sealing workers (sealer/workers.py), processes of their own, so that it uses every
core instead of queueing for the sealer's one interpreter lock. What is left for the sealer
is short: give each record its Seq, splice the seal attributes into its bytes (otel_audit/
entry.py: EntryFrame, SealEncoder), hash and chain it, and encode the seal columns.

Records are rejected here, each with its reason and the path of the field it names
(``resource_logs[0].scope_logs[0].log_records[3].time_unix_nano: ...``), so that nothing one
record holds can fail the INSERT it would share with other producers' records:

- a reserved ``otel_audit.*`` key (only the sealer sets those) as a record attribute, as the
  event name, or in the resource or scope attributes (then every record of that resource or
  scope is refused: they would all show that key beside the real producer);
- a value the store cannot hold (backend/limits.py: times after 2106, severity outside a
  byte), or a trace or span id of the wrong length;
- a record, resource or scope that protobuf cannot decode (invalid UTF-8, nested too deep):
  only it is refused, not the request around it (sealer/salvage.py);
- by default, audit events without an actor, action or outcome (otel_audit/attributes.py).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from backend import limits
from backend.native import Columns
from otel_audit import attributes as attr
from otel_audit.columns import RECORD_COLUMNS
from otel_audit.derivation import record_timestamp, record_timestamp_field, record_values
from otel_audit.entry import SEAL_PREFIX, Context, EntryFrame, reserved_attribute, split_record
from otel_audit.errors import RequestError, StoreDataError
from otel_audit.value_strings import attributes_as_map

from .masking import Masking
from .salvage import salvage

# The columns made here (otel_audit/columns.py: Source.RECORD), with the types they are sent as.
PREPARED_COLUMNS = Columns.of(RECORD_COLUMNS)


@dataclass(frozen=True)
class Rules:
    """What preparing needs to know, fixed when the sealer starts (sent to every worker)."""

    incomplete: str = "reject"  # audit events without actor/action/outcome: reject | seal
    masking: Masking | None = None


@dataclass(frozen=True)
class Rejection:
    # the metric's label: undecodable, reserved_attribute, out_of_range, invalid_id, incomplete_audit_event
    reason: str
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
    broken: dict[str, str] = {}  # what protobuf refused, by path (sealer/salvage.py)
    try:
        request = ExportLogsServiceRequest.FromString(raw)
    except DecodeError as exc:
        try:
            request, broken = salvage(raw)
        except DecodeError:
            raise RequestError(f"request is not a valid OTLP ExportLogsServiceRequest: {exc}") from None
    out = Prepared()
    rows = []
    for r, resource_logs in enumerate(request.resource_logs):
        for s, scope_logs in enumerate(resource_logs.scope_logs):
            if not scope_logs.log_records:
                continue
            context = Context(resource_logs, scope_logs)
            where = f"resource_logs[{r}].scope_logs[{s}]"
            shared = _shared_rejection(context, f"resource_logs[{r}]", where, broken)
            if shared is not None:
                out.rejected += [shared] * len(scope_logs.log_records)
                continue
            befores: list[bytes] = []
            afters: list[bytes] = []
            for i, record in enumerate(scope_logs.log_records):
                path = f"{where}.log_records[{i}]"
                if path in broken:
                    out.rejected.append(Rejection("undecodable", f"{path}: {broken[path]}"))
                    continue
                attributes = attributes_as_map(record.attributes)
                rejection = _rejection(record, attributes, rules, path)
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
        try:
            out.columns = PREPARED_COLUMNS.encode(list(zip(*rows)))
        except StoreDataError as exc:  # a limit _out_of_range does not know: refuse this request
            raise RequestError(f"request holds a value the store cannot hold: {exc}") from None
    return out


_RESERVED = "uses the reserved otel_audit. prefix, which only the sealer may set"


def _shared_rejection(
    context: Context, resource: str, scope: str, broken: dict[str, str]
) -> Rejection | None:
    """Why every record of a ScopeLogs is refused (its resource or scope cannot be decoded,
    or carries a reserved key), or None."""
    for where in (resource, scope):
        if where in broken:
            return Rejection("undecodable", f"{where}: {broken[where]}; every record under it is refused")
    resource_attrs, scope_attrs = context.shared.ResourceAttributes, context.shared.ScopeAttributes
    for where, attributes in ((f"{resource}.resource", resource_attrs), (f"{scope}.scope", scope_attrs)):
        key = reserved_attribute(attributes)
        if key is not None:
            return Rejection(
                "reserved_attribute",
                f"{where}.attributes: key {key!r} {_RESERVED}; every record under it is refused",
            )
    return None


def _rejection(record: LogRecord, attributes: dict[str, str], rules: Rules, path: str) -> Rejection | None:
    """Why a record is refused, or None; masks an accepted record's attributes in place."""
    key = reserved_attribute(attributes)
    if key is not None:
        return Rejection("reserved_attribute", f"{path}.attributes: key {key!r} {_RESERVED}")
    if record.event_name.startswith(SEAL_PREFIX):
        return Rejection("reserved_attribute", f"{path}.event_name: {record.event_name!r} {_RESERVED}")
    problem = _out_of_range(record, path) or _invalid_id(record, path)
    if problem is not None:
        return problem
    if rules.masking is not None:
        rules.masking.apply(record, attributes)
    missing = attr.missing_fields(record.event_name, attributes)
    if missing and rules.incomplete == "reject":
        return Rejection(
            "incomplete_audit_event",
            f"{path}: audit event without {', '.join(missing)} (required: actor, action, outcome)",
        )
    return None


def _out_of_range(record: LogRecord, path: str) -> Rejection | None:
    """A value of the record that a column it is stored in cannot hold (backend/limits.py)."""
    latest = limits.LATEST_TIMESTAMP_NS
    if (
        record.time_unix_nano <= latest
        and record.observed_time_unix_nano <= latest
        and 0 <= record.severity_number <= limits.UINT8_MAX
    ):
        return None  # the common case, in a few comparisons
    # The record's own time becomes Timestamp and TimestampTime (otel_audit/derivation.py).
    checks = (
        (record_timestamp_field(record), limits.timestamp_error(record_timestamp(record))),
        (
            "observed_time_unix_nano",
            limits.datetime64_error(record.observed_time_unix_nano, "ObservedTimestamp"),
        ),
        ("severity_number", limits.uint8_error(record.severity_number, "SeverityNumber")),
    )
    for name, error in checks:
        if error is not None:
            return Rejection("out_of_range", f"{path}.{name}: {error}")
    return None


# OTLP (opentelemetry-proto logs.proto): a trace id is 16 bytes, a span id 8, or empty.
_ID_BYTES = {"trace_id": 16, "span_id": 8}


def _invalid_id(record: LogRecord, path: str) -> Rejection | None:
    for name, value in (("trace_id", record.trace_id), ("span_id", record.span_id)):
        size = _ID_BYTES[name]
        if value and len(value) != size:
            return Rejection(
                "invalid_id", f"{path}.{name}: {len(value)} bytes; OTLP {name}s are {size} bytes, or empty"
            )
    return None
