"""The short fuzz campaign (tests/campaign/fuzz.py) against ONE real `otel-audit serve`:
extreme and malformed requests over OTLP/gRPC and OTLP/HTTP, each sent beside a canary
producer's good records, which must always be sealed. Deterministic (derandomized, no
example database) and bounded by count; the long run is `bench/fuzz.py --examples 20000`."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator

import pytest
import requests
from hypothesis import HealthCheck, Phase, given, settings

from otel_audit.note import SignerKey
from tests.campaign.fuzz import Target, cases
from tests.campaign.generate import GZIP_DEFECTS, SMALL, RequestSpec
from tests.campaign.soak import audit_request
from tests.conftest import start_sealer

pytestmark = [
    pytest.mark.integration,
    # A failing example's huge values: hypothesis warns that printing them is expensive.
    pytest.mark.filterwarnings("ignore:Generating overly large repr"),
]

# Bounded by count; no shrinking in the suite (bench/fuzz.py shrinks and prints examples).
SHORT = settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    database=None,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=list(HealthCheck),
    report_multiple_bugs=False,
)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    running = Target(tmp_path_factory.mktemp("fuzz"))
    yield running
    running.kill()


CASES = cases(SMALL)
STORE_RANGE = CASES["records in the store's time range, both receivers"]
EXTREME_GRPC = CASES["extreme records over gRPC"]
EXTREME_HTTP = CASES["extreme records over HTTP"]
MUTANTS = CASES["mutated requests, both receivers"]
GZIP = CASES["gzip bodies that are not exactly gzip"]
JSON = CASES["JSON that is not OTLP"]


@SHORT
@given(**STORE_RANGE.strategies)
def test_extreme_records_within_the_stores_time_range(
    target: Target, spec: RequestSpec, transport: str
) -> None:
    STORE_RANGE.run(target, spec, transport)


@SHORT
@given(**EXTREME_GRPC.strategies)
def test_extreme_records_over_grpc(target: Target, spec: RequestSpec, transport: str) -> None:
    EXTREME_GRPC.run(target, spec, transport)


@SHORT
@given(**EXTREME_HTTP.strategies)
def test_extreme_records_over_http(target: Target, spec: RequestSpec, transport: str) -> None:
    EXTREME_HTTP.run(target, spec, transport)


@SHORT
@given(**MUTANTS.strategies)
def test_mutated_requests_over_both_receivers(
    target: Target, records: int, mutations: list, transport: str
) -> None:
    MUTANTS.run(target, records, mutations, transport)


@SHORT
@given(**GZIP.strategies)
def test_gzip_bodies_are_decoded_exactly_or_refused(target: Target, defect: tuple) -> None:
    GZIP.run(target, defect)


@SHORT
@given(**JSON.strategies)
def test_json_that_is_not_otlp_gets_400(target: Target, document: bytes) -> None:
    JSON.run(target, document)


def test_after_the_fuzz_every_record_answered_ok_is_stored_and_the_log_verifies(target: Target) -> None:
    """After the fuzz tests: it stops the sealer they sent to."""
    assert target.ledger.requests > 0, "nothing was fuzzed"
    problems = [p.message for p in target.finish() if p.what not in GZIP_DEFECTS]
    assert problems == [], "\n".join(problems[:20])


def test_after_the_fuzz_every_gzip_body_answered_ok_was_sealed_whole(target: Target) -> None:
    assert any(sent.what in GZIP_DEFECTS for sent in target.ledger.sent), "no gzip body was fuzzed"
    problems = [p.message for p in target.finish() if p.what in GZIP_DEFECTS]
    assert problems == [], "\n".join(problems[:20])


def test_sigterm_stops_serve_while_an_http_producer_keeps_its_connection_open(tmp_path) -> None:
    """Found by the fuzz run: the OTel HTTP exporter keeps its connection open between
    exports (requests.Session); a sealer told to stop must not wait for it forever."""
    sealer = start_sealer(tmp_path, SignerKey.generate("idle.example/audit"))
    session = requests.Session()
    try:
        body = audit_request(["idle-0"], "idle").SerializeToString()
        reply = session.post(
            sealer.http_endpoint, data=body, headers={"Content-Type": "application/x-protobuf"}, timeout=30
        )
        assert reply.status_code == 200, reply.text
        try:
            code = sealer.stop(signal.SIGTERM, timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail("serve did not stop within 10 s of SIGTERM while a keep-alive connection was open")
        assert code == 0
    finally:
        session.close()
        sealer.kill()
