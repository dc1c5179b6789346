"""One table from an intake outcome to its gRPC status and its HTTP status, for both receivers.

The OTLP specification (protocol/otlp.md, "Failures" and "Throttling"; the exporter side in
reference/otel-clickhouse.md): clients retry UNAVAILABLE, and RESOURCE_EXHAUSTED only with a
google.rpc.RetryInfo; over HTTP they retry 429, 502, 503 and 504, honouring Retry-After, and
never 400. Back-pressure is UNAVAILABLE with RetryInfo on gRPC, 429 with Retry-After on HTTP.
An HTTP error body is a google.rpc.Status, in the request's content type.

| outcome | raised as | gRPC | HTTP | retried by the client |
| --- | --- | --- | --- | --- |
| UNAUTHENTICATED | Unauthenticated | UNAUTHENTICATED | 401, WWW-Authenticate: Bearer | no |
| TOO_LARGE | BodyTooLarge | RESOURCE_EXHAUSTED | 413 | no |
| BAD_REQUEST | RequestError (RefusedByStoreError too) | INVALID_ARGUMENT | 400 | no |
| QUEUE_FULL | BackpressureError | UNAVAILABLE + RetryInfo 1 s | 429, Retry-After: 1 | yes |
| DISK_FULL | DiskFullError | UNAVAILABLE | 503, Retry-After: 1 | yes |
| UNAVAILABLE | every other AuditError | UNAVAILABLE | 503, Retry-After: 1 | yes |
| INTERNAL | any other exception (our bug) | INTERNAL | 500 | no |

UNAVAILABLE answers every other AuditError, also one that is not `retryable` in itself (a bad
statement, a read-only store, a journal that cannot be written): the records were not
written, and an answer the client does not retry would lose them; such a failure is mended
on the sealer's side, and the client's retry then passes. The gRPC size limit is grpcio's
own (RESOURCE_EXHAUSTED before the handler runs), so TOO_LARGE comes from OTLP/HTTP only.

Each outcome names the `reason` the receivers count it under in
otel_audit_records_rejected_total (None: not counted there; the pipeline counts a full
disk as disk_full itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus

import grpc
from google.rpc import code_pb2

from otel_audit.errors import (
    AuditError,
    BackpressureError,
    BodyTooLarge,
    DiskFullError,
    RequestError,
    Unauthenticated,
)

RETRY_DELAY_SECONDS = 1


@dataclass(frozen=True)
class Outcome:
    """How one kind of refused Export call is answered on each transport.

    The messages are templates of `{error}` (the exception's text) and `{delay}`
    (retry_delay_seconds): what each receiver has always said, word for word."""

    reason: str | None
    retryable: bool
    grpc_code: grpc.StatusCode
    grpc_message: str
    http_status: HTTPStatus
    http_code: int  # google.rpc.Code of the Status in the HTTP body
    http_message: str
    retry_delay_seconds: int | None = None  # HTTP Retry-After
    grpc_retry_info: bool = False  # the delay also as a google.rpc.RetryInfo detail
    http_headers: tuple[tuple[str, str], ...] = ()

    def grpc_text(self, exc: BaseException) -> str:
        return self.grpc_message.format(error=exc, delay=self.retry_delay_seconds)

    def http_text(self, exc: BaseException) -> str:
        return self.http_message.format(error=exc, delay=self.retry_delay_seconds)

    def headers(self) -> dict[str, str]:
        """The HTTP answer's headers: Retry-After for a retryable outcome, and the outcome's own."""
        headers = dict(self.http_headers)
        if self.retry_delay_seconds is not None:
            headers["Retry-After"] = str(self.retry_delay_seconds)
        return headers


_NOT_SEALED = "records not sealed, retry: {error}"

UNAUTHENTICATED = Outcome(
    "unauthenticated", False, grpc.StatusCode.UNAUTHENTICATED, "{error}",
    HTTPStatus.UNAUTHORIZED, code_pb2.UNAUTHENTICATED, "{error}",
    http_headers=(("WWW-Authenticate", "Bearer"),),
)  # fmt: skip
TOO_LARGE = Outcome(
    None, False, grpc.StatusCode.RESOURCE_EXHAUSTED, "{error}",
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE, code_pb2.INVALID_ARGUMENT, "{error}",
)  # fmt: skip
BAD_REQUEST = Outcome(
    "bad_request", False, grpc.StatusCode.INVALID_ARGUMENT, "{error}",
    HTTPStatus.BAD_REQUEST, code_pb2.INVALID_ARGUMENT, "{error}",
)  # fmt: skip
QUEUE_FULL = Outcome(
    "queue_full", True, grpc.StatusCode.UNAVAILABLE, "records not sealed, retry in {delay} s: {error}",
    HTTPStatus.TOO_MANY_REQUESTS, code_pb2.RESOURCE_EXHAUSTED, "{error}",
    retry_delay_seconds=RETRY_DELAY_SECONDS, grpc_retry_info=True,
)  # fmt: skip
DISK_FULL = Outcome(
    None, True, grpc.StatusCode.UNAVAILABLE, _NOT_SEALED,
    HTTPStatus.SERVICE_UNAVAILABLE, code_pb2.UNAVAILABLE, _NOT_SEALED,
    retry_delay_seconds=RETRY_DELAY_SECONDS,
)  # fmt: skip
UNAVAILABLE = Outcome(
    "unavailable", True, grpc.StatusCode.UNAVAILABLE, _NOT_SEALED,
    HTTPStatus.SERVICE_UNAVAILABLE, code_pb2.UNAVAILABLE, _NOT_SEALED,
    retry_delay_seconds=RETRY_DELAY_SECONDS,
)  # fmt: skip
INTERNAL = Outcome(
    None, False, grpc.StatusCode.INTERNAL, "sealer error: {error}",
    HTTPStatus.INTERNAL_SERVER_ERROR, code_pb2.INTERNAL, "sealer error: {error}",
)  # fmt: skip

# Most specific first: the first class the exception is an instance of decides.
_TABLE: tuple[tuple[type[BaseException], Outcome], ...] = (
    (Unauthenticated, UNAUTHENTICATED),
    (BodyTooLarge, TOO_LARGE),
    (RequestError, BAD_REQUEST),
    (BackpressureError, QUEUE_FULL),
    (DiskFullError, DISK_FULL),
    (AuditError, UNAVAILABLE),
)


def outcome_of(exc: BaseException) -> Outcome:
    """How a failed Export call is answered: by the first row of the table `exc` is an
    instance of; INTERNAL for anything else (a bug of ours: never hang or crash a caller)."""
    for cls, outcome in _TABLE:
        if isinstance(exc, cls):
            return outcome
    return INTERNAL
