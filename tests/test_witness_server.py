"""`otel-audit witness serve` as a real process: every tlog-witness answer over HTTP, the
state kept across a restart, bounded bodies, and `keygen --witness`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import requests
from aiohttp import web

from otel_audit.checkpoint import Checkpoint
from otel_audit.cosignature import CosignerKey, CosignerVerifierKey, cosigned_by
from otel_audit.merkle import hash_leaf
from otel_audit.merkle import root_from_leaf_hashes as root_of
from otel_audit.note import SignedNote, SignerKey
from otel_audit.proof import consistency_ranges
from otel_audit.tlog_witness import AddCheckpoint, parse_cosignature_lines
from sealer.witness_server import Witness, build_app

from .conftest import run_cli
from .witnesses import start_witness

LOG = SignerKey.generate("log.example/audit")
LEAVES = [hash_leaf(b"entry %d" % i) for i in range(12)]
FORK = [*LEAVES[:2], hash_leaf(b"rewritten"), *LEAVES[3:]]


def _note(size: int, leaves: list[bytes] = LEAVES, key: SignerKey = LOG) -> str:
    body = Checkpoint(key.name, size, root_of(leaves[:size]), b"\0" * 32, 1, 0, b"\0" * 32).serialize()
    return SignedNote.sign(body, key).serialize()


def _post(
    url: str, old: int, new: int, leaves: list[bytes] = LEAVES, key: SignerKey = LOG
) -> requests.Response:
    proof = tuple(root_of(leaves[a:b]) for a, b in consistency_ranges(old, new)) if 0 < old <= new else ()
    return requests.post(url, data=AddCheckpoint(old, proof, _note(new, leaves, key)).serialize(), timeout=30)


def test_witness_answers_every_code_and_keeps_its_state(tmp_path: Path) -> None:
    witness = start_witness(tmp_path / "w", "w.example/one", [LOG.verifier()])
    try:
        url = witness.url
        first = _post(url, 0, 4)
        assert first.status_code == 200, first.text
        assert first.headers["Content-Type"].startswith("text/plain")
        note = SignedNote.parse(_note(4))
        lines = parse_cosignature_lines(note, first.content)
        assert cosigned_by(SignedNote(note.text, lines), (witness.vkey,)).keys() == {"w.example/one"}
        state = json.loads(witness.state.read_text())  # persisted before the answer came
        assert state["logs"]["log.example/audit"]["size"] == 4

        conflict = _post(url, 0, 6)  # old size is not the one it cosigned
        assert (conflict.status_code, conflict.text) == (409, "4\n")
        assert conflict.headers["Content-Type"] == "text/x.tlog.size"
        assert _post(url, 4, 6).status_code == 200  # catches up through a consistency proof
        assert _post(url, 6, 9, FORK).status_code == 422  # a fork: the proof leads elsewhere
        assert _post(url, 6, 6, FORK).status_code == 409  # same size, another root
        assert _post(url, 9, 6).status_code == 400  # old size above the checkpoint's
        assert _post(url, 0, 4, key=SignerKey.generate("other.example")).status_code == 404
        assert _post(url, 6, 8, key=SignerKey.generate("log.example/audit")).status_code == 403
        bad = requests.post(url, data=b"old x\n\n", timeout=30)
        assert bad.status_code == 400 and "old <size>" in bad.text
        huge = requests.post(url, data=b"old 0\n" + b"A" * 70_000, timeout=30)
        assert huge.status_code == 413
        assert requests.get(url, timeout=30).status_code == 405

        witness.stop()  # the state survives a restart: it still refuses to go back
        key = (tmp_path / "w" / "witness.key").read_text()
        again = start_witness(tmp_path / "w", "w.example/one", [LOG.verifier()], key=_cosigner(key))
        try:
            assert (_post(again.url, 0, 9).status_code, _post(again.url, 0, 9).text) == (409, "6\n")
            assert _post(again.url, 6, 9).status_code == 200
        finally:
            again.stop()
    finally:
        witness.stop()


def _cosigner(text: str) -> CosignerKey:
    return CosignerKey.parse(text)


def test_keygen_witness_writes_a_cosigner_key(tmp_path: Path) -> None:
    out = tmp_path / "w.key"
    result = run_cli("keygen", "--witness", "witness.example/compliance", "--out", str(out))
    assert result.returncode == 0, result.stderr
    vkey = CosignerVerifierKey.parse(result.stdout.strip())
    assert vkey.name == "witness.example/compliance"
    assert out.read_text().startswith("PRIVATE+KEY+witness.example/compliance+")
    assert out.stat().st_mode & 0o777 == 0o600
    both = run_cli("keygen", "--witness", "a", "--origin", "b", "--out", str(tmp_path / "x"))
    assert both.returncode == 2 and "not allowed with" in both.stderr


def test_a_client_that_does_not_send_its_body_gets_408_and_others_are_answered(tmp_path: Path) -> None:
    """A half-sent request is cut off after the body timeout; meanwhile another client's
    request is answered at once (one slow client never holds up the witness)."""
    witness = Witness(CosignerKey.generate("witness.example/slow"), {}, tmp_path / "state.json")

    async def scenario() -> tuple[bytes, bytes]:
        runner = web.AppRunner(build_app(witness, body_seconds=0.5), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", port)
            slow_writer.write(b"POST /add-checkpoint HTTP/1.1\r\nHost: w\r\nContent-Length: 100\r\n\r\nold")
            await slow_writer.drain()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            head = (
                b"POST /add-checkpoint HTTP/1.1\r\nHost: w\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
            )
            writer.write(head + b"hello")
            other = await asyncio.wait_for(reader.read(), 5)
            slow = await asyncio.wait_for(slow_reader.read(), 5)
            writer.close()
            slow_writer.close()
            return slow, other
        finally:
            await runner.cleanup()

    slow, other = asyncio.run(scenario())
    assert other.startswith(b"HTTP/1.1 400") and b"malformed add-checkpoint body" in other
    assert slow.startswith(b"HTTP/1.1 408") and b"did not arrive within 0.5 s" in slow
