"""Trusted time (RFC 3161): a real TSA (OpenSSL's `openssl ts -reply`, tests/tsa.py) stamps the
sealer's checkpoints; `verify` checks each token and says what it proves."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.store import Store
from otel_audit.anchors import read_timestamps
from otel_audit.bundle import Manifest, ManifestRecord
from otel_audit.errors import FormatError, TimestampError, TsaUnavailableError
from otel_audit.timestamp import load_roots, timestamp_request, verify_token
from sealer.timestamper import ask_tsa

from .conftest import Sealer, metrics_url, run_cli, start_sealer
from .producers import send_audit_events
from .tsa import OpensslTsa, TsaFiles, make_tsa_files

NOTE = b"test.example/audit\n3\nAAAA\n\n\xe2\x80\x94 test.example/audit abcd\n"


@pytest.fixture
def tsa_files(tmp_path: Path) -> TsaFiles:
    return make_tsa_files(tmp_path / "tsa")


@pytest.fixture
def tsa(tsa_files: TsaFiles) -> Iterator[OpensslTsa]:
    server = OpensslTsa(tsa_files).start()
    yield server
    server.stop()


def _token(tsa: OpensslTsa, note: bytes = NOTE) -> tuple[bytes, int]:
    request = timestamp_request(note)
    return ask_tsa(tsa.url, request.der), request.nonce


# -- the token check --------------------------------------------------------------------


def test_a_token_from_the_tsa_verifies_and_names_the_tsa(tsa: OpensslTsa, tsa_files: TsaFiles) -> None:
    token, nonce = _token(tsa)
    stamp = verify_token(token, NOTE, load_roots(tsa_files.ca_pem.read_bytes(), "ca"), nonce)
    assert stamp.tsa == "Test TSA"
    assert abs(stamp.gen_time.timestamp() - time.time()) < 3600  # the TSA's clock, not ours
    # The public tool agrees (the CA from the roots, the TSA certificate from the token).
    (tsa_files.ca_pem.parent / "t.tsr").write_bytes(token)
    (tsa_files.ca_pem.parent / "note").write_bytes(NOTE)
    done = subprocess.run(
        ["openssl", "ts", "-verify", "-in", "t.tsr", "-data", "note", "-CAfile", "ca.pem"],
        cwd=tsa_files.ca_pem.parent, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0 and "Verification: OK" in done.stdout, done.stderr


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("another note", "Mismatch between messages"),
        ("other roots", "certificate verify error"),
        ("signature altered", "verif|decode"),
        ("wrong nonce", "Nonce mismatch"),
        ("not a response", "not an RFC 3161 TimeStampResp"),
    ],
)
def test_a_token_that_proves_nothing_is_refused(
    tsa: OpensslTsa, tsa_files: TsaFiles, tmp_path: Path, case: str, match: str
) -> None:
    token, nonce = _token(tsa)
    roots = load_roots(tsa_files.ca_pem.read_bytes(), "ca")
    note, check_nonce = NOTE, None
    if case == "another note":
        note = NOTE.replace(b"3", b"4")
    elif case == "other roots":
        roots = load_roots(make_tsa_files(tmp_path / "other", "Other TSA").ca_pem.read_bytes(), "other")
    elif case == "signature altered":
        token = _flip(token, len(token) - 10)  # inside the signature value, the last field
    elif case == "wrong nonce":
        check_nonce = nonce + 1
    elif case == "not a response":
        token = b"\x30\x03\x02\x01\x00"
    with pytest.raises(TimestampError, match=match):
        verify_token(token, note, roots, check_nonce)


def test_a_tsa_that_is_down_is_reported_as_unavailable(tsa: OpensslTsa) -> None:
    tsa.down = True
    with pytest.raises(TsaUnavailableError, match="HTTP 503"):
        _token(tsa)
    tsa.stop()
    with pytest.raises(TsaUnavailableError, match="did not answer"):
        _token(tsa)


# -- the sealer ---------------------------------------------------------------------------


def _serve(tmp_path: Path, signer_key, tsa: OpensslTsa, tsa_files: TsaFiles, *extra: str) -> Sealer:
    return start_sealer(
        tmp_path / "sealer",
        signer_key,
        "--tsa", tsa.url, "--tsa-roots", str(tsa_files.ca_pem), "--timestamp-interval", "0.5", *extra,
    )  # fmt: skip


def _verify(sealer: Sealer, roots: Path | None, *extra: str) -> tuple[int, dict]:
    args = ("--tsa-roots", str(roots)) if roots else ()
    done = sealer.verify("--json", *args, *extra)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def _wait(condition, what: str, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _tokens(sealer: Sealer) -> list[int]:
    files, problems = read_timestamps(sealer.anchor_dir, sealer.key.name)
    assert not problems
    return [f.tree_size for f in files]


@pytest.fixture
def sealer_dir(tmp_path: Path) -> Path:
    (tmp_path / "sealer").mkdir()
    return tmp_path / "sealer"


@pytest.mark.integration
def test_serve_stamps_checkpoints_and_verify_says_when_records_existed(
    tmp_path: Path, sealer_dir: Path, signer_key, tsa: OpensslTsa, tsa_files: TsaFiles
) -> None:
    sealer = _serve(tmp_path, signer_key, tsa, tsa_files)
    try:
        send_audit_events(sealer.endpoint, 50)
        _wait(lambda: 50 in _tokens(sealer), "a token over checkpoint 50")
    finally:
        assert sealer.stop() == 0, "".join(sealer.output)
    store = Store.open(sealer.store, read_only=True)
    try:
        stored = store.timestamps(signer_key.name)
    finally:
        store.close()
    assert [t.tsa for t in stored] == [tsa.url] * len(stored) and 50 in [t.tree_size for t in stored]
    files, _ = read_timestamps(sealer.anchor_dir, signer_key.name)
    assert all(f.path.stat().st_mode & 0o777 == 0o600 for f in files)
    assert {f.token for f in files} == {t.token for t in stored}  # the same tokens in both places

    code, report = _verify(sealer, tsa_files.ca_pem)
    assert code == 0, report
    assert "records up to Seq 49 existed no later than" in " ".join(report["timestamps"])
    assert all(line.endswith("(Test TSA)") for line in report["timestamps"])
    text = sealer.verify("--tsa-roots", str(tsa_files.ca_pem))
    assert re.search(r"time-stamped: records up to Seq 49 existed no later than 20\d\d-", text.stdout)

    code, report = _verify(sealer, None)  # tokens without roots: checked nothing, and says so
    assert code == 0 and report["timestamps"] == []
    assert any("time-stamp tokens were not checked" in w for w in report["warnings"])


@pytest.mark.integration
def test_a_tsa_that_is_down_never_holds_back_ingest_and_is_caught_up_later(
    tmp_path: Path, sealer_dir: Path, signer_key, tsa: OpensslTsa, tsa_files: TsaFiles
) -> None:
    tsa.down = True
    sealer = _serve(tmp_path, signer_key, tsa, tsa_files)
    try:
        send_audit_events(sealer.endpoint, 40)  # acknowledged while the TSA refuses every query
        _wait(lambda: any("TSA " in line and "503" in line for line in sealer.output), "the outage logged")
        status = run_cli("status", "--store", sealer.store, "--json")
        assert status.returncode == 0, status.stderr
        (shown,) = json.loads(status.stdout)["sealer"]["timestamps"]
        assert shown["url"] == tsa.url and shown["tree_size"] is None and "HTTP 503" in shown["problem"]
        metrics = urllib.request.urlopen(metrics_url(sealer) + "/metrics").read().decode()
        assert re.search(
            r'otel_audit_timestamp_requests_total\{outcome="failed",tsa="[^"]+"\} [1-9]', metrics
        )
        assert _tokens(sealer) == []
        tsa.down = False
        _wait(lambda: 40 in _tokens(sealer), "the TSA caught up with checkpoint 40")
        status = run_cli("status", "--store", sealer.store)
        assert re.search(r"TSA \S+: newest token over checkpoint 40, [\d.]+ s old\n", status.stdout)
    finally:
        assert sealer.stop() == 0, "".join(sealer.output)
    assert sum("TSA " in line and "503" in line for line in sealer.output) == 1  # once per outage
    assert any("answers again" in line for line in sealer.output)
    code, report = _verify(sealer, tsa_files.ca_pem)
    assert code == 0 and report["records"] == 40, report


@pytest.mark.integration
def test_an_altered_token_a_token_over_another_note_and_wrong_roots_fail_verify(
    tmp_path: Path, sealer_dir: Path, signer_key, tsa: OpensslTsa, tsa_files: TsaFiles
) -> None:
    sealer = _serve(tmp_path, signer_key, tsa, tsa_files)
    try:
        send_audit_events(sealer.endpoint, 30)
        _wait(lambda: 30 in _tokens(sealer), "a token over checkpoint 30")
    finally:
        assert sealer.stop() == 0, "".join(sealer.output)
    files, _ = read_timestamps(sealer.anchor_dir, signer_key.name)
    (stamped,) = [f for f in files if f.tree_size == 30]

    other_roots = make_tsa_files(tmp_path / "other", "Other TSA").ca_pem
    code, report = _verify(sealer, other_roots)
    assert code == 1
    assert {f["kind"] for f in report["findings"]} == {"timestamp"}
    assert any("over checkpoint 30 does not verify" in f["message"] for f in report["findings"])

    stamped.path.write_bytes(_flip(stamped.token, len(stamped.token) - 10))
    code, report = _verify(sealer, tsa_files.ca_pem)
    assert code == 1
    (finding,) = report["findings"]
    assert finding["kind"] == "timestamp" and str(stamped.path) in finding["message"]
    assert "checkpoint 30" in finding["message"]

    over_other, _ = _token(tsa, b"another note\n")  # a genuine token, over other bytes
    stamped.path.write_bytes(over_other)
    code, report = _verify(sealer, tsa_files.ca_pem)
    assert code == 1
    (finding,) = report["findings"]
    assert "checkpoint 30 does not verify: Mismatch between messages" in finding["message"]


@pytest.mark.integration
def test_a_bundle_carries_the_tokens_and_openssl_ts_verify_accepts_them(
    tmp_path: Path, sealer_dir: Path, signer_key, tsa: OpensslTsa, tsa_files: TsaFiles
) -> None:
    sealer = _serve(tmp_path, signer_key, tsa, tsa_files)
    try:
        send_audit_events(sealer.endpoint, 20)
        _wait(lambda: 20 in _tokens(sealer), "a token over checkpoint 20")
    finally:
        assert sealer.stop() == 0, "".join(sealer.output)
    out = tmp_path / "evidence.bundle"
    done = run_cli("export", "--store", sealer.store, "--key", sealer.verifier_key, "--out", str(out))
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(out) as bundle:
        names = bundle.namelist()
        readme = bundle.read("README.txt").decode()
        bundle.extractall(tmp_path / "unzipped")
    token_names = [n for n in names if n.endswith(".tsr")]
    assert token_names and "timestamps/tsa-certs.pem" in names
    assert "openssl ts -verify -in timestamps/" in readme
    (note,) = [n for n in names if n.startswith("checkpoints/")]
    for name in token_names:  # the public tool, as the README says, against the examiner's root
        checked = subprocess.run(
            ["openssl", "ts", "-verify", "-in", name, "-data", note, "-CAfile", str(tsa_files.ca_pem)],
            cwd=tmp_path / "unzipped", capture_output=True, text=True,
        )  # fmt: skip
        assert checked.returncode == 0 and "Verification: OK" in checked.stdout, checked.stderr

    key = ("--key", sealer.verifier_key)
    good = run_cli("verify-bundle", str(out), *key, "--tsa-roots", str(tsa_files.ca_pem))
    assert good.returncode == 0, good.stdout + good.stderr
    assert re.search(
        r"time-stamped: test.example/audit: records up to Seq 19 existed no later than", good.stdout
    )
    unchecked = run_cli("verify-bundle", str(out), *key, "--json")
    assert unchecked.returncode == 0 and any(
        "not checked" in u for u in json.loads(unchecked.stdout)["unproven"]
    )
    other = make_tsa_files(tmp_path / "other", "Other TSA").ca_pem
    wrong = run_cli("verify-bundle", str(out), *key, "--tsa-roots", str(other), "--json")
    assert wrong.returncode == 1
    assert {f["kind"] for f in json.loads(wrong.stdout)["findings"]} == {"timestamp"}


def test_the_manifest_lists_tokens_only_when_there_are_some_and_parses_them_strictly() -> None:
    record = ManifestRecord("test.example/audit", 0, "00" * 32)
    bare = Manifest(("test.example/audit",), (record,))
    assert "timestamps" not in bare.serialize() and Manifest.parse(bare.serialize()) == bare
    stamped = Manifest(("test.example/audit",), (record,), (("test.example/audit", 2),))
    text = stamped.serialize()
    assert Manifest.parse(text) == stamped
    assert '"timestamps/test.example%2Faudit/1.tsr"' in text
    with pytest.raises(FormatError, match="are not the paths"):
        Manifest.parse(text.replace("/1.tsr", "/7.tsr"))
    with pytest.raises(FormatError, match="not a list for a log of the bundle"):
        Manifest.parse(text.replace('"timestamps":{"test.example/audit"', '"timestamps":{"other"'))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--tsa", "http://127.0.0.1:9/tsa"), "--tsa needs --tsa-roots"),
        (("--timestamp-interval", "0"), "--timestamp-interval must be a positive number"),
        (("--tsa", "http://127.0.0.1:9/tsa", "--tsa-roots", "missing.pem"), "cannot read --tsa-roots"),
    ],
)
def test_serve_refuses_unusable_trusted_time_flags_before_starting(
    tmp_path: Path, flags: tuple[str, ...], message: str
) -> None:
    done = run_cli("serve", "--store", f"chdb://{tmp_path / 'store'}", *flags, cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert not (tmp_path / "store").exists() and not (tmp_path / "otel-audit-data").exists()
