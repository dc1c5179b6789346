"""The otel_audit SDK: audit events from Python services, on top of the OpenTelemetry SDK.

    from otel_audit import sdk

    audit = sdk.setup(service="orders")                 # OTLP/gRPC to 127.0.0.1:4317
    audit.event(action="order.place", actor="trader-7", resource="order/42", outcome="success",
                quantity=100)
    with audit.action("order.cancel", actor="trader-7", resource="order/42"):
        cancel(42)                                      # success, or failure with error.type
    audit.shutdown()                                    # flushes; reports what it could not send

Attribute names are those of otel_audit/attributes.py (OpenTelemetry semantic conventions
where they exist, `audit.*` where they do not); keyword details become `audit.<name>`.

Delivery is lossless where the OTel SDK's BatchLogRecordProcessor is not: that one drops the
oldest records when its queue is full and loses a batch whose export failed.
LosslessLogRecordProcessor instead blocks the emitting thread while its queue is full,
retries a failed batch with exponential back-off until it is accepted, flushes on shutdown
and reports (and returns) whatever it could not deliver before the shutdown deadline. It also
stamps every record with this process's instance id and a sequence number, from which the
sealer and `verify` report lost (gaps) and repeated (duplicates) events per instance.
"""

from __future__ import annotations

import copy
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import wraps
from typing import Any, TypeVar

from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.context import Context
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.resources import Resource

from . import attributes as attr

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


