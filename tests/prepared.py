"""Prepared records for the sealing tests, made as a sealing worker makes them
(sealer/prepare.py `prepare_request`), so pipeline and seal tests start from the real thing."""

from __future__ import annotations

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from sealer.prepare import Prepared, Rules, prepare_request


def items(n: int, tag: str = "r", *, service: str | None = None) -> Prepared:
    """n records of one request, with the bodies tag0, tag1, ... (and a service.name)."""
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    if service is not None:
        resource_logs.resource.attributes.add(key="service.name").value.string_value = service
    scope_logs = resource_logs.scope_logs.add()
    for i in range(n):
        scope_logs.log_records.add(body=AnyValue(string_value=f"{tag}{i}"))
    return prepare_request(request.SerializeToString(), Rules())


def unencodable(n: int) -> Prepared:
    """Records whose Timestamp the sealer cannot encode (past prepare.py's checks, as a limit
    it did not know would be): after 2106, which TimestampTime (UInt32 seconds) cannot hold."""
    prepared = items(n, "bad")
    prepared.timestamps[0] = 2**62
    return prepared
