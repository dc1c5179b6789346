"""What both OTLP receivers (gRPC and HTTP) do with a request: one pipeline, one Seq order,
whichever way a record came in.

The request's bytes go to a sealing worker (sealer/workers.py), which prepares its records
and rejects those it must (sealer/prepare.py); rejected records are answered through
partial_success (the client must not retry them), the rest are sealed and committed before
the answer. Errors propagate: RequestError (not a request: not retryable), BackpressureError
(queue full) and the other AuditErrors (store down, sealer stopping, a worker lost) are
retryable, and both receivers answer them from one table (sealer/outcomes.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

from .metrics import SealerMetrics
from .outcomes import INTERNAL, Outcome, outcome_of
from .pipeline import Pipeline
from .producer_gaps import ProducerTracker
from .workers import Workers

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 16 << 20  # the largest request either receiver takes, unless configured


@dataclass
class Intake:
    """How requests are taken in: prepared by `workers` (with their rules), every producer
    instance's numbering watched, rejections counted."""

    workers: Workers
    producers: ProducerTracker = field(default_factory=ProducerTracker)
    metrics: SealerMetrics | None = None

    def rejected(self, reason: str, count: int = 1) -> None:
        if self.metrics is not None:
            self.metrics.rejected.labels(reason).inc(count)

    def refused(self, exc: BaseException, protocol: str) -> Outcome:
        """How a call that raised `exc` is answered (sealer/outcomes.py), counted under its
        reason; an error nobody foresaw is logged with its traceback (call it in the handler)."""
        outcome = outcome_of(exc)
        if outcome is INTERNAL:
            log.exception("%s export failed", protocol)
        if outcome.reason is not None:
            self.rejected(outcome.reason)
        return outcome


def export(
    pipeline: Pipeline, intake: Intake, request: bytes, producer: str = ""
) -> ExportLogsServiceResponse:
    """Seal a serialized ExportLogsServiceRequest's records (blocking until committed) and
    build the answer. `producer` is the authenticated sender ("" when anonymous)."""
    batch = None
    with pipeline.arriving():  # the writer may wait for these records to share an INSERT
        prepared = intake.workers.prepare(request)
        for rejection in prepared.rejected:
            intake.rejected(rejection.reason)
        for instance, seq in prepared.producer_seqs:
            intake.producers.observe(instance, seq)
        if prepared.count:
            masking = intake.workers.rules.masking
            batch = pipeline.submit(prepared, producer, masking.identity if masking else "")
    if batch is not None:
        batch.wait()  # until committed
    return response_for([rejection.message for rejection in prepared.rejected])


def response_for(rejected: Sequence[str]) -> ExportLogsServiceResponse:
    response = ExportLogsServiceResponse()
    if rejected:
        response.partial_success.rejected_log_records = len(rejected)
        more = f" (and {len(rejected) - 1} more)" if len(rejected) > 1 else ""
        response.partial_success.error_message = f"{len(rejected)} record(s) rejected: {rejected[0]}{more}"
    return response
