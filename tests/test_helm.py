"""helm/otel-audit: values and example overrides validated against values.schema.json, and
the chart linted and rendered by the real helm (`make test` installs it into .venv/bin), with
the rendered manifests checked for what the chart promises."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
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
        {"workers": -1},
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
    documents = list(yaml.safe_load_all(body))
    assert all(d["kind"] == KINDS[name] and d["metadata"]["name"] for d in documents)


def test_the_signing_key_comes_from_a_secret_and_each_replica_has_its_own() -> None:
    text = (CHART / "templates" / "statefulset.yaml").read_text()
    assert "secretName: {{ .Values.signingKeys.secretName }}" in text
    assert "signer-${HOSTNAME##*-}.key" in text  # replica N -> signer-N.key: one origin each
    assert "volumeClaimTemplates" in text and "mountPath: /anchors" in text


def _helm() -> str:
    found = shutil.which("helm", path=str(Path(sys.executable).parent)) or shutil.which("helm")
    assert found, "no helm binary: `make test` installs one into .venv/bin (see the Makefile)"
    return found


def _render(*values: Path) -> dict[tuple[str, str], dict]:
    args = [arg for path in values for arg in ("-f", str(path))]
    done = subprocess.run(
        [_helm(), "template", "rel", str(CHART), *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    documents = [d for d in yaml.safe_load_all(done.stdout) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in documents}


EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))
VALUE_SETS = pytest.mark.parametrize(
    "values", [[], *([p] for p in EXAMPLES)], ids=["defaults", *(p.name for p in EXAMPLES)]
)


@pytest.mark.parametrize(
    "values", [[], *([p] for p in EXAMPLES)], ids=["defaults", *(p.name for p in EXAMPLES)]
)
def test_helm_lint_passes_strictly(values: list[Path]) -> None:
    args = [arg for path in values for arg in ("-f", str(path))]
    done = subprocess.run([_helm(), "lint", "--strict", str(CHART), *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_helm_refuses_values_the_schema_refuses() -> None:
    done = subprocess.run(
        [_helm(), "template", "rel", str(CHART), "--set", "signingKey=PRIVATE+KEY+x"],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "signingKey" in done.stderr


@pytest.mark.parametrize(
    "values", [[], *([p] for p in EXAMPLES)], ids=["defaults", *(p.name for p in EXAMPLES)]
)
def test_rendered_chart_has_what_it_promises(values: list[Path]) -> None:
    manifests = _render(*values)
    kinds = {kind for kind, _ in manifests}
    assert {"StatefulSet", "Service", "PodDisruptionBudget", "NetworkPolicy"} <= kinds
    sealer = manifests[("StatefulSet", "rel-otel-audit")]
    governing = manifests[("Service", sealer["spec"]["serviceName"])]
    assert governing["spec"]["clusterIP"] == "None"  # stable per-replica DNS: one origin each
    service_ports = {p["port"] for p in manifests[("Service", "rel-otel-audit")]["spec"]["ports"]}
    assert {4317, 4318} <= service_ports
    pod = sealer["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert "signer-${HOSTNAME##*-}.key" in " ".join(container["command"])
    keys = next(v for v in pod["volumes"] if v["name"] == "keys")
    assert keys["secret"]["secretName"] and keys["secret"]["defaultMode"] == 0o400
    assert "PRIVATE+KEY" not in yaml.safe_dump(manifests)  # never a key in the manifests
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"]
    claims = {c["metadata"]["name"] for c in sealer["spec"]["volumeClaimTemplates"]}
    assert {"anchors", "journal"} <= claims  # the journal outlives the pod, on its own volume
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    env = {e["name"]: e for e in container["env"]}
    store = env["OTEL_AUDIT_STORE"]["value"]
    assert not re.search(r"//[^$@/]+:[^$@/]+@", store), "a ClickHouse password written in the manifest"
    assert int(env["OTEL_AUDIT_WORKERS"]["value"]) >= 0  # serve reads it as --workers
    assert env["OTEL_AUDIT_JOURNAL"]["value"] == mounts["journal"]
    budget = manifests[("PodDisruptionBudget", "rel-otel-audit")]
    assert budget["spec"]["selector"]["matchLabels"] == sealer["spec"]["selector"]["matchLabels"]
