"""Readers that feed stored data to the pure verifier in otel_audit.verify."""

from __future__ import annotations

from pathlib import Path

from otel_audit.anchors import read_anchors
from otel_audit.note import VerifierKey
from otel_audit.verify import LogVerifier, Report

from .store import Store


def verify_origin(store: Store, key: VerifierKey, anchor_dir: Path | None) -> Report:
    """Verify the log whose origin is the key's name, against the store and the anchors."""
    verifier = LogVerifier(key.name, key)
    for cp in store.checkpoints(key.name):
        verifier.add_stored_checkpoint(cp.tree_size, cp.root_hash, cp.chain_head, cp.note, cp.compact_range)
    if anchor_dir is not None:
        anchors, problems = read_anchors(anchor_dir, key.name)
        for anchor in anchors:
            verifier.add_anchor(anchor)
        for problem in problems:
            verifier.add_anchor_problem(problem)
    for block in store.stream_rows(key.name):
        verifier.feed(block)
    return verifier.finish()
