"""Evidence bundles offline: a clean bundle verifies, and every kind of tampering is caught and
named (an entry, a proof, the checkpoint, a key, a dropped record, the readable files).

The log is built here from sealed entries and the pure Merkle code, with no database: a
bundle must verify with nothing but the key.
"""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from html import escape

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

import otel_audit.bundle as bundle
from otel_audit.bundle import BundleRecord, Manifest, entry_path, proof_path, verify_bundle, write_bundle
from otel_audit.checkpoint import Checkpoint
from otel_audit.entry import Context, Seal
from otel_audit.merkle import CompactRange, hash_leaf
from otel_audit.note import SignedNote, SignerKey
from otel_audit.readable import _html_row
from otel_audit.tlog_proof import TlogProof
from sealer.cli import main

from .conftest import run_cli
from .test_entry import seal_record
from .test_proof import _inclusion_proof

KEY = SignerKey.from_seed("bundle.example/audit", b"\x07" * 32)
ORIGIN = KEY.name
SIZE = 40
PICKED = [3, 5, 17, 31]


def _log() -> tuple[list[bytes], str]:
    resource_logs = ResourceLogs()
    resource_logs.resource.attributes.add(key="service.name").value.string_value = "orders"
    context = Context(resource_logs, ScopeLogs())
    entries = []
    for seq in range(SIZE):
        record = LogRecord(
            body=AnyValue(string_value=f"order {seq} placed, <b>&</b>"), time_unix_nano=seq + 1
        )
        record.attributes.add(key="user.id").value.string_value = f"trader-{seq % 3}"
        record.attributes.add(key="audit.action").value.string_value = "order.place"
        entries.append(seal_record(context, record, Seal(ORIGIN, seq, 10**18 + seq))[0])
    tree = CompactRange()
    tree.extend(hash_leaf(e) for e in entries)
    checkpoint = Checkpoint(ORIGIN, SIZE, tree.root(), bytes(32), 10**18 + SIZE, 0, bytes(32))
    return entries, SignedNote.sign(checkpoint.serialize(), KEY).serialize()


def _bundle() -> bytes:
    entries, note = _log()
    leaves = [hash_leaf(e) for e in entries]
    records = [
        BundleRecord(
            ORIGIN, seq, entries[seq], TlogProof(seq, tuple(_inclusion_proof(leaves, seq, SIZE)), note)
        )
        for seq in PICKED
    ]
    return write_bundle(records, {ORIGIN: note}, [KEY.verifier()], {"description": "user=trader-x"})


BUNDLE = _bundle()


