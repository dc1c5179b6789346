"""Witnesses end to end, real processes on loopback: three `otel-audit witness serve`, a 2-of-3
quorum, `otel-audit serve --witness-policy`, and `verify --policy`.

- one witness down: the quorum is still met, and the down one catches up later through a
  consistency proof from the size it last cosigned;
- a fork: a second sealer with the same key and origin on another store is refused by every
  witness (409 / 422) and its log fails `verify --policy`;
- a store rolled back and re-signed by its operator (anchors and all) fails `verify --policy`:
  what the witnesses cosigned is not in it.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import requests

from otel_audit.anchors import origin_dir
from otel_audit.cosignature import CosignerKey
from otel_audit.note import SignerKey
from otel_audit.witness_policy import Policy
from otel_audit.witnessed import read_cosigned, witnessed

from .conftest import Sealer, metrics_url, run_cli, start_sealer
from .producers import send_audit_events
from .witnesses import RunningWitness, start_witness

FAST = ("--witness-interval", "0.3", "--journal", "off", "--workers", "0")


def _wait(condition: Callable[[], bool], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _policy_file(path: Path, key: SignerKey, witnesses: list[RunningWitness]) -> Path:
    lines = [f"log {key.verifier().serialize()}"]
    lines += [f"witness {w.name} {w.vkey.serialize()} {w.url}" for w in witnesses]
    lines += ["group majority 2 " + " ".join(w.name for w in witnesses), "quorum majority"]
    path.write_text("\n".join(lines) + "\n")
    return path


def _cosigners_at(sealer: Sealer, policy: Path, size: int) -> set[str]:
    parsed = Policy.parse(policy.read_text())
    for _, text in read_cosigned(sealer.anchor_dir, sealer.key.name):
        seen = witnessed(text, parsed, (sealer.key.verifier(),))
        if seen.checkpoint.tree_size == size:
            return set(seen.cosigners)
    return set()


def _state_size(witness: RunningWitness, origin: str) -> int:
    if not witness.state.exists():
        return 0
    return int(json.loads(witness.state.read_text())["logs"].get(origin, {}).get("size", 0))


def test_quorum_with_one_witness_down_then_fork_and_rollback_caught(tmp_path: Path) -> None:
    key = SignerKey.generate("test.example/audit")
    ws = [start_witness(tmp_path / n, n, [key.verifier()]) for n in ("alpha", "beta", "gamma")]
    policy = _policy_file(tmp_path / "policy", key, ws)
    (tmp_path / "log").mkdir()
    sealer = start_sealer(tmp_path / "log", key, "--witness-policy", str(policy), *FAST, interval="0.3")
    fork: Sealer | None = None
    try:
        send_audit_events(sealer.endpoint, 3)
        _wait(lambda: _cosigners_at(sealer, policy, 3) == {"alpha", "beta", "gamma"}, "all three at 3")
        gamma = ws[2]
        gamma.stop()  # one witness down
        send_audit_events(sealer.endpoint, 4, start=3)
        _wait(lambda: _cosigners_at(sealer, policy, 7) >= {"alpha", "beta"}, "quorum at 7 without gamma")
        assert _state_size(gamma, key.name) == 3

        port = gamma.url.split(":")[2].split("/")[0]  # back on its address, with its state
        listen = f"127.0.0.1:{port}"
        ws[2] = gamma = start_witness(tmp_path / "gamma", "gamma", [key.verifier()], _key(gamma), listen)
        _wait(lambda: _state_size(gamma, key.name) == 7, "gamma catching up from 3 to 7")
        _wait(lambda: "gamma" in _cosigners_at(sealer, policy, 7), "gamma's cosignature at 7")
        status = run_cli("status", "--store", sealer.store, "--anchor-dir", str(sealer.anchor_dir))
        assert status.returncode == 0, status.stderr
        cosigned = "alpha at tree size 7, beta at tree size 7, gamma at tree size 7"
        assert f"witnesses cosigned: {cosigned}" in status.stdout + status.stderr
        metrics = requests.get(metrics_url(sealer) + "/metrics", timeout=30).text
        assert 'otel_audit_witness_cosigned_tree_size{witness="gamma"} 7.0' in metrics

        # A fork: the same key and origin on another store, with other records.
        (tmp_path / "fork").mkdir()
        fork = start_sealer(tmp_path / "fork", key, "--witness-policy", str(policy), *FAST, interval="0.3")
        send_audit_events(fork.endpoint, 9, service="forged")
        fork.wait_for_output(r"witness (alpha|beta|gamma) did not cosign: (HTTP 422|it cosigned tree size 7)")
        assert [_state_size(w, key.name) for w in ws] == [7, 7, 7]  # nobody moved to the fork
        assert not read_cosigned(fork.anchor_dir, key.name)
        assert fork.stop() == 0  # one process owns an embedded store: verify after serve
        forked = fork.verify("--policy", str(policy))
        assert forked.returncode == 1, forked.stdout
        assert "witness_quorum: no checkpoint of test.example/audit carries cosignatures" in forked.stdout
        assert fork.verify().returncode == 0  # without a policy the log's own key vouches for it
        fork = None

        assert sealer.stop() == 0
        result = sealer.verify("--policy", str(policy))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "witnessed: tree size 7 cosigned by alpha, beta, gamma (quorum met)" in result.stdout
        assert "witness gamma: newest cosigned tree size 7" in result.stdout
        _bundles_carry_the_cosignatures(sealer, policy, tmp_path)

        # A rollback: the operator rolls the store and the anchors back (here to nothing; only
        # the cosigned notes are left, as on a WORM copy) and re-signs other records with the
        # same key.
        kept = tmp_path / "kept"
        shutil.copytree(origin_dir(sealer.anchor_dir, key.name), kept)
        shutil.rmtree(tmp_path / "log" / "store")
        shutil.rmtree(sealer.anchor_dir)
        folder = origin_dir(sealer.anchor_dir, key.name)
        folder.mkdir(parents=True)
        for cosigned in kept.glob("*.cosigned"):
            shutil.copy(cosigned, folder / cosigned.name)
        sealer = start_sealer(tmp_path / "log", key, *FAST, interval="0.3")
        send_audit_events(sealer.endpoint, 8, service="rewritten")
        _wait(lambda: "checkpoint test.example/audit size 8" in "".join(sealer.output), "the re-signed log")
        assert sealer.stop() == 0
        rolled = sealer.verify("--policy", str(policy))
        assert rolled.returncode == 1, rolled.stdout
        assert "witnessed: the checkpoint at tree size 7 that the witnesses cosigned" in rolled.stdout
        for cosigned in folder.glob("*.cosigned"):  # the operator deletes those too
            cosigned.unlink()
        asked = sealer.verify("--policy", str(policy), "--ask-witnesses")
        assert asked.returncode == 1, asked.stdout
        assert "witness_refused: witness alpha holds tree size 7 of test.example/audit" in asked.stdout
        assert [_state_size(w, key.name) for w in ws] == [7, 7, 7]
        assert sealer.verify().returncode == 0  # the log's key alone vouches for the rewrite
    finally:
        for running in [sealer, fork]:
            if running is not None and running.proc.poll() is None:
                running.proc.kill()
                running.proc.wait()
        for w in ws:
            w.stop()


def _bundles_carry_the_cosignatures(sealer: Sealer, policy: Path, tmp_path: Path) -> None:
    located = ("--store", sealer.store, "--anchor-dir", str(sealer.anchor_dir), "--key", sealer.verifier_key)
    witnessed_bundle, plain_bundle = tmp_path / "witnessed.bundle", tmp_path / "plain.bundle"
    made = run_cli("export", *located, "--policy", str(policy), "--out", str(witnessed_bundle))
    assert made.returncode == 0, made.stderr
    assert run_cli("export", *located, "--out", str(plain_bundle)).returncode == 0
    checked = run_cli(
        "verify-bundle", str(witnessed_bundle), "--key", sealer.verifier_key, "--policy", str(policy)
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "witnessed: test.example/audit tree size 7 cosigned by alpha, beta, gamma" in checked.stdout
    plain = run_cli("verify-bundle", str(plain_bundle), "--key", sealer.verifier_key, "--policy", str(policy))
    assert plain.returncode == 1, plain.stdout
    assert "witness_quorum: checkpoint of test.example/audit at tree size 7 does not meet" in plain.stdout
    assert run_cli("verify-bundle", str(plain_bundle), "--key", sealer.verifier_key).returncode == 0


def _key(witness: RunningWitness) -> CosignerKey:
    return CosignerKey.parse((witness.state.parent / "witness.key").read_text())
