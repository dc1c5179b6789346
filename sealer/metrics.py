"""Self-telemetry: Prometheus metrics and health endpoints of the sealer.

    GET /metrics   Prometheus text format (prometheus_client)
    GET /healthz   200 while the process serves (liveness)
    GET /readyz    200 when it accepts records: pipeline running, not halted (e.g. by rows the
                   store lost), store's disk not nearly full, store answering; 503 with the
                   reason otherwise (readiness)

The metrics live in a registry of their own, so two sealers in one process (tests) do not mix.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)


class SealerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.records_sealed = Counter("otel_audit_records_sealed", "Records sealed and committed", registry=r)
        self.bytes_sealed = Counter(
            "otel_audit_entry_bytes_sealed", "Bytes of sealed entries committed", registry=r
        )
        self.commit_seconds = Histogram(
            "otel_audit_export_latency_seconds",
            "From an Export call's records entering the queue to their commit",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.queue_depth = Gauge("otel_audit_queue_depth", "Records waiting to be sealed", registry=r)
        self.checkpoint_age = Gauge(
            "otel_audit_checkpoint_age_seconds", "Seconds since the newest checkpoint was signed", registry=r
        )
        self.checkpoint_size = Gauge(
            "otel_audit_checkpoint_tree_size", "Tree size of the newest checkpoint", registry=r
        )
        self.store_errors = Counter(
            "otel_audit_store_errors", "Failed store operations (inserts, reads)", registry=r
        )
        self.rejected = Counter(
            "otel_audit_records_rejected", "Records or requests refused, by reason", ["reason"], registry=r
        )
        self.store_free_bytes = Gauge(
            "otel_audit_store_free_bytes",
            "Free bytes on the embedded store's file system (records are refused below --min-free-disk)",
            registry=r,
        )
        self.producer_gaps = Counter(
            "otel_audit_producer_events_lost", "Producer sequence numbers never received", registry=r
        )
        self.producer_duplicates = Counter(
            "otel_audit_producer_events_repeated", "Producer events received again (retries)", registry=r
        )
        self.witness_cosigned_size = Gauge(
            "otel_audit_witness_cosigned_tree_size",
            "Newest tree size each witness of --witness-policy cosigned",
            ["witness"],
            registry=r,
        )
        self.timestamp_requests = Counter(
            "otel_audit_timestamp_requests",
            "RFC 3161 token requests to each TSA, by outcome (ok, failed)",
            ["tsa", "outcome"],
            registry=r,
        )
        self.timestamp_age = Gauge(
            "otel_audit_timestamp_age_seconds",
            "Seconds since the time of the newest verified RFC 3161 token from each TSA",
            ["tsa"],
            registry=r,
        )
        self._last_checkpoint = 0.0
        self.checkpoint_age.set_function(
            lambda: time.monotonic() - self._last_checkpoint if self._last_checkpoint else float("nan")
        )

    def checkpointed(self, tree_size: int) -> None:
        self._last_checkpoint = time.monotonic()
        self.checkpoint_size.set(tree_size)

    def watch_timestamps(self, tsa: str, newest_ns: Callable[[], int | None]) -> None:
        """The token age gauge of one TSA, from the time of its newest token (NaN: none yet)."""

        def age() -> float:
            newest = newest_ns()
            return float("nan") if newest is None else (time.time_ns() - newest) / 1e9

        self.timestamp_age.labels(tsa).set_function(age)


class HealthServer:
    """/metrics, /healthz and /readyz on their own listener (loopback by default)."""

    def __init__(self, metrics: SealerMetrics, address: str, ready: Callable[[], str | None]) -> None:
        host, _, port = address.rpartition(":")
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner._answer(self)

            def log_message(self, format: str, *args: object) -> None:
                log.debug(format, *args)

        self._metrics = metrics
        self._ready = ready
        try:
            self._server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
        except (OSError, ValueError) as exc:
            raise OSError(f"cannot listen for metrics and health on {address}: {exc}") from None
        self._server.daemon_threads = True
        self.address = f"{host or '127.0.0.1'}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, request: BaseHTTPRequestHandler) -> None:
        path = request.path.split("?")[0]
        if path == "/metrics":
            status, body, media = HTTPStatus.OK, generate_latest(self._metrics.registry), CONTENT_TYPE_LATEST
        elif path == "/healthz":
            status, body, media = HTTPStatus.OK, b"ok\n", "text/plain"
        elif path == "/readyz":
            problem = self._ready()
            status = HTTPStatus.OK if problem is None else HTTPStatus.SERVICE_UNAVAILABLE
            body, media = (problem or "ready").encode() + b"\n", "text/plain"
        else:
            status, body, media = HTTPStatus.NOT_FOUND, b"try /metrics, /healthz or /readyz\n", "text/plain"
        request.send_response(status)
        request.send_header("Content-Type", media)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)
