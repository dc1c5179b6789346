"""Evidence end to end: search, export, verify-bundle, proof, consistency and query against a
real `otel-audit serve`, first while it runs (through its local read API) and then with the
store opened directly.

The log: 1,500 events from the OTel SDK, one a minute from 2026-03-03T00:00Z (so March 3rd
holds events 0..1439 and March 4th events 1440..1499). Event i is by trader-(i % 7), fails
when i % 5 == 0 and concerns order/i (tests/producers.py).
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from backend.store import Store
from otel_audit.bundle import verify_bundle
from otel_audit.checkpoint import open_checkpoint, read_unverified
from otel_audit.entry import decode_entry
from otel_audit.errors import EXIT_FAILED, AuditError
from otel_audit.merkle import hash_leaf
from otel_audit.note import SignedNote, SignerKey
from otel_audit.proof import verify_consistency
from otel_audit.tlog_proof import TlogProof
from sealer.read_api import ReadApi, call

from .conftest import Sealer, run_cli, start_sealer
from .producers import send_audit_events

COUNT = 1500
MARCH_3 = int(datetime(2026, 3, 3, tzinfo=UTC).timestamp()) * 10**9


def _expected(predicate) -> list[int]:  # type: ignore[no-untyped-def]
    return [i for i in range(COUNT) if predicate(i)]


@pytest.fixture(scope="module")
def key() -> SignerKey:
    return SignerKey.generate("evidence.example/audit")


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, key: SignerKey):  # type: ignore[no-untyped-def]
    sealer = start_sealer(tmp_path_factory.mktemp("ev"), key)
    send_audit_events(sealer.endpoint, 1000, first_timestamp_ns=MARCH_3)
    sealer.wait_for_output(r"checkpoint \S+ size 1000\b")  # an anchor at 1000, for consistency
    send_audit_events(
        sealer.endpoint, COUNT - 1000, start=1000, first_timestamp_ns=MARCH_3 + 1000 * 60 * 10**9
    )
    sealer.wait_for_output(rf"checkpoint \S+ size {COUNT}\b")
    yield sealer
    sealer.kill()


@pytest.fixture(scope="module")
def stopped(running: Sealer) -> Sealer:
    """The same log after serve stopped: the CLI now opens the store itself."""
    assert running.stop() == 0
    return running


def cli(sealer: Sealer, *args: str) -> tuple[int, str, str]:
    done = run_cli(*args, "--store", sealer.store, cwd=sealer.workdir)
    return done.returncode, done.stdout, done.stderr


def _seqs_of_jsonl(text: str) -> list[int]:
    return [json.loads(line)["seq"] for line in text.splitlines()]


# -- while serve runs: everything goes through its read API --------------------------------


def test_search_one_user_one_day_in_time_order(running: Sealer) -> None:
    rc, out, err = cli(
        running, "search", "--user", "trader-3", "--since", "2026-03-03", "--until", "2026-03-04", "--json"
    )
    assert rc == 0, err
    seqs = _seqs_of_jsonl(out)
    assert seqs == _expected(lambda i: i % 7 == 3 and i < 1440)
    first = json.loads(out.splitlines()[0])
    assert first["actor"] == "trader-3" and first["action"] == "order.place"
    assert first["timestamp"] == "2026-03-03T00:03:00.000000000Z"
    assert first["resource"] == "order/3" and first["body"] == "order 3 placed"


@pytest.mark.parametrize(
    ("flags", "predicate"),
    [
        (["--outcome", "failure", "--since", "2026-03-04"], lambda i: i % 5 == 0 and i >= 1440),
        (["--resource", "order/77"], lambda i: i == 77),
        (["--text", "ORDER 123 PLACED"], lambda i: i == 123),
        (["--since", "2026-03-03T10:00:00Z", "--until", "2026-03-03T10:05:00"], lambda i: 600 <= i < 605),
        (["--service", "orders", "--user", "trader-0", "--outcome", "failure"], lambda i: i % 35 == 0),
        (["--event", "audit.order.place", "--until", "2026-03-03T00:03:00Z"], lambda i: i < 3),
        (["--service", "payments"], lambda i: False),
        (["--action", "order.cancel"], lambda i: False),
    ],
)
def test_search_filters(running: Sealer, flags: list[str], predicate) -> None:  # type: ignore[no-untyped-def]
    rc, out, err = cli(running, "search", *flags, "--json", "--limit", "5000")
    assert rc == 0, err
    assert _seqs_of_jsonl(out) == _expected(predicate)


def test_search_table_and_limit(running: Sealer) -> None:
    rc, out, err = cli(running, "search", "--user", "trader-1", "--limit", "3")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["TIMESTAMP", "SEQ", "SERVICE"]
    assert [line.split()[1] for line in lines[1:]] == ["1", "8", "15"]
    assert "more than 3 records match" in err


def test_bad_time_is_a_usage_error(running: Sealer) -> None:
    rc, _, err = cli(running, "search", "--since", "March 3rd")
    assert rc == 2 and "use a date" in err


def test_query_reads_and_refuses_writes(running: Sealer) -> None:
    rc, out, err = cli(running, "query", "SELECT count() FROM otel_audit.logs", "--format", "TSV")
    assert (rc, out) == (0, f"{COUNT}\n"), err
    for sql in [
        "INSERT INTO otel_audit.logs (Seq) VALUES (99999)",
        "DROP TABLE otel_audit.logs",
        "ALTER TABLE otel_audit.logs DELETE WHERE 1",
        "TRUNCATE TABLE otel_audit.checkpoints",
        "CREATE TABLE otel_audit.x (a UInt8) ENGINE = Memory",
        "SELECT 1 SETTINGS readonly = 0",
    ]:
        rc, _, err = cli(running, "query", sql)
        assert rc == 2 and "read-only" in err, (sql, err)
    rc, out, _ = cli(running, "query", "SELECT count() FROM otel_audit.logs", "--format", "TSV")
    assert out == f"{COUNT}\n"
    rc, _, err = cli(running, "query", "SELEKT 1")
    assert rc == 2 and "Syntax error" in err


def test_proof_of_one_record_verifies_on_its_own(running: Sealer, key: SignerKey) -> None:
    rc, out, err = cli(running, "proof", "--seq", "1234", "--key", key.verifier().serialize())
    assert rc == 0, err
    proof = TlogProof.parse(out)
    assert proof.index == 1234
    rc, entry_hex, _ = cli(
        running, "query", "SELECT hex(Entry) FROM otel_audit.logs WHERE Seq = 1234", "--format", "TSV"
    )
    entry = bytes.fromhex(entry_hex.strip())
    checkpoint = proof.verify(hash_leaf(entry), key.verifier())
    assert checkpoint.tree_size >= 1235
    assert decode_entry(entry)[0].seq == 1234
    with pytest.raises(Exception, match="does not lead"):
        proof.verify(hash_leaf(entry + b"x"), key.verifier())


def test_proof_of_an_unsigned_or_unknown_record_is_refused(running: Sealer, key: SignerKey) -> None:
    rc, _, err = cli(running, "proof", "--seq", "999999", "--key", key.verifier().serialize())
    assert rc == 2 and "not covered by a checkpoint" in err


def test_consistency_with_every_anchor(running: Sealer, key: SignerKey) -> None:
    anchors = sorted(running.anchor_dir.glob("*/0*.checkpoint"))
    assert anchors
    for anchor in anchors:
        old = open_checkpoint(anchor.read_text(), key.verifier()).checkpoint
        rc, out, err = cli(
            running,
            "consistency",
            "--from",
            str(old.tree_size),
            "--key",
            key.verifier().serialize(),
            "--json",
        )
        assert rc == 0, err
        body = json.loads(out)
        new = open_checkpoint(body["new_checkpoint"], key.verifier()).checkpoint
        hashes = [base64.b64decode(h) for h in body["hashes"]]
        verify_consistency(
            old.tree_size, new.tree_size, hashes, old.root_hash, new.root_hash
        )  # raises if not
        assert body["old_checkpoint"] == anchor.read_text()
    rc, out, _ = cli(running, "consistency", "--from", "7", "--key", key.verifier().serialize())
    assert rc == 0 and out.startswith("old 7\n")


def _export(sealer: Sealer, key: SignerKey, name: str, *flags: str) -> bytes:
    out = sealer.workdir / name
    rc, _, err = cli(sealer, "export", *flags, "--key", key.verifier().serialize(), "--out", str(out))
    assert rc == 0, err
    return out.read_bytes()


def test_export_verifies_offline_and_is_deterministic(running: Sealer, key: SignerKey) -> None:
    flags = ("--user", "trader-3", "--since", "2026-03-03", "--until", "2026-03-04")
    bundle = _export(running, key, "a.bundle", *flags)
    assert _export(running, key, "b.bundle", *flags) == bundle
    done = run_cli("verify-bundle", str(running.workdir / "a.bundle"), "--key", key.verifier().serialize())
    rc, out, err = done.returncode, done.stdout, done.stderr
    expected = _expected(lambda i: i % 7 == 3 and i < 1440)
    assert rc == 0, out + err
    assert f"OK: {len(expected)} of {len(expected)} records proven" in out
    assert "query.json" in out and "README.txt" in out  # named as not covered by any proof
    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        lines = archive.read("records.jsonl").decode().splitlines()
        names = archive.namelist()
        assert "records.csv" in names and "records.html" in names
    assert [json.loads(line)["seq"] for line in lines] == expected
    rc, _, err = cli(
        running,
        "export",
        *flags,
        "--key",
        key.verifier().serialize(),
        "--out",
        str(running.workdir / "a.bundle"),
    )
    assert rc == 2 and "never overwritten" in err


def test_export_needs_the_key(running: Sealer) -> None:
    rc, _, err = cli(running, "export", "--user", "trader-3", "--out", str(running.workdir / "nokey.bundle"))
    assert rc == 2 and "--key" in err


# -- after serve stopped: the CLI opens the store itself ------------------------------------


def test_read_commands_work_on_a_stopped_sealer(stopped: Sealer, key: SignerKey) -> None:
    rc, out, err = cli(stopped, "search", "--user", "trader-3", "--since", "2026-03-04", "--json")
    assert rc == 0, err
    assert _seqs_of_jsonl(out) == _expected(lambda i: i % 7 == 3 and i >= 1440)
    rc, out, _ = cli(stopped, "query", "SELECT max(Seq) FROM otel_audit.logs", "--format", "TSV")
    assert out == f"{COUNT - 1}\n"
    rc, out, err = cli(stopped, "proof", "--seq", "0")
    assert rc == 0 and TlogProof.parse(out).index == 0
    assert "signature not checked" in err
    bundle = _export(stopped, key, "stopped.bundle", "--resource", "order/1499")
    assert verify_bundle(bundle, [key.verifier()]).records_verified == 1


FORGED_KEY_ID = "f0f0f0f0"  # marks the rows a test forges, so that it can remove them


@pytest.mark.parametrize("forgery", ["same root, another key", "another root, another key", "another size"])
def test_consistency_refuses_a_forged_old_checkpoint_row(
    stopped: Sealer, key: SignerKey, forgery: str
) -> None:
    """A row put into the checkpoints table for the old tree size (newer than the real one, so
    the store returns it) is opened with --key like the new checkpoint, and refused naming its
    size; it was once served as `old_checkpoint` unchecked."""
    old = 1000
    impostor = SignerKey.generate(key.name)  # the log's name, other key material
    store = Store.open(stopped.store)
    try:
        real = store.checkpoint_at(key.name, old)
        assert real is not None
        body = read_unverified(real.note).checkpoint
        size, note, problem = old, real.note, f"its note signs tree size {old}"
        if forgery == "same root, another key":
            note, problem = SignedNote.sign(body.serialize(), impostor).serialize(), "no signature by"
        elif forgery == "another root, another key":
            forged = replace(body, root_hash=bytes([7]) * 32).serialize()
            note, problem = SignedNote.sign(forged, impostor).serialize(), "no signature by"
        else:
            size = old - 1  # the real note of 1000, filed under 999
        store.command(
            "INSERT INTO otel_audit.checkpoints (Origin, TreeSize, RootHash, ChainHead, SealedAt, "
            "CreatedAt, KeyId, Note, CompactRange) "
            f"SELECT Origin, {size}, RootHash, ChainHead, SealedAt, CreatedAt + 1, '{FORGED_KEY_ID}', "
            f"unhex('{note.encode().hex()}'), CompactRange FROM otel_audit.checkpoints "
            f"WHERE Origin = '{key.name}' AND TreeSize = {old} ORDER BY CreatedAt DESC LIMIT 1 "
            "SETTINGS insert_deduplicate = 0"
        )
        assert store.checkpoint_at(key.name, size).note == note  # the store now serves the forgery
    finally:
        store.close()
    try:
        rc, out, err = cli(stopped, "consistency", "--from", str(size), "--key", key.verifier().serialize())
        assert rc == 1 and not out, err
        assert f"checkpoint of {key.name!r} at tree size {size} is not a checkpoint of this log" in err
        assert problem in err and "otel-audit verify" in err
    finally:
        store = Store.open(stopped.store)
        try:
            store.command(
                f"ALTER TABLE otel_audit.checkpoints DELETE WHERE KeyId = '{FORGED_KEY_ID}' "
                "SETTINGS mutations_sync = 1"
            )
        finally:
            store.close()
    rc, _, err = cli(stopped, "consistency", "--from", str(old), "--key", key.verifier().serialize())
    assert rc == 0, err  # the real row again


def test_altered_tree_nodes_fail_proofs_and_verify(stopped: Sealer, key: SignerKey, tmp_path) -> None:
    store = Store.open(stopped.store)
    try:
        store.command(
            "ALTER TABLE otel_audit.tree_nodes UPDATE Hash = toFixedString(repeat('x', 32), 32) "
            "WHERE Height = 8 AND NodeIndex = 1 SETTINGS mutations_sync = 1"
        )
    finally:
        store.close()
    rc, _, err = cli(stopped, "proof", "--seq", "1", "--key", key.verifier().serialize())
    assert rc == 1 and "altered" in err and "otel-audit verify" in err  # the node is on its path
    rc, _, err = cli(stopped, "proof", "--seq", "300", "--key", key.verifier().serialize())
    assert rc == 0, err  # inside that subtree: its proof is built from the leaves, not the node
    done = run_cli(
        "verify",
        "--store",
        stopped.store,
        "--anchor-dir",
        str(stopped.anchor_dir),
        "--key",
        key.verifier().serialize(),
        "--json",
    )
    report = json.loads(done.stdout)
    assert done.returncode == 1
    kinds = [f["kind"] for f in report["findings"]]
    assert kinds and set(kinds) == {"consistency"}  # the log itself is intact
    assert "tree_nodes was altered" in report["findings"][0]["message"]
    # The same failed check run by a sealer for the CLI (sealer/read_api.py) keeps its exit code.
    api = ReadApi(stopped.store, tmp_path / "read.sock")
    assert api.start()
    try:
        with pytest.raises(AuditError) as relayed:
            call(tmp_path / "read.sock", "proof", {"seq": 1, "keys": [key.verifier().serialize()]})
    finally:
        api.stop()
    assert relayed.value.exit_code == EXIT_FAILED and "altered" in str(relayed.value)
