"""Test producers: the OTel Python SDK's own OTLP/gRPC exporter, nothing hand-made."""

from __future__ import annotations

from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource

DAY_NS = 86_400 * 10**9


def send_audit_events(
    endpoint: str,
    count: int,
    *,
    service: str = "orders",
    start: int = 0,
    compression: str | None = None,
    first_timestamp_ns: int | None = None,
    step_ns: int = 60 * 10**9,
) -> None:
    """Emit `count` audit events through a BatchLogRecordProcessor and flush them.

    Event i is by trader-(i % 7), succeeds unless i % 5 == 0, and concerns order/i; with
    `first_timestamp_ns` its Timestamp is first_timestamp_ns + (i - start) * step_ns.
    """
    from opentelemetry.exporter.otlp.proto.grpc.exporter import Compression

    exporter = OTLPLogExporter(
        endpoint=endpoint,
        insecure=True,
        compression=Compression.Gzip if compression == "gzip" else None,
    )
    provider = LoggerProvider(resource=Resource.create({"service.name": service}))
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter, max_queue_size=100_000))
    logger = provider.get_logger("otel_audit.tests", "1.0")
    for i in range(start, start + count):
        timestamp = None if first_timestamp_ns is None else first_timestamp_ns + (i - start) * step_ns
        logger.emit(
            LogRecord(
                timestamp=timestamp,
                body=f"order {i} placed",
                severity_number=SeverityNumber.INFO,
                severity_text="INFO",
                attributes={
                    "user.id": f"trader-{i % 7}",
                    "audit.action": "order.place",
                    "audit.outcome": "failure" if i % 5 == 0 else "success",
                    "audit.resource": f"order/{i}",
                    "n": i,
                },
                event_name="audit.order.place",
            )
        )
    assert provider.force_flush(60_000), "the SDK could not flush its records"
    provider.shutdown()