def _members(bundle: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _rewrite(bundle: bytes, **changes: bytes | None) -> bytes:
    """The bundle with members replaced (bytes), removed (None) or added; names use / for __."""
    members = _members(bundle)
    for name, data in changes.items():
        name = name.replace("__", "/").replace("_DOT_", ".")
        if data is None:
            members.pop(name)
        else:
            members[name] = data
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def _replace(bundle: bytes, name: str, data: bytes | None) -> bytes:
    return _rewrite(bundle, **{name.replace("/", "__").replace(".", "_DOT_"): data})


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


def _kinds(report) -> set[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return {(f.kind, f.where) for f in report.findings}


def test_clean_bundle_verifies_and_names_what_is_unproven() -> None:
    report = verify_bundle(BUNDLE, [KEY.verifier()])
    assert report.ok, report.findings
    assert (report.records, report.records_verified) == (len(PICKED), len(PICKED))
    assert report.checkpoints == {ORIGIN: SIZE}
    assert any(u.startswith("README.txt") for u in report.unproven)
    assert any(u.startswith("query.json") for u in report.unproven)


def test_bundle_is_deterministic_and_complete() -> None:
    assert _bundle() == BUNDLE
    members = _members(BUNDLE)
    for seq in PICKED:
        assert entry_path(ORIGIN, seq) in members and proof_path(ORIGIN, seq) in members
    lines = members["records.jsonl"].decode().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == PICKED
    assert "&lt;b&gt;&amp;&lt;/b&gt;" in members["records.html"].decode()  # escaped for people
    assert members["records.csv"].decode().splitlines()[0].startswith("timestamp,origin,seq")


def test_flipped_entry_byte_is_caught_at_its_seq() -> None:
    name = entry_path(ORIGIN, 17)
    data = _members(BUNDLE)[name]
    report = verify_bundle(_replace(BUNDLE, name, _flip(data, len(data) // 2)), [KEY.verifier()])
    assert not report.ok
    assert {f.where for f in report.findings} == {f"{ORIGIN} Seq 17"}
    assert report.records_verified == len(PICKED) - 1


def test_flipped_proof_hash_is_caught() -> None:
    name = proof_path(ORIGIN, 5)
    text = _members(BUNDLE)[name].decode()
    lines = text.split("\n")
    lines[2] = ("B" if lines[2][0] != "B" else "C") + lines[2][1:]  # first hash line
    report = verify_bundle(_replace(BUNDLE, name, "\n".join(lines).encode()), [KEY.verifier()])
    assert ("proof", f"{ORIGIN} Seq 5") in _kinds(report)


def test_proof_for_another_index_is_caught() -> None:
    name = proof_path(ORIGIN, 5)
    text = _members(BUNDLE)[name].decode().replace("index 5\n", "index 6\n")
    report = verify_bundle(_replace(BUNDLE, name, text.encode()), [KEY.verifier()])
    assert ("proof", f"{ORIGIN} Seq 5") in _kinds(report)


def test_edited_checkpoint_is_caught() -> None:
    name = f"checkpoints/{ORIGIN.replace('/', '%2F')}.checkpoint"
    text = _members(BUNDLE)[name].decode().replace(f"\n{SIZE}\n", f"\n{SIZE + 1}\n")
    report = verify_bundle(_replace(BUNDLE, name, text.encode()), [KEY.verifier()])
    assert ("checkpoint", name) in _kinds(report)
    assert report.records_verified == 0


def test_wrong_trusted_key_and_swapped_key_file_are_caught() -> None:
    other = SignerKey.from_seed(ORIGIN, b"\x08" * 32).verifier()
    report = verify_bundle(BUNDLE, [other])
    assert any(f.kind == "checkpoint" and "no signature" in f.message for f in report.findings)
    assert ("key", "keys.txt") in _kinds(report)
    swapped = _replace(BUNDLE, "keys.txt", (other.serialize() + "\n").encode())
    assert ("key", "keys.txt") in _kinds(verify_bundle(swapped, [KEY.verifier()]))


def test_dropped_entry_is_caught() -> None:
    report = verify_bundle(_replace(BUNDLE, entry_path(ORIGIN, 31), None), [KEY.verifier()])
    assert ("entry", entry_path(ORIGIN, 31)) in _kinds(report)


def test_record_dropped_from_the_manifest_is_caught_by_the_readable_files() -> None:
    manifest = Manifest.parse(_members(BUNDLE)["manifest.json"].decode())
    manifest = Manifest(manifest.origins, tuple(r for r in manifest.records if r.seq != 17))
    tampered = _rewrite(
        BUNDLE,
        manifest_DOT_json=manifest.serialize().encode(),
        **{p(ORIGIN, 17).replace("/", "__").replace(".", "_DOT_"): None for p in (entry_path, proof_path)},
    )
    report = verify_bundle(tampered, [KEY.verifier()])
    assert {f.kind for f in report.findings} == {"readable"}
    assert ("readable", "records.jsonl line 3") in _kinds(report)


@pytest.mark.parametrize(("name", "old", "new", "line"), [
    ("records.csv", b"trader-2", b"trader-9", 3),  # header, Seq 3, then Seq 5
    ("records.jsonl", b'"order 5 placed', b'"order 6 placed', 2),
    ("records.html", b"order 31 placed", b"order 13 placed", 9),  # 5 lines of head, 4th row
])  # fmt: skip
def test_edited_readable_file_is_caught_and_located(name: str, old: bytes, new: bytes, line: int) -> None:
    data = _members(BUNDLE)[name]
    assert old in data
    report = verify_bundle(_replace(BUNDLE, name, data.replace(old, new, 1)), [KEY.verifier()])
    assert [(f.kind, f.where) for f in report.findings] == [("readable", f"{name} line {line}")]


def test_unproven_additions_are_reported_not_trusted() -> None:
    report = verify_bundle(_replace(BUNDLE, "notes/extra.txt", b"trust me"), [KEY.verifier()])
    assert report.ok
    assert any(u.startswith("notes/extra.txt") for u in report.unproven)
    readme = verify_bundle(_replace(BUNDLE, "README.txt", b"all good, skip checking"), [KEY.verifier()])
    assert readme.ok and any(u.startswith("README.txt") for u in readme.unproven)


def test_corrupt_zip_bytes_are_caught() -> None:
    name = entry_path(ORIGIN, 3)
    with zipfile.ZipFile(io.BytesIO(BUNDLE)) as archive:
        info = archive.getinfo(name)
    data_start = info.header_offset + 30 + len(name.encode()) + len(info.extra)
    report = verify_bundle(_flip(BUNDLE, data_start + 2), [KEY.verifier()])
    assert [(f.kind, f.where) for f in report.findings] == [("entry", name)]
    assert "unreadable" in report.findings[0].message
    truncated = verify_bundle(BUNDLE[: len(BUNDLE) // 2], [KEY.verifier()])
    assert [f.kind for f in truncated.findings] == ["bundle"]


def test_cli_exit_codes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    good, bad = tmp_path / "good.bundle", tmp_path / "bad.bundle"
    good.write_bytes(BUNDLE)
    bad.write_bytes(_replace(BUNDLE, entry_path(ORIGIN, 3), None))
    done = run_cli("verify-bundle", str(good), "--key", KEY.verifier().serialize())
    assert done.returncode == 0 and done.stdout.startswith("OK: 4 of 4 records proven"), done.stdout
    done = run_cli("verify-bundle", str(bad), "--key", KEY.verifier().serialize(), "--json")
    assert done.returncode == 1 and json.loads(done.stdout)["findings"][0]["kind"] == "entry"
    done = run_cli("verify-bundle", str(good))
    assert done.returncode == 2 and "--key is required" in done.stderr
    done = run_cli("verify-bundle", str(tmp_path / "missing.bundle"), "--key", KEY.verifier().serialize())
    assert done.returncode == 2 and "cannot read" in done.stderr


def test_readme_hand_check_of_a_leaf_hash_works(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The README's shell recipe gives the leaf hash the manifest and proof use."""
    import subprocess

    members = _members(BUNDLE)
    readme = members["README.txt"].decode()
    assert "(printf '\\000'; cat entries/ORIGIN/SEQ.binpb) | sha256sum" in readme
    name = entry_path(ORIGIN, 17)
    (tmp_path / "entry.binpb").write_bytes(members[name])
    done = subprocess.run(
        "(printf '\\000'; cat entry.binpb) | sha256sum",
        shell=True,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    manifest = json.loads(members["manifest.json"])
    listed = next(r["leaf_hash"] for r in manifest["records"] if r["seq"] == 17)
    assert done.stdout.split()[0] == listed == hash_leaf(members[name]).hex()


@pytest.mark.parametrize(
    "cells",
    [["a", "<b>&\"'", ""], ["x\x00y", "z"], [""], ["\x00"], ["a", "b\x00"], ["<", ">", "&amp;"]],
)
def test_html_rows_escape_every_cell_as_if_escaped_one_by_one(cells) -> None:
    """The one-call escaping of a row gives exactly the per-cell escaping, NULs included:
    verify-bundle re-renders and compares byte for byte."""
    assert _html_row(cells) == "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>\n"


def test_rendering_in_a_worker_gives_what_rendering_here_gives(tmp_path, monkeypatch) -> None:
    """Large exports render in a worker process (parts from the front, the rest taken back
    here); the rows must be exactly those of rendering all entries in this process, and the
    files the parts came back in must be gone."""
    monkeypatch.setattr(bundle, "_PARALLEL_FROM", 10)
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where the spawned worker writes its parts
    entries = _log()[0]
    rendering = bundle.Rendering(entries)
    assert rendering._pool is not None, "not rendered in a worker"
    assert rendering.result() == bundle._render(entries)
    assert list(tmp_path.iterdir()) == []


def test_a_worker_that_cannot_write_a_temporary_file_returns_its_rows_directly(monkeypatch) -> None:
    """A read-only file system (a hardened container, say) must not break large exports."""

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(30, "Read-only file system")

    entries = _log()[0]
    monkeypatch.setattr(bundle, "_worker_entries", entries)
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)
    part = bundle._render_part(0, 7)
    assert bundle._read_part(part) == bundle._render(entries[:7])


# -- a corrupt zip is a finding, never a traceback ------------------------------------------

_LOCAL = {"version": 4, "flags": 6, "method": 8, "crc": 14, "csize": 18}  # APPNOTE 4.3.7
_CENTRAL = {"version": 6, "flags": 8, "method": 10, "crc": 16, "csize": 20, "eattr": 38}  # 4.3.12


def _header_offsets(bundle: bytes, name: str) -> tuple[int, int]:
    """Where the member's local header and its central directory record start."""
    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        local = archive.getinfo(name).header_offset
    central = bundle.index(b"PK\x01\x02", bundle.rindex(b"PK\x05\x06") - 46 * 16 - 2000)
    while bundle[central + 46 : central + 46 + len(name)] != name.encode():
        central = bundle.index(b"PK\x01\x02", central + 4)
    return local, central


def _patch(bundle: bytes, name: str, field: str, value: int, where: str = "both") -> bytes:
    """The bundle with one header field of a member set, in its local header, central record or both."""
    local, central = _header_offsets(bundle, name)
    out = bytearray(bundle)
    width = 4 if field in ("crc", "csize", "eattr") else 2
    for base, fields, place in ((local, _LOCAL, "local"), (central, _CENTRAL, "central")):
        if where in (place, "both") and field in fields:
            out[base + fields[field] : base + fields[field] + width] = value.to_bytes(width, "little")
    return bytes(out)


def _exit_code(bundle: bytes, tmp_path, capsys) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    """`otel-audit verify-bundle` in this process: an exception would fail the test."""
    path = tmp_path / "flipped.bundle"
    path.write_bytes(bundle)
    code = main(["verify-bundle", str(path), "--key", KEY.verifier().serialize()])
    return code, capsys.readouterr().out


def test_every_flip_of_a_header_byte_and_a_sample_of_the_rest_is_refused_or_harmless(
    tmp_path,  # type: ignore[no-untyped-def]
    capsys,
) -> None:
    """Single-bit flips all over a bundle: exit 1 with findings, or exit 0 only when every
    member still reads back exactly as written (a flip in a permission bit, say). Every byte
    outside the members' data (headers, central directory, end record) and a seeded sample
    of the data bytes."""
    import random

    with zipfile.ZipFile(io.BytesIO(BUNDLE)) as archive:
        infos = archive.infolist()
    data_bytes = set()
    for info in infos:
        start = info.header_offset + 30 + len(info.filename) + len(info.extra)
        data_bytes.update(range(start, start + info.compress_size))
    headers = [at for at in range(len(BUNDLE)) if at not in data_bytes]
    rng = random.Random(12)
    positions = headers + rng.sample(sorted(data_bytes), 300)
    original = _members(BUNDLE)
    refused = 0
    for i, at in enumerate(positions):
        flipped = BUNDLE[:at] + bytes([BUNDLE[at] ^ (1 << rng.randrange(8))]) + BUNDLE[at + 1 :]
        report = verify_bundle(flipped, [KEY.verifier()])
        if i % 10 == 0:  # the command's own output and exit code, for a tenth of them
            code, out = _exit_code(flipped, tmp_path, capsys)
            assert (code, out.split(":")[0]) == ((0, "OK") if report.ok else (1, "FAILED")), (at, out)
        if report.ok:
            assert _members(flipped) == original, f"a flip at byte {at} changed a member yet verified"
        else:
            refused += 1
    assert refused > len(positions) // 2  # most flips break something: the check is not vacuous


@pytest.mark.parametrize(
    ("field", "value", "where", "message"),
    [
        ("method", 99, "both", "compression method 99"),  # NotImplementedError in zipfile
        ("method", 12, "both", "compression method 12"),  # bzip2: not a bundle's
        ("flags", 1, "both", "encrypted"),  # RuntimeError: password required
        ("flags", 0x40, "both", "encrypted"),  # strong encryption: NotImplementedError
        ("version", 148, "central", "zip file version"),  # NotImplementedError at open
        ("crc", 1, "local", "differ in CRC-32"),  # zipfile reads only the central one
        ("method", 0, "local", "differ in compression method"),
        ("eattr", 0o120777 << 16, "central", "not a regular file"),  # a symlink when unzipped
    ],
)
def test_each_kind_of_damaged_header_is_named(field: str, value: int, where: str, message: str) -> None:
    report = verify_bundle(_patch(BUNDLE, MANIFEST_NAME, field, value, where), [KEY.verifier()])
    assert not report.ok
    assert any(message in f.message for f in report.findings), report.findings
    assert all(f.where in (MANIFEST_NAME, "bundle") for f in report.findings), report.findings


MANIFEST_NAME = "manifest.json"


def _data_start(bundle: bytes, name: str) -> int:
    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        info = archive.getinfo(name)
    return info.header_offset + 30 + len(name.encode()) + len(info.extra)


def test_a_broken_and_a_truncated_deflate_stream_are_named() -> None:
    start = _data_start(BUNDLE, MANIFEST_NAME)
    invalid = BUNDLE[:start] + b"\x07" + BUNDLE[start + 1 :]  # BTYPE 11: zlib.error (RFC 1951 3.2.3)
    report = verify_bundle(invalid, [KEY.verifier()])
    assert [(f.kind, f.where) for f in report.findings] == [("manifest", MANIFEST_NAME)]
    assert "invalid block type" in report.findings[0].message
    with zipfile.ZipFile(io.BytesIO(BUNDLE)) as archive:
        size = archive.getinfo(MANIFEST_NAME).compress_size
    cut = _patch(BUNDLE, MANIFEST_NAME, "csize", size // 2)  # the stream ends early: EOFError
    report = verify_bundle(cut, [KEY.verifier()])
    assert [(f.kind, f.where) for f in report.findings] == [("manifest", MANIFEST_NAME)]
    assert "unreadable" in report.findings[0].message


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return out.getvalue()


def test_duplicate_names_oversized_members_and_bombs_are_refused_unread() -> None:
    import warnings

    members = list(_members(BUNDLE).items())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate it is told to write
        twice = _zip([*members, (MANIFEST_NAME, members[1][1])])
    assert [f.message for f in verify_bundle(twice, [KEY.verifier()]).findings] == [
        "holds two members named manifest.json: which one is the bundle's is ambiguous"
    ]
    big_readme = _zip([(n, (b"\0" * (2 << 20) if n == "README.txt" else d)) for n, d in members])
    report = verify_bundle(big_readme, [KEY.verifier()])
    assert [(f.where, f.message[:34]) for f in report.findings] == [
        ("README.txt", "refused unread: declares 2097152 b")
    ]
    bomb = _zip([*members, *((f"entries/x/{i}.binpb", b"\0" * (30 << 20)) for i in range(3))])
    report = verify_bundle(bomb, [KEY.verifier()])
    assert [f.kind for f in report.findings] == ["bundle"]
    assert "more than a bundle expands to" in report.findings[0].message


# -- the manifest is checked -----------------------------------------------------------------


def _manifest_edit(edit: str, new: str) -> bytes:
    text = _members(BUNDLE)[MANIFEST_NAME].decode()
    assert edit in text
    return _replace(BUNDLE, MANIFEST_NAME, text.replace(edit, new, 1).encode())


@pytest.mark.parametrize(
    ("edit", "new", "message"),
    [
        ('"entry":"entries/', '"entry":"entries/../', "records[0].entry is"),  # a changed path
        ('"proof":"proofs/', '"proof":"proofz/', "records[0].proof is"),
        ('"leaf_hash":', '"leaf_hasi":', "unexpected keys ['leaf_hasi'], missing keys ['leaf_hash']"),
        ('"checkpoints":', '"checkpoint5":', "unexpected keys ['checkpoint5']"),
        ('.checkpoint"}', '.checkpoinu"}', "checkpoints['bundle.example/audit'] is"),
        ('"seq":3}', '"seq":3.0}', "seq a number"),
        ('"format":', '"extra":1,"format":', "unexpected keys ['extra']"),
        ('{"checkpoints"', '{ "checkpoints"', "not written the way otel-audit writes it"),
    ],
)
def test_a_manifest_with_a_changed_field_is_refused_naming_it(edit: str, new: str, message: str) -> None:
    report = verify_bundle(_manifest_edit(edit, new), [KEY.verifier()])
    assert [(f.kind, f.where) for f in report.findings] == [("manifest", MANIFEST_NAME)]
    assert message in report.findings[0].message


def test_an_entry_the_manifest_does_not_list_is_refused() -> None:
    manifest = Manifest.parse(_members(BUNDLE)[MANIFEST_NAME].decode())
    fewer = Manifest(manifest.origins, manifest.records[:-1])
    report = verify_bundle(_replace(BUNDLE, MANIFEST_NAME, fewer.serialize().encode()), [KEY.verifier()])
    assert {("manifest", entry_path(ORIGIN, 31)), ("manifest", proof_path(ORIGIN, 31))} <= _kinds(report)


def test_the_writer_and_the_checker_agree_on_the_manifest() -> None:
    text = _members(BUNDLE)[MANIFEST_NAME].decode()
    manifest = Manifest.parse(text)
    assert manifest.serialize() == text
    assert [r.seq for r in manifest.records] == PICKED and manifest.origins == (ORIGIN,)
