"""Tests for otel_audit.varint: protobuf's own encoder is the reference."""

from __future__ import annotations

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from otel_audit.varint import varint


def test_varint_is_protobufs_at_every_length() -> None:
    edges = {0, 1, 2**64 - 1} | {2**k + d for k in range(7, 64, 7) for d in (-1, 0, 1)}
    edges |= {2**k - 1 for k in range(1, 64)} | {0x3FFF << 14, (0x2AAA << 14) | 0x1555}
    for n in sorted(edges):
        # field 3 of AnyValue is int_value, a varint (two's complement above 2**63 - 1)
        encoded = AnyValue(int_value=n if n < 2**63 else n - 2**64).SerializeToString()
        assert encoded == b"\x18" + varint(n), n
