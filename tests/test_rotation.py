"""Key rotation with real `otel-audit serve` processes: the old key hands over to the new one
inside the log (otel_audit/rotation.py), a verifier who trusts only the old key follows it, and
a checkpoint the old key signs after the handover is caught."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.store import Store
from otel_audit.anchors import read_anchors, write_anchor
from otel_audit.checkpoint import Checkpoint, open_checkpoint
from otel_audit.errors import SignatureError
from otel_audit.note import SignedNote, SignerKey
from otel_audit.rotation import NEXT_KEY_EXTENSION, follow_keys, handover_extension

from .conftest import Sealer, run_cli, start_sealer
from .producers import send_audit_events

ORIGIN = "rotate.example/audit"


def _verify(sealer: Sealer, *keys: str, extra: tuple[str, ...] = ()) -> tuple[int, dict]:
    flags = [arg for key in keys for arg in ("--key", key)]
    done = run_cli(
        "verify", "--store", sealer.store, "--anchor-dir", str(sealer.anchor_dir), *flags, "--json", *extra
    )
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def _rotated(tmp_path: Path) -> tuple[Sealer, SignerKey, SignerKey]:
    """200 records under the old key, then a restart with the new key and --previous-key, 100
    records, the handover checkpoint, 100 more; both processes stopped."""
    old, new = SignerKey.generate(ORIGIN), SignerKey.generate(ORIGIN)
    first = start_sealer(tmp_path, old)
    send_audit_events(first.endpoint, 200)
    assert first.stop() == 0, "".join(first.output)
    (tmp_path / "old.key").write_text(old.serialize() + "\n")
    (tmp_path / "new.key").write_text(new.serialize() + "\n")
    second = start_sealer(
        tmp_path, new, "--key", str(tmp_path / "new.key"), "--previous-key", str(tmp_path / "old.key")
    )
    second.wait_for_output(r"continues at Seq 200")
    send_audit_events(second.endpoint, 100, start=200)
    second.wait_for_output(r"key handover at tree size")  # then checkpoints by the new key alone
    send_audit_events(second.endpoint, 100, start=300)
    assert second.stop() == 0, "".join(second.output)
    return second, old, new


@pytest.mark.integration
def test_a_verifier_who_trusts_the_old_key_follows_the_handover(tmp_path: Path) -> None:
    sealer, old, new = _rotated(tmp_path)
    store = Store.open(sealer.store)
    try:
        notes = [cp.note for cp in store.checkpoints(ORIGIN)]
    finally:
        store.close()
    handovers = [n for n in notes if NEXT_KEY_EXTENSION in n]
    assert len(handovers) == 1  # only the first checkpoint of the new key
    opened = open_checkpoint(handovers[0], old.verifier(), new.verifier())
    assert set(opened.verified_by) == {old.verifier(), new.verifier()}
    assert handover_extension(new.verifier()) in opened.checkpoint.other_extensions
    after = [n for n in notes if read_size(n) > opened.checkpoint.tree_size]
    assert after and all(open_checkpoint(n, new.verifier()).verified_by == (new.verifier(),) for n in after)
    with pytest.raises(SignatureError):  # the old key alone no longer signs
        open_checkpoint(after[-1], old.verifier())

    code, report = _verify(sealer, old.verifier().serialize())
    assert code == 0, report
    assert report["records"] == 400 and report["signed_size"] == 400
    label_old, label_new = f"{ORIGIN}+{old.key_id:08x}", f"{ORIGIN}+{new.key_id:08x}"
    handover = opened.checkpoint.tree_size
    assert f"key {label_old} signed Seq 0..{handover - 1}" in report["notes"]
    learned = f"key {label_new} (learned from the log's key handover)"
    assert f"{learned} signed Seq {_previous(notes, handover)}..399" in report["notes"]
    code, both = _verify(sealer, old.verifier().serialize(), new.verifier().serialize())
    assert code == 0 and both["signed_size"] == 400, both
    code, only_new = _verify(sealer, new.verifier().serialize())
    assert code == 1  # a verifier given only the new key cannot check what the old one signed
    assert any(f["kind"] == "signature" for f in only_new["findings"])

    trust = tmp_path / "trust"
    trust.write_text(f"# the log's keys\n{old.verifier().serialize()}\n\n{new.verifier().serialize()}\n")
    text = run_cli(
        "verify", "--store", sealer.store, "--anchor-dir", str(sealer.anchor_dir), "--trust", str(trust)
    )
    assert text.returncode == 0, text.stdout + text.stderr
    assert f"note: key {label_new} signed Seq" in text.stdout


def read_size(note: str) -> int:
    return int(note.split("\n")[1])


def _previous(notes: list[str], size: int) -> int:
    return max(read_size(n) for n in notes if read_size(n) < size)


@pytest.mark.integration
def test_a_checkpoint_the_old_key_signs_after_the_handover_is_caught(tmp_path: Path) -> None:
    sealer, old, new = _rotated(tmp_path)
    anchors, problems = read_anchors(sealer.anchor_dir, ORIGIN)
    assert not problems
    newest = anchors[-1]
    assert newest.checkpoint.tree_size == 400
    # Whoever still holds the old key signs the newest checkpoint's body again, alone, and
    # puts it in the anchor directory in place of the new key's.
    forged = SignedNote.sign(newest.checkpoint.serialize(), old).serialize()
    write_anchor(sealer.anchor_dir, ORIGIN, 400, forged)

    for keys in ([old], [old, new]):
        code, report = _verify(sealer, *(k.verifier().serialize() for k in keys))
        assert code == 1, report
        late = [f for f in report["findings"] if "after its successor" in f["message"]]
        assert len(late) == 1, report["findings"]
        assert f"{ORIGIN}+{old.key_id:08x}" in late[0]["message"]
        assert "tree size 400" in late[0]["message"] and late[0]["last_seq"] == 399


def _body(size: int, *extensions: str) -> str:
    return Checkpoint(ORIGIN, size, bytes(32), bytes(32), 1, 0, bytes(32), extensions).serialize()


def test_follow_keys_learns_only_handovers_the_successor_signed() -> None:
    old, new, rogue = (SignerKey.generate(ORIGIN) for _ in range(3))
    # the announced key did not sign its own handover: nothing is learned
    unsigned = SignedNote.sign(_body(10, handover_extension(rogue.verifier())), old).serialize()
    assert follow_keys([unsigned], [old.verifier()]).learned == ()
    notes = [
        SignedNote.sign(_body(5), old).serialize(),
        SignedNote.sign(_body(10, handover_extension(new.verifier())), old, new).serialize(),
        SignedNote.sign(_body(15), new).serialize(),
    ]
    history = follow_keys(notes, [old.verifier()])
    assert history.learned == (new.verifier(),) and history.late == ()
    assert {(r.key, r.first, r.last) for r in history.ranges} == {
        (f"{ORIGIN}+{old.key_id:08x}", 0, 9),
        (f"{ORIGIN}+{new.key_id:08x}", 5, 14),
    }
    late = follow_keys([*notes, SignedNote.sign(_body(20), old).serialize()], [old.verifier()]).late
    assert [(x.tree_size, x.first, x.last, x.since) for x in late] == [(20, 15, 19, 10)]


@pytest.mark.integration
def test_verify_bundle_takes_the_old_and_new_keys_and_names_the_signer(tmp_path: Path) -> None:
    sealer, old, new = _rotated(tmp_path)
    bundle = tmp_path / "after.bundle"
    done = run_cli(
        "export", "--store", sealer.store, "--key", new.verifier().serialize(), "--out", str(bundle)
    )
    assert done.returncode == 0, done.stderr
    trust = tmp_path / "trust"
    trust.write_text(f"{old.verifier().serialize()}\n{new.verifier().serialize()}\n")
    checked = run_cli("verify-bundle", str(bundle), "--trust", str(trust))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{ORIGIN}: checkpoint signed by {ORIGIN}+{new.key_id:08x}" in checked.stdout
    as_json = json.loads(run_cli("verify-bundle", str(bundle), "--trust", str(trust), "--json").stdout)
    assert as_json["ok"] and as_json["signed_by"] == {ORIGIN: [f"{ORIGIN}+{new.key_id:08x}"]}
    single = run_cli("verify-bundle", str(bundle), "--key", new.verifier().serialize(), "--json")
    assert "signed_by" not in json.loads(single.stdout)  # one key per log: the report as before
    stale = run_cli("verify-bundle", str(bundle), "--key", old.verifier().serialize())
    assert stale.returncode == 1  # a bundle holds no handover: the old key alone cannot vouch for it


@pytest.mark.integration
def test_serve_refuses_a_retired_key_alone_and_a_previous_key_of_another_log(tmp_path: Path) -> None:
    sealer, _, _ = _rotated(tmp_path)
    flags = ["--store", sealer.store, "--anchor-dir", str(sealer.anchor_dir), "--grpc", "127.0.0.1:0"]
    flags += ["--http", "off", "--metrics", "off", "--journal", "off"]
    retired = run_cli("serve", *flags, "--key", str(tmp_path / "old.key"), cwd=tmp_path)
    assert retired.returncode == 2 and "--previous-key" in retired.stderr, retired.stderr
    other = tmp_path / "other.key"
    other.write_text(SignerKey.generate("other.example/audit").serialize() + "\n")
    for previous, match in ((other, "another key of the same log"), (tmp_path / "new.key", "another key")):
        refused = run_cli(
            "serve", *flags, "--key", str(tmp_path / "new.key"), "--previous-key", str(previous), cwd=tmp_path
        )
        assert refused.returncode == 2 and match in refused.stderr, refused.stderr
