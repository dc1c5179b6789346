"""OTLP/gRPC LogsService/Export (opentelemetry-proto docs/specification.md).

The handler takes the raw request bytes so that a malformed protobuf is answered with
INVALID_ARGUMENT and a message, instead of grpcio's generic INTERNAL. Records with reserved
``otel_audit.*`` attributes are rejected via partial_success (the client must not retry
them) and the rest of the request is sealed; a refused call is answered with the status
sealer/outcomes.py names for it (the same table as OTLP/HTTP's): INVALID_ARGUMENT,
UNAUTHENTICATED, UNAVAILABLE (with a google.rpc.RetryInfo detail for back-pressure), which
OTel exporters retry.
"""

from __future__ import annotations

from concurrent import futures

import grpc
from google.protobuf.any_pb2 import Any
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2, status_pb2

from .auth import Authenticator, TlsFiles
from .intake import MAX_MESSAGE_BYTES, Intake, export
from .outcomes import Outcome
from .pipeline import Pipeline

SERVICE = "opentelemetry.proto.collector.logs.v1.LogsService"
_DETAILS = "grpc-status-details-bin"


def _retry_info(outcome: Outcome, message: str) -> bytes:
    """google.rpc.Status with RetryInfo: back-pressure the OTel exporters honour (OTLP spec)."""
    detail = Any()
    detail.Pack(error_details_pb2.RetryInfo(retry_delay=Duration(seconds=outcome.retry_delay_seconds or 0)))
    status = status_pb2.Status(code=outcome.grpc_code.value[0], message=message, details=[detail])
    return status.SerializeToString()


class GrpcReceiver:
    def __init__(
        self,
        pipeline: Pipeline,
        address: str,
        *,
        authenticator: Authenticator,
        intake: Intake,
        tls: TlsFiles | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
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
            response = export(self._pipeline, self._intake, request, producer)
        except Exception as exc:  # answered as sealer/outcomes.py says; never hang or crash a caller
            outcome = self._intake.refused(exc, "OTLP/gRPC")
            message = outcome.grpc_text(exc)
            if outcome.grpc_retry_info:
                context.set_trailing_metadata(((_DETAILS, _retry_info(outcome, message)),))
            context.abort(outcome.grpc_code, message)
            raise  # abort() raised already; this line is for type checkers
        return response.SerializeToString()
