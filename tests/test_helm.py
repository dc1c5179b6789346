"""helm/otel-audit: values and example overrides validated against values.schema.json;
templates checked as far as the tools here allow (no helm binary: see the chart README)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

CHART = Path(__file__).resolve().parent.parent / "helm" / "otel-audit"
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
KINDS = {
    "statefulset.yaml": "StatefulSet",
    "service.yaml": "Service",
    "pdb.yaml": "PodDisruptionBudget",
    "networkpolicy.yaml": "NetworkPolicy",
    "certificate.yaml": "Certificate",
}


def _merged(override: dict) -> dict:
    def merge(base: dict, extra: dict) -> dict:
        out = dict(base)
        for key, value in extra.items():
            out[key] = (
                merge(base[key], value)
                if isinstance(value, dict) and isinstance(base.get(key), dict)
                else value
            )
        return out

    return merge(VALUES, override)


def test_default_values_are_valid() -> None:
    jsonschema.validate(VALUES, SCHEMA)


@pytest.mark.parametrize("path", sorted((CHART / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_example_overrides_are_valid(path: Path) -> None:
    jsonschema.validate(_merged(yaml.safe_load(path.read_text())), SCHEMA)


@pytest.mark.parametrize(
    "override",
    [
        {"signingKey": "PRIVATE+KEY+acme.example/audit+..."},  # keys belong in a Secret
        {"signingKeys": {"secretName": "k", "key": "PRIVATE+KEY+..."}},
        {"replicas": 0},
        {"clickhouse": {"url": "clickhouse:8123"}},
        {"producers": {"incompleteEvents": "drop"}},
        {"anchors": {"size": "lots"}},
        {"clickhouse": {"cluster": "a; DROP"}},
    ],
)
def test_bad_values_are_refused(override: dict) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_merged(override), SCHEMA)


def _template_paths(text: str) -> set[str]:
    return set(re.findall(r"\.Values\.([A-Za-z0-9_.]+)", text))


@pytest.mark.parametrize("name", sorted(KINDS))
def test_templates_use_defined_values_and_are_yaml(name: str) -> None:
    text = (CHART / "templates" / name).read_text()
    for path in _template_paths(text):
        node: object = VALUES
        for part in path.split("."):
            assert isinstance(node, dict) and part in node, f"{name}: .Values.{path} is not in values.yaml"
            node = node[part]
    # without the lines that are only template control, and with {{ ... }} as a placeholder,
    # the file must still be a YAML mapping of the right kind
    lines = [line for line in text.splitlines() if not re.fullmatch(r"\s*\{\{.*?\}\}\s*", line)]
    body = re.sub(r"\{\{.*?\}\}", "X", "\n".join(lines))
    document = yaml.safe_load(body)
    assert document["kind"] == KINDS[name] and document["metadata"]["name"]


def test_the_signing_key_comes_from_a_secret_and_each_replica_has_its_own() -> None:
    text = (CHART / "templates" / "statefulset.yaml").read_text()
    assert "secretName: {{ .Values.signingKeys.secretName }}" in text
    assert "signer-${HOSTNAME##*-}.key" in text  # replica N -> signer-N.key: one origin each
    assert "volumeClaimTemplates" in text and "mountPath: /anchors" in text
