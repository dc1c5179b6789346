"""Masking: sensitive attribute values replaced before sealing, so they are never stored.

A rule file (JSON) names attributes by exact key or by prefix and says what to do:

    {"key_file": "masking.key",
     "rules": [{"attribute": "client.address", "action": "hmac"},
               {"prefix": "card.", "action": "redact"}]}

- ``hmac``: the value becomes ``hmac:`` + the first 16 bytes of HMAC-SHA256(key, value),
  base64url. The same value always gives the same token, so investigators can still
  correlate ("the same card in both orders") without seeing it; without the key nobody can
  test guesses. The key file holds at least 32 random bytes (``head -c 32 /dev/urandom``).
- ``redact``: the value becomes ``[REDACTED]``.

The rule set's identity (SHA-256 over the canonical rules and the key's fingerprint) is sealed
into every entry as ``otel_audit.masking``, so a record says which rules masked it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path

from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from otel_audit.errors import ConfigError
from otel_audit.value_strings import any_value_as_string

REDACTED = "[REDACTED]"
ACTIONS = ("hmac", "redact")


@dataclass(frozen=True)
class Rule:
    attribute: str | None
    prefix: str | None
    action: str

    def matches(self, key: str) -> bool:
        return key == self.attribute or (self.prefix is not None and key.startswith(self.prefix))


@dataclass(frozen=True)
class Masking:
    rules: tuple[Rule, ...]
    key: bytes
    identity: str

    @classmethod
    def load(cls, path: Path) -> Masking:
        try:
            document = json.loads(path.read_text())
            key_path = path.parent / document["key_file"]
            key = key_path.read_bytes()
            rules = tuple(_rule(item) for item in document["rules"])
        except OSError as exc:
            raise ConfigError(f"masking: cannot read {exc.filename}: {exc.strerror}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"masking rules {path}: {exc}") from None
        if len(key) < 32:
            raise ConfigError(f"masking key {key_path} must hold at least 32 random bytes")
        canonical = json.dumps([[r.attribute, r.prefix, r.action] for r in rules], separators=(",", ":"))
        fingerprint = hashlib.sha256(key).hexdigest()[:16]
        identity = "sha256:" + hashlib.sha256(f"{canonical}\n{fingerprint}".encode()).hexdigest()[:32]
        return cls(rules, key, identity)

    def token(self, value: str) -> str:
        digest = hmac.new(self.key, value.encode(), hashlib.sha256).digest()[:16]
        return "hmac:" + base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def apply(self, record: LogRecord, attributes: dict[str, str]) -> None:
        """Mask the record's attributes in place, and the string map made from them."""
        for kv in record.attributes:
            rule = next((r for r in self.rules if r.matches(kv.key)), None)
            if rule is None:
                continue
            masked = self.token(any_value_as_string(kv.value)) if rule.action == "hmac" else REDACTED
            kv.value.Clear()
            kv.value.string_value = masked
            attributes[kv.key] = masked


def _rule(item: dict) -> Rule:
    attribute, prefix, action = item.get("attribute"), item.get("prefix"), item.get("action")
    if (attribute is None) == (prefix is None):
        raise ValueError(f"rule {item}: give exactly one of 'attribute' and 'prefix'")
    if action not in ACTIONS:
        raise ValueError(f"rule {item}: action must be one of {', '.join(ACTIONS)}")
    return Rule(attribute, prefix, action)
