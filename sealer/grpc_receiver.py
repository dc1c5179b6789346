"""OTLP/gRPC LogsService/Export (opentelemetry-proto docs/specification.md).

The handler takes the raw request bytes so that a malformed protobuf is answered with
INVALID_ARGUMENT and a message, instead of grpcio's generic INTERNAL. Status mapping:

- records with reserved ``otel_audit.*`` attributes: rejected via partial_success (the
  client must not retry them); the rest of the request is sealed;
- a request that is not an ExportLogsServiceRequest: INVALID_ARGUMENT;
- no accepted producer identity (sealer/auth.py): UNAUTHENTICATED;
- queue full: UNAVAILABLE with a google.rpc.RetryInfo detail (back-pressure: retry after 1 s);
- store down, sealer stopping: UNAVAILABLE, which OTel exporters retry.
"""

from __future__ import annotations

import logging
from concurrent import futures

import grpc
from google.protobuf.any_pb2 import Any
from google.protobuf.duration_pb2 import Duration
from google.rpc import code_pb2, error_details_pb2, status_pb2

from otel_audit.errors import AuditError, BackpressureError, DiskFullError, RequestError, Unauthenticated

from .auth import Authenticator, TlsFiles
from .otlp import Intake, export
from .pipeline import Pipeline

log = logging.getLogger(__name__)

SERVICE = "opentelemetry.proto.collector.logs.v1.LogsService"


RETRY_DELAY_SECONDS = 1
_DETAILS = "grpc-status-details-bin"


def _retry_info(message: str) -> bytes:
    """google.rpc.Status with RetryInfo: back-pressure the OTel exporters honour (OTLP spec)."""
    detail = Any()
    detail.Pack(error_details_pb2.RetryInfo(retry_delay=Duration(seconds=RETRY_DELAY_SECONDS)))
    return status_pb2.Status(code=code_pb2.UNAVAILABLE, message=message, details=[detail]).SerializeToString()


class GrpcReceiver:
    def __init__(
        self,
        pipeline: Pipeline,
        address: str,
        *,
        authenticator: Authenticator,
        intake: Intake,
        tls: TlsFiles | None = None,
        max_message_bytes: int = 16 * 1024 * 1024,
        workers: int = 16,
    ) -> None:
        self._pipeline = pipeline
        self._authenticator = authenticator
        self._intake = intake
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="otlp-grpc"),
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", 1024 * 1024),
            ],
        )
        handler = grpc.unary_unary_rpc_method_handler(self._export)
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"Export": handler}),)
        )
        if tls is None:
            self.port = self._server.add_insecure_port(address)
        else:
            cert, key, client_ca = tls.read()
            credentials = grpc.ssl_server_credentials(
                [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
            )
            self.port = self._server.add_secure_port(address, credentials)
        if self.port == 0:
            raise OSError(f"cannot listen for OTLP/gRPC on {address}")
        self.address = address.rsplit(":", 1)[0] + f":{self.port}"

    def start(self) -> None:
        self._server.start()

    def stop(self, grace_seconds: float) -> None:
        """Refuse new calls and let in-flight ones finish (up to the grace period)."""
        self._server.stop(grace_seconds).wait()

    def _export(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        metadata = dict(context.invocation_metadata())
        certificate = (context.auth_context().get("x509_pem_cert") or [None])[0]
        try:
            producer = self._authenticator.producer(metadata.get("authorization"), certificate)
        except Unauthenticated as exc:
            self._intake.rejected("unauthenticated")
            context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
            raise
        try:
            response = export(self._pipeline, self._intake, request, producer)
        except RequestError as exc:
            self._intake.rejected("bad_request")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise
        except BackpressureError as exc:
            self._intake.rejected("queue_full")
            message = f"records not sealed, retry in {RETRY_DELAY_SECONDS} s: {exc}"
            context.set_trailing_metadata(((_DETAILS, _retry_info(message)),))
            context.abort(grpc.StatusCode.UNAVAILABLE, message)
            raise
        except AuditError as exc:
            if not isinstance(exc, DiskFullError):  # the pipeline counts those as disk_full
                self._intake.rejected("unavailable")
            context.abort(grpc.StatusCode.UNAVAILABLE, f"records not sealed, retry: {exc}")
            raise  # abort() raised already; this line is for type checkers
        except Exception as exc:  # never hang or crash a caller on our bug
            log.exception("export failed")
            context.abort(grpc.StatusCode.INTERNAL, f"sealer error: {exc}")
            raise
        return response.SerializeToString()