class LosslessLogRecordProcessor(LogRecordProcessor):
    """Batches records to an exporter without ever dropping one (see the module docstring)."""

    def __init__(
        self,
        exporter: LogRecordExporter,
        *,
        max_queue_size: int = 10_000,
        max_batch_size: int = 512,
        schedule_delay_seconds: float = 0.5,
        max_backoff_seconds: float = 30.0,
        instance_id: str | None = None,
    ) -> None:
        self.instance_id = instance_id or str(uuid.uuid4())
        self._exporter = exporter
        self._queue: queue.Queue[ReadableLogRecord] = queue.Queue(max_queue_size)
        self._batch_size = max_batch_size
        self._delay = schedule_delay_seconds
        self._max_backoff = max_backoff_seconds
        self._seq = 0
        self._stamp = threading.Lock()
        self._idle = threading.Condition()
        self._pending = 0  # accepted, neither delivered nor given up yet
        self._stopping = threading.Event()
        self._deadline = float("inf")
        self.undelivered: list[ReadableLogRecord] = []
        self._worker = threading.Thread(target=self._run, name="otel-audit-export", daemon=True)
        self._worker.start()

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        if self._stopping.is_set():
            raise RuntimeError("the audit log processor is shut down; this event was not recorded")
        record = copy.copy(log_record.log_record)
        record.context = Context()
        with self._stamp:  # the sequence order is the queue order
            record.attributes = {
                **(record.attributes or {}),
                attr.PRODUCER_INSTANCE: self.instance_id,
                attr.PRODUCER_SEQ: self._seq,
            }
            self._seq += 1
            with self._idle:
                self._pending += 1
            readable = ReadableLogRecord(
                log_record=record,
                resource=log_record.resource or Resource.create({}),
                instrumentation_scope=log_record.instrumentation_scope,
                limits=log_record.limits,
            )
            self._queue.put(readable)  # blocks while the queue is full: back-pressure, no drop

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch:
                self._deliver(batch)
            elif self._stopping.is_set():
                return

    def _take(self) -> list[ReadableLogRecord]:
        try:
            first = self._queue.get(timeout=self._delay)
        except queue.Empty:
            return []
        batch = [first]
        while len(batch) < self._batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _settled(self, count: int) -> None:
        with self._idle:
            self._pending -= count
            self._idle.notify_all()

    def _deliver(self, batch: list[ReadableLogRecord]) -> None:
        """Export until accepted; gives up only at the shutdown deadline."""
        backoff = 0.1
        while True:
            try:
                ok = self._exporter.export(batch) == LogRecordExportResult.SUCCESS
            except Exception:  # the exporter must not kill the worker
                log.exception("audit export raised")
                ok = False
            if ok:
                self._settled(len(batch))
                return
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                self.undelivered.extend(batch)
                self._settled(len(batch))
                return
            pause = min(backoff, remaining)
            log.warning("audit export of %d records failed; retrying in %.1f s", len(batch), pause)
            if self._stopping.is_set():
                time.sleep(pause)
            else:
                self._stopping.wait(pause)  # shutdown cuts the pause short for a last try
            backoff = min(backoff * 2, self._max_backoff)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Wait until every record emitted so far is delivered (False: not within the timeout)."""
        deadline = time.monotonic() + timeout_millis / 1000
        with self._idle:
            return self._idle.wait_for(
                lambda: self._pending == 0, timeout=max(0.0, deadline - time.monotonic())
            )

    def shutdown(self) -> None:
        """LogRecordProcessor.shutdown (the LoggerProvider calls it): stop(30 s)."""
        self.stop(30.0)

    def stop(self, timeout_seconds: float = 30.0) -> Sequence[ReadableLogRecord]:
        """Deliver what is queued (until the timeout), stop, and return what was not delivered."""
        if self._stopping.is_set():
            return list(self.undelivered)
        self._deadline = time.monotonic() + timeout_seconds
        self._stopping.set()
        self._worker.join()
        while not self._queue.empty():
            self.undelivered.append(self._queue.get_nowait())
            self._settled(1)
        self._exporter.shutdown()
        if self.undelivered:
            log.error(
                "%d audit records of instance %s could not be delivered before shutdown",
                len(self.undelivered),
                self.instance_id,
            )
        return list(self.undelivered)


class Audit:
    """Records audit events through an OpenTelemetry logger."""

    def __init__(self, provider: LoggerProvider, processor: LosslessLogRecordProcessor | None = None) -> None:
        self._provider = provider
        self._processor = processor
        self._logger = provider.get_logger("otel_audit")

    def event(
        self,
        *,
        action: str,
        actor: str,
        outcome: str = "success",
        resource: str | None = None,
        body: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        **details: Any,
    ) -> None:
        """One audit event. `attributes` are passed as they are (e.g. client.address);
        keyword `details` become audit.<name>."""
        if not action or not actor or not outcome:
            raise ValueError("an audit event needs an action, an actor and an outcome")
        values: dict[str, Any] = {f"{attr.AUDIT_PREFIX}{k}": v for k, v in details.items()}
        values.update(attributes or {})
        values.update({attr.ACTOR: actor, attr.ACTION: action, attr.OUTCOME: outcome})
        if resource is not None:
            values[attr.RESOURCE] = resource
        failed = outcome != "success"
        self._logger.emit(
            LogRecord(
                event_name=f"{attr.AUDIT_PREFIX}{action}",
                body=body or f"{actor} {action}{' ' + resource if resource else ''}: {outcome}",
                severity_number=SeverityNumber.WARN if failed else SeverityNumber.INFO,
                severity_text="WARN" if failed else "INFO",
                attributes=values,
            )
        )

    @contextmanager
    def action(self, action: str, actor: str, resource: str | None = None, **details: Any) -> Iterator[dict]:
        """Record the block's outcome: success, or failure with the exception's type. The
        yielded dict takes details learned inside the block."""
        extra: dict[str, Any] = {}
        try:
            yield extra
        except BaseException as exc:
            failure = {"error.type": type(exc).__qualname__}
            self.event(action=action, actor=actor, outcome="failure", resource=resource, attributes=failure,
                       **details, **extra)  # fmt: skip
            raise
        self.event(action=action, actor=actor, outcome="success", resource=resource, **details, **extra)

    def audited(
        self, action: str, actor: Callable[..., str], resource: Callable[..., str] | None = None
    ) -> Callable[[F], F]:
        """Decorator: audit each call; `actor` (and `resource`) are computed from its arguments."""

        def decorate(function: F) -> F:
            @wraps(function)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                target = resource(*args, **kwargs) if resource else None
                with self.action(action, actor(*args, **kwargs), target):
                    return function(*args, **kwargs)

            return wrapper  # type: ignore[return-value]

        return decorate

    def flush(self, timeout_seconds: float = 30.0) -> bool:
        return self._provider.force_flush(int(timeout_seconds * 1000))

    def shutdown(self, timeout_seconds: float = 30.0) -> Sequence[ReadableLogRecord]:
        """Flush and stop; returns the records that could not be delivered (also logged)."""
        undelivered: Sequence[ReadableLogRecord] = []
        if self._processor is not None:
            undelivered = self._processor.stop(timeout_seconds)
        self._provider.shutdown()
        return undelivered


def setup(
    *,
    service: str,
    endpoint: str = "127.0.0.1:4317",
    protocol: str = "grpc",
    headers: Mapping[str, str] | None = None,
    insecure: bool = True,
    resource_attributes: Mapping[str, Any] | None = None,
    export_timeout_seconds: float = 10.0,
    **processor_options: Any,
) -> Audit:
    """An Audit that sends OTLP to the sealer (protocol "grpc" or "http/protobuf")."""
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcExporter

        exporter: LogRecordExporter = GrpcExporter(
            endpoint=endpoint, insecure=insecure, headers=dict(headers or {}), timeout=export_timeout_seconds
        )
    elif protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpExporter

        exporter = HttpExporter(
            endpoint=endpoint, headers=dict(headers or {}), timeout=export_timeout_seconds
        )
    else:
        raise ValueError(f"protocol {protocol!r}: use 'grpc' or 'http/protobuf'")
    processor = LosslessLogRecordProcessor(exporter, **processor_options)
    provider = LoggerProvider(
        resource=Resource.create({"service.name": service, **(resource_attributes or {})})
    )
    provider.add_log_record_processor(processor)
    return Audit(provider, processor)
