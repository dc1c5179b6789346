"""collector-config/: each Collector config parses and its audit pipeline is wired to lose
nothing (see collector-config/README.md for what is and is not checked here)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "collector-config").glob("*/config.yaml"))
SAMPLERS = ("probabilistic_sampler", "tail_sampling", "filter", "sampling")


def _load(path: Path) -> dict:
    config = yaml.safe_load(path.read_text())
    assert isinstance(config, dict), f"{path} is not a YAML mapping"
    return config


def _kind(name: str) -> str:
    return name.split("/")[0]


def test_there_are_configs_with_readmes() -> None:
    assert {p.parent.name for p in CONFIGS} == {"agent", "gateway"}
    readme = (CONFIGS[0].parent.parent / "README.md").read_text()
    for path in CONFIGS:
        assert f"{path.parent.name}/config.yaml" in readme


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.parent.name)
def test_every_component_a_pipeline_names_is_defined(path: Path) -> None:
    config = _load(path)
    service = config["service"]
    connectors = set(config.get("connectors") or {})
    for extension in service.get("extensions", []):
        assert extension in (config.get("extensions") or {}), f"extension {extension} is not defined"
    used_as_exporter, used_as_receiver = set(), set()
    for name, pipeline in service["pipelines"].items():
        assert pipeline.get("receivers") and pipeline.get("exporters"), f"pipeline {name} is incomplete"
        for receiver in pipeline["receivers"]:
            assert receiver in (config.get("receivers") or {}) or receiver in connectors, receiver
            used_as_receiver.add(receiver)
        for processor in pipeline.get("processors", []):
            assert processor in (config.get("processors") or {}), processor
        for exporter in pipeline["exporters"]:
            assert exporter in (config.get("exporters") or {}) or exporter in connectors, exporter
            used_as_exporter.add(exporter)
    for connector in connectors:  # a connector joins two pipelines: it must be on both ends
        assert connector in used_as_exporter and connector in used_as_receiver, connector


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.parent.name)
def test_audit_pipeline_is_lossless(path: Path) -> None:
    config = _load(path)
    pipelines = config["service"]["pipelines"]
    audit = pipelines["logs/audit"]
    assert not audit.get("processors"), "the audit pipeline must not sample, filter or batch"
    before_routing = pipelines["logs/in"].get("processors", [])  # audit events pass here too
    assert not [p for p in before_routing if _kind(p) in SAMPLERS]
    (exporter_name,) = audit["exporters"]
    assert _kind(exporter_name) in ("otlp", "otlp_grpc", "otlphttp")
    exporter = config["exporters"][exporter_name]
    queue = exporter["sending_queue"]
    assert queue["enabled"] is True and queue["block_on_overflow"] is True
    storage = queue["storage"]
    assert _kind(storage) == "file_storage" and storage in config["extensions"]
    assert storage in config["service"]["extensions"]
    assert config["extensions"][storage]["directory"].startswith("/")
    retry = exporter["retry_on_failure"]
    assert retry["enabled"] is True and str(retry["max_elapsed_time"]) == "0"
    assert "ca_file" in exporter["tls"] and not exporter["tls"].get("insecure", False)
    authenticator = (exporter.get("auth") or {}).get("authenticator")
    if authenticator is not None:
        assert authenticator in config["extensions"] and authenticator in config["service"]["extensions"]
    else:
        assert exporter["tls"]["cert_file"] and exporter["tls"]["key_file"], "no producer identity"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.parent.name)
def test_routing_sends_audit_records_to_the_audit_pipeline(path: Path) -> None:
    config = _load(path)
    routing = config["connectors"]["routing/audit"]
    assert routing["default_pipelines"] == ["logs/default"]
    (route,) = routing["table"]
    assert route["context"] == "log" and route["pipelines"] == ["logs/audit"]
    assert 'attributes["audit.action"]' in route["condition"]
    pipelines = config["service"]["pipelines"]
    assert "routing/audit" in pipelines["logs/in"]["exporters"]
    assert pipelines["logs/audit"]["receivers"] == ["routing/audit"]
