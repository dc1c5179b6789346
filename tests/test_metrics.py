"""Self-telemetry of a real `serve`: Prometheus metrics, liveness and readiness."""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families

from .conftest import Sealer, http_get, metrics_url, service_in_process
from .producers import send_audit_events
from .test_http import SPEC_LOGS_JSON, post


def _samples(base: str) -> dict[str, float]:
    status, text = http_get(base + "/metrics")
    assert status == 200
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return out


def test_metrics_health_and_readiness(sealer: Sealer) -> None:
    base = metrics_url(sealer)
    assert http_get(base + "/healthz") == (200, "ok\n")
    assert http_get(base + "/readyz") == (200, "ready\n")
    send_audit_events(sealer.endpoint, 120)
    document = json.loads(SPEC_LOGS_JSON)
    record = document["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    record["attributes"].append({"key": "otel_audit.seq", "value": {"intValue": "1"}})
    assert post(sealer.http_endpoint, json.dumps(document).encode(), "application/json")[0] == 200
    assert post(sealer.http_endpoint, b"{broken", "application/json")[0] == 400
    sealer.wait_for_output(r"checkpoint \S+ size 120\b")
    samples = _samples(base)
    assert samples["otel_audit_records_sealed_total"] == 120
    assert samples["otel_audit_entry_bytes_sealed_total"] > 120 * 100
    assert samples["otel_audit_export_latency_seconds_count"] >= 1
    assert samples["otel_audit_checkpoint_tree_size"] == 120
    assert 0 <= samples["otel_audit_checkpoint_age_seconds"] < 60
    assert samples["otel_audit_queue_depth"] == 0
    assert samples["otel_audit_records_rejected_total{reason=reserved_attribute}"] == 1
    assert samples["otel_audit_records_rejected_total{reason=bad_request}"] == 1
    assert samples["otel_audit_store_errors_total"] == 0
    assert http_get(base + "/nothing")[0] == 404


def test_readiness_says_why_not(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with service_in_process(tmp_path, "ready.example/audit") as service:
        assert service.health is not None
        base = f"http://{service.health.address}"
        assert http_get(base + "/readyz") == (200, "ready\n")
        assert service.pipeline is not None
        service.pipeline.stop()  # what a halted or stopping pipeline looks like from outside
        status, text = http_get(base + "/readyz")
        assert status == 503 and "not accepting records" in text
        assert http_get(base + "/healthz")[0] == 200  # alive, just not ready
