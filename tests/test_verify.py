"""The pure verifier's own rules, without a store (the store-backed cases are in test_tamper.py)."""

from __future__ import annotations

import pytest

from otel_audit.note import SignerKey
from otel_audit.verify import LogVerifier

KEY = SignerKey.from_seed("verify.example/audit", b"\x05" * 32)


def test_a_reversed_range_is_refused_as_a_bug() -> None:
    verifier = LogVerifier(KEY.name, KEY.verifier())
    with pytest.raises(AssertionError, match=r"reversed range Seq 300\.\.99"):
        verifier._find("truncated", "the store ends ...", 300, 99)


def test_an_empty_log_with_no_anchors_is_not_warned_about() -> None:
    """Nothing sealed, nothing signed: there is nothing an anchor could protect yet."""
    report = LogVerifier(KEY.name, KEY.verifier()).finish()
    assert report.ok and report.warnings == [] and report.notes == []
