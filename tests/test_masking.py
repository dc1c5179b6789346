"""Masking: sensitive values replaced before sealing (HMAC tokens or a redaction marker), the
rule set's identity sealed into each entry, the original values stored nowhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from otel_audit import sdk
from otel_audit.entry import decode_entry
from otel_audit.errors import ConfigError
from otel_audit.note import SignerKey
from sealer.masking import REDACTED, Masking

from .conftest import run_cli, start_sealer


def _rules(folder: Path, rules: list[dict], key: bytes = b"k" * 32) -> Path:
    (folder / "masking.key").write_bytes(key)
    path = folder / "masking.json"
    path.write_text(json.dumps({"key_file": "masking.key", "rules": rules}))
    return path


RULES = [{"attribute": "client.address", "action": "hmac"}, {"prefix": "card.", "action": "redact"}]


def test_tokens_are_stable_keyed_and_the_identity_names_rules_and_key(tmp_path: Path) -> None:
    masking = Masking.load(_rules(tmp_path, RULES))
    assert masking.token("10.0.0.7") == masking.token("10.0.0.7") != masking.token("10.0.0.8")
    assert masking.token("10.0.0.7").startswith("hmac:") and "10.0.0.7" not in masking.token("10.0.0.7")
    other_key = Masking.load(_rules(tmp_path, RULES, key=b"x" * 32))
    assert other_key.token("10.0.0.7") != masking.token("10.0.0.7")
    assert (
        len({masking.identity, other_key.identity, Masking.load(_rules(tmp_path, RULES[:1])).identity}) == 3
    )
    record = LogRecord()
    for key, value in [("client.address", "10.0.0.7"), ("card.number", "4111"), ("user.id", "u1")]:
        record.attributes.add(key=key).value.string_value = value
    record.attributes.add(key="card.cvv").value.int_value = 123
    attributes = {"client.address": "10.0.0.7", "card.number": "4111", "user.id": "u1", "card.cvv": "123"}
    masking.apply(record, attributes)
    assert attributes == {
        "client.address": masking.token("10.0.0.7"),
        "card.number": REDACTED,
        "user.id": "u1",
        "card.cvv": REDACTED,
    }
    assert [kv.value.string_value for kv in record.attributes] == list(attributes.values())


@pytest.mark.parametrize(
    ("rules", "key", "message"),
    [
        ([{"attribute": "a", "action": "encrypt"}], b"k" * 32, "action must be"),
        ([{"attribute": "a", "prefix": "b", "action": "redact"}], b"k" * 32, "exactly one"),
        ([{"attribute": "a", "action": "redact"}], b"short", "at least 32"),
    ],
)
def test_bad_rule_files_are_refused(tmp_path: Path, rules: list[dict], key: bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Masking.load(_rules(tmp_path, rules, key))


def test_serve_masks_before_sealing(tmp_path: Path) -> None:
    rules = _rules(tmp_path, RULES)
    identity = Masking.load(rules).identity
    sealer = start_sealer(tmp_path, SignerKey.generate("mask.example/audit"), "--masking", str(rules))
    try:
        audit = sdk.setup(service="shop", endpoint=sealer.endpoint)
        secrets = {"client.address": "203.0.113.9", "card.number": "4111111111111111"}
        for order in (1, 2):
            audit.event(action="order.pay", actor="buyer-1", resource=f"order/{order}", attributes=secrets)
        assert audit.shutdown() == []
        sql = (
            "SELECT LogAttributes['client.address'], LogAttributes['card.number'], hex(Entry), "
            "position(Entry, '4111111111111111') + position(Entry, '203.0.113.9') "
            "FROM otel_audit.logs ORDER BY Seq"
        )
        done = run_cli("query", "--store", sealer.store, sql, "--format", "TSV")
        rows = [line.split("\t") for line in done.stdout.splitlines()]
        token = Masking.load(rules).token("203.0.113.9")
        assert [(r[0], r[1], r[3]) for r in rows] == [(token, REDACTED, "0")] * 2  # stored nowhere
        assert decode_entry(bytes.fromhex(rows[0][2]))[0].masking == identity
        assert sealer.stop() == 0
        verified = run_cli("verify", "--store", sealer.store, "--key", sealer.verifier_key)
        assert verified.returncode == 0, verified.stdout
    finally:
        sealer.kill()
