"""What both OTLP receivers (gRPC and HTTP) do with a decoded request: one pipeline, one
Seq order, whichever way a record came in.

Records with reserved ``otel_audit.*`` attributes, and (by default) audit events without an
actor, action or outcome (otel_audit/attributes.py), are rejected through partial_success
(the client must not retry them); the rest are sealed and committed before the answer. Errors
from the pipeline propagate: BackpressureError (queue full) and StoreUnavailableError (store
down, sealer stopping) are retryable, and each receiver maps them to its protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

from otel_audit import attributes as attr
from otel_audit.entry import Context, attributes_as_map, reserved_attribute

from .masking import Masking
from .metrics import SealerMetrics
from .pipeline import Item, Pipeline
from .producers import ProducerTracker


@dataclass
class Intake:
    """What the sealer accepts: `incomplete` audit events are "reject"ed (default) or "seal"ed
    (and reported by verify and status); every producer instance's numbering is watched;
    `masking` rules rewrite sensitive attributes before sealing."""

    incomplete: str = "reject"
    producers: ProducerTracker = field(default_factory=ProducerTracker)
    masking: Masking | None = None
    metrics: SealerMetrics | None = None

    def rejected(self, reason: str, count: int = 1) -> None:
        if self.metrics is not None:
            self.metrics.rejected.labels(reason).inc(count)


def export(
    pipeline: Pipeline, request: ExportLogsServiceRequest, producer: str = "", intake: Intake | None = None
) -> ExportLogsServiceResponse:
    """Seal a request's records (blocking until committed) and build the answer. `producer`
    is the authenticated sender ("" when anonymous)."""
    intake = intake or Intake()
    items, rejected = prepare(request, intake)
    if items:
        pipeline.seal(items, producer, intake.masking.identity if intake.masking else "")
    return response_for(rejected)


def prepare(request: ExportLogsServiceRequest, intake: Intake) -> tuple[list[Item], list[str]]:
    """Split a request into sealable records and the reasons others were rejected."""
    items: list[Item] = []
    rejected: list[str] = []
    for resource_logs in request.resource_logs:
        for scope_logs in resource_logs.scope_logs:
            if not scope_logs.log_records:
                continue
            context = Context(resource_logs, scope_logs)
            for record in scope_logs.log_records:
                attributes = attributes_as_map(record.attributes)
                key = reserved_attribute(attributes)
                if key is not None:
                    intake.rejected("reserved_attribute")
                    rejected.append(
                        f"attribute {key!r} uses the reserved otel_audit. prefix, which only "
                        "the sealer may set"
                    )
                    continue
                if intake.masking is not None:
                    intake.masking.apply(record, attributes)
                missing = attr.missing_fields(record.event_name, attributes)
                if missing and intake.incomplete == "reject":
                    intake.rejected("incomplete_audit_event")
                    rejected.append(
                        f"audit event without {', '.join(missing)} (required: actor, action, outcome)"
                    )
                    continue
                instance = attributes.get(attr.PRODUCER_INSTANCE)
                if instance:
                    intake.producers.observe(instance, attributes.get(attr.PRODUCER_SEQ, ""))
                items.append((context, record, attributes))
    return items, rejected


def response_for(rejected: Sequence[str]) -> ExportLogsServiceResponse:
    response = ExportLogsServiceResponse()
    if rejected:
        response.partial_success.rejected_log_records = len(rejected)
        more = f" (and {len(rejected) - 1} more)" if len(rejected) > 1 else ""
        response.partial_success.error_message = f"{len(rejected)} record(s) rejected: {rejected[0]}{more}"
    return response
