"""Evidence bundles: records with proofs that anyone holding the log's public key can check
offline, with no database and nothing of ours but this module (or the README's steps).

A bundle is one zip file, byte-for-byte the same for the same records and checkpoint:

    README.txt                           how to check it by hand (not covered by any proof)
    manifest.json                        the records it holds, and where each one's files are
    query.json                           the search that selected them (not covered by any proof)
    keys.txt                             the verifier keys, one per line
    checkpoints/<origin>.checkpoint      the signed checkpoint the proofs lead to
    entries/<origin>/<seq>.binpb         each record's exact Entry bytes (an OTLP ResourceLogs)
    proofs/<origin>/<seq>.tlog-proof     its C2SP tlog-proof against that checkpoint
    records.jsonl / .csv / .html         the entries decoded, for programs and for people
                                         (SEC 17a-4(f): human-readable and electronic)

`verify_bundle` checks every entry's leaf hash, every proof against the signed root, the
signature under the key the caller trusts, and re-renders the readable files from the
entries to compare them byte for byte. What no proof covers is reported as unproven. A
bundle proves that each record it holds is in the log, unaltered; it cannot prove that the
query found every matching record (anyone holding the store can re-run query.json).
"""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import os
import pickle
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from urllib.parse import quote

from .checkpoint import Checkpoint
from .entry import decode_entry
from .errors import AuditError
from .merkle import hash_leaf
from .note import SignedNote, VerifierKey
from .readable import Rows, readable_files, record_dict, render_rows
from .tlog_proof import EXTENSION, TlogProof

FORMAT = "otel-audit-bundle@v1"
README, MANIFEST, QUERY, KEYS = "README.txt", "manifest.json", "query.json", "keys.txt"
READABLE = ("records.jsonl", "records.csv", "records.html")
_EPOCH = (1980, 1, 1, 0, 0, 0)  # zip's earliest date: no export time leaks into the bytes
_PARALLEL_FROM = 20_000  # entries; below this, starting worker processes costs more than it saves


@cache
def _folder(origin: str) -> str:
    return quote(origin, safe="")


def entry_path(origin: str, seq: int) -> str:
    return f"entries/{_folder(origin)}/{seq:020d}.binpb"


def proof_path(origin: str, seq: int) -> str:
    return f"proofs/{_folder(origin)}/{seq:020d}{EXTENSION}"


def checkpoint_path(origin: str) -> str:
    return f"checkpoints/{_folder(origin)}.checkpoint"


@dataclass(frozen=True)
class BundleRecord:
    origin: str
    seq: int
    entry: bytes
    proof: TlogProof


def _render(entries: Sequence[bytes]) -> Rows:
    """Decode entries and render their readable rows."""
    return render_rows([record_dict(decode_entry(e)[1], hash_leaf(e)) for e in entries])


_worker_entries: Sequence[bytes] = ()  # a Rendering worker's entries, given when it starts


def _receive(entries: Sequence[bytes]) -> None:
    global _worker_entries
    _worker_entries = entries


def _render_part(begin: int, end: int) -> str | Rows:
    """Render a part in the worker; its rows go back in a file (see Rendering), or through
    the pipe if no temporary file can be written (a read-only file system, say)."""
    rows = _render(_worker_entries[begin:end])
    try:
        with tempfile.NamedTemporaryFile("wb", prefix="otel-audit-rows-", delete=False) as file:
            pickle.dump(rows, file, protocol=pickle.HIGHEST_PROTOCOL)
    except OSError:
        return rows
    return file.name


def _read_part(part: str | Rows) -> Rows:
    if isinstance(part, Rows):
        return part
    try:
        with open(part, "rb") as file:
            rows: Rows = pickle.loads(file.read())
        return rows
    finally:
        os.unlink(part)


class Rendering:
    """Readable rows of many entries, decoded in a worker process while the caller goes on
    (building proofs and writing the per-record files, say): decoding is the costliest step
    of a large export. One worker and the caller keep two cores busy; more would only
    compete with the caller. The worker renders the parts from the front, and `result`
    renders here the parts it has not started. Small inputs are rendered in this process
    only, when `result` is called.

    The entries go to the worker once, as it starts, and each part's rows (megabytes of
    text) come back in a private temporary file: through a pipe, every 64 KiB would wait
    for this busy process's GIL, and the worker would idle for a second between parts.
    """

    def __init__(self, entries: Sequence[bytes], workers: int = 1) -> None:
        self._entries = entries
        self._pool: ProcessPoolExecutor | None = None
        self._parts: list[tuple[int, int, Future[str | Rows]]] = []
        if workers > 0 and len(entries) >= _PARALLEL_FROM:
            context = multiprocessing.get_context("spawn")  # never fork a process that runs chDB
            self._pool = ProcessPoolExecutor(
                workers, mp_context=context, initializer=_receive, initargs=(list(entries),)
            )
            step = -(-len(entries) // (8 * workers))
            self._parts = [
                (i, i + step, self._pool.submit(_render_part, i, i + step))
                for i in range(0, len(entries), step)
            ]

    def result(self) -> Rows:
        if self._pool is None:
            return _render(self._entries)
        try:
            taken: dict[int, Rows] = {}
            for begin, end, part in reversed(self._parts):  # the back, until the worker's part
                if not part.cancel():
                    break
                taken[begin] = _render(self._entries[begin:end])
            parts = [taken[b] if b in taken else _read_part(part.result()) for b, _, part in self._parts]
            return Rows(
                "".join(p.jsonl for p in parts), "".join(p.csv for p in parts), "".join(p.html for p in parts)
            )
        finally:
            self._pool.shutdown(cancel_futures=True)
            for _, _, part in self._parts:  # parts left unread after a failure
                if part.done() and not part.cancelled() and part.exception() is None:
                    path = part.result()
                    if isinstance(path, str):
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(path)


def _title(query: Mapping[str, object]) -> str:
    return f"otel-audit evidence: {query.get('description', 'exported records')}"


def write_bundle(
    records: Sequence[BundleRecord],
    checkpoints: Mapping[str, str],
    keys: Sequence[VerifierKey],
    query: Mapping[str, object],
    rendering: Rendering | None = None,
) -> bytes:
    """The bundle's bytes. `records` in the order the readable files list them; `rendering`,
    their readable rows if already under way (see Rendering): the per-record files are
    written first, while it finishes."""
    if rendering is None:
        rendering = Rendering([r.entry for r in records])
    manifest = {
        "format": FORMAT,
        "checkpoints": {origin: checkpoint_path(origin) for origin in sorted(checkpoints)},
        "records": [
            {
                "origin": r.origin,
                "seq": r.seq,
                "leaf_hash": hash_leaf(r.entry).hex(),
                "entry": entry_path(r.origin, r.seq),
                "proof": proof_path(r.origin, r.seq),
            }
            for r in records
        ],
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        _add(archive, README, _readme(len(records), checkpoints).encode())
        _add(archive, MANIFEST, (json.dumps(manifest, sort_keys=True, separators=(",", ":")) + "\n").encode())
        _add(archive, QUERY, (json.dumps(dict(query), indent=1, sort_keys=True) + "\n").encode())
        _add(archive, KEYS, "".join(k.serialize() + "\n" for k in keys).encode())
        for origin in sorted(checkpoints):
            _add(archive, checkpoint_path(origin), checkpoints[origin].encode())
        for r in sorted(records, key=lambda r: (r.origin, r.seq)):
            # Per-record files are small and mostly hashes: storing them is 4x faster to write
            # than deflating them, for a few percent of size.
            _add(archive, entry_path(r.origin, r.seq), r.entry, deflate=False)
            _add(archive, proof_path(r.origin, r.seq), r.proof.serialize().encode(), deflate=False)
        for name, text in readable_files(rendering.result(), _title(query)).items():
            _add(archive, name, text)
    return buffer.getvalue()


def _add(archive: zipfile.ZipFile, name: str, data: bytes, deflate: bool = True) -> None:
    """One member, with nothing of the time or machine that wrote it (deterministic bytes).
    Deflate level 1: most of the gain for a third of the time on 100 MB of text."""
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.create_system = 3  # Unix, whatever platform wrote it
    info.external_attr = 0o100644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    archive.writestr(info, data, compresslevel=1 if deflate else None)


# -- verification ------------------------------------------------------------------------


@dataclass(frozen=True)
class BundleFinding:
    kind: str  # entry, proof, checkpoint, key, readable, manifest, bundle
    where: str  # the file (and record) concerned
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.kind}: {self.message}"


@dataclass
class BundleReport:
    records: int = 0
    records_verified: int = 0
    checkpoints: dict[str, int] = field(default_factory=dict)  # origin -> signed tree size
    ranges: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # origin -> proven Seq runs
    findings: list[BundleFinding] = field(default_factory=list)
    unproven: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "records": self.records,
            "records_verified": self.records_verified,
            "checkpoints": self.checkpoints,
            "ranges": self.ranges,
            "findings": [{"kind": f.kind, "where": f.where, "message": f.message} for f in self.findings],
            "unproven": self.unproven,
        }


class _Reader:
    """Reads bundle members, turning any unreadable one into a finding."""

    def __init__(self, archive: zipfile.ZipFile, report: BundleReport) -> None:
        self.archive = archive
        self.report = report
        self.names = set(archive.namelist())
        self.used: set[str] = set()

    def read(self, name: str, kind: str) -> bytes | None:
        self.used.add(name)
        if name not in self.names:
            self.report.findings.append(BundleFinding(kind, name, "missing from the bundle"))
            return None
        try:
            return self.archive.read(name)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:  # e.g. "Bad CRC-32"
            self.report.findings.append(BundleFinding(kind, name, f"unreadable: {exc}"))
            return None

    def text(self, name: str, kind: str) -> str | None:
        data = self.read(name, kind)
        if data is None:
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            self.report.findings.append(BundleFinding(kind, name, "is not UTF-8 text"))
            return None


def verify_bundle(data: bytes, trusted: Sequence[VerifierKey]) -> BundleReport:
    """Check a bundle against the keys the caller trusts (never against the bundle's own)."""
    report = BundleReport()
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        report.findings.append(BundleFinding("bundle", "bundle", f"not a readable zip file: {exc}"))
        return report
    with archive:
        reader = _Reader(archive, report)
        manifest = _manifest(reader)
        if manifest is None:
            return report
        keys = {k.name: k for k in trusted}
        _check_keys(reader, trusted)
        checkpoints = _checkpoints(reader, manifest, keys)
        decoded: list[dict[str, object] | None] = []
        for item in manifest["records"]:
            decoded.append(_check_record(reader, item, checkpoints, keys))
        report.records = len(decoded)
        report.records_verified = sum(d is not None for d in decoded)
        proven = sorted((d["origin"], d["seq"]) for d in decoded if d is not None)
        for origin, seq in proven:  # contiguous runs: a run holds every record of its Seq range
            runs = report.ranges.setdefault(str(origin), [])
            if runs and runs[-1][1] + 1 == seq:
                runs[-1] = (runs[-1][0], int(seq))  # type: ignore[call-overload]
            else:
                runs.append((int(seq), int(seq)))  # type: ignore[call-overload]
        query = _query(reader)
        if all(d is not None for d in decoded):
            _check_readable(reader, [d for d in decoded if d is not None], _title(query))
        else:
            report.unproven.extend(n for n in READABLE if n in reader.names)
            reader.used.update(READABLE)
        report.unproven[:0] = [
            f"{README}: instructions, not covered by any proof",
            f"{QUERY}: the query that selected the records; a bundle cannot prove it found every match",
            f"{MANIFEST}: the list of records; each listed record is proven, the list's completeness is not",
        ]
        for name in sorted(reader.names - reader.used - {README}):
            report.unproven.append(f"{name}: not part of the bundle format, not covered by any proof")
    return report


def _manifest(reader: _Reader) -> dict | None:
    text = reader.text(MANIFEST, "manifest")
    if text is None:
        return None
    try:
        manifest = json.loads(text)
        if manifest.get("format") != FORMAT:
            raise ValueError(f"format is {manifest.get('format')!r}, expected {FORMAT!r}")
        for item in manifest["records"]:
            if not isinstance(item["origin"], str) or not isinstance(item["seq"], int):
                raise ValueError("record without origin and seq")
        return manifest
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        reader.report.findings.append(BundleFinding("manifest", MANIFEST, f"unusable: {exc}"))
        return None


def _query(reader: _Reader) -> dict:
    text = reader.text(QUERY, "manifest") if QUERY in reader.names else None
    try:
        query = json.loads(text) if text else {}
    except ValueError:
        query = {}
    return query if isinstance(query, dict) else {}


def _check_keys(reader: _Reader, trusted: Sequence[VerifierKey]) -> None:
    text = reader.text(KEYS, "key") or ""
    listed = {line.strip() for line in text.splitlines() if line.strip()}
    for key in trusted:
        if key.serialize() not in listed:
            reader.report.findings.append(
                BundleFinding("key", KEYS, f"does not list the key you trust ({key.serialize()})")
            )


def _checkpoints(reader: _Reader, manifest: dict, keys: Mapping[str, VerifierKey]) -> dict[str, str]:
    """Origin -> note text of each checkpoint that is validly signed by a trusted key."""
    good = {}
    for origin in sorted({item["origin"] for item in manifest["records"]}):
        name = checkpoint_path(origin)
        note_text = reader.text(name, "checkpoint")
        if note_text is None:
            continue
        key = keys.get(origin)
        if key is None:
            reader.report.findings.append(
                BundleFinding("key", name, f"no trusted key given for log {origin!r}; pass its --key")
            )
            continue
        try:
            note = SignedNote.parse(note_text)
            note.verify(key)
            checkpoint = Checkpoint.parse(note.text)
        except AuditError as exc:
            reader.report.findings.append(BundleFinding("checkpoint", name, str(exc)))
            continue
        if checkpoint.origin != origin:
            reader.report.findings.append(
                BundleFinding("checkpoint", name, f"is of log {checkpoint.origin!r}")
            )
            continue
        good[origin] = note_text
        reader.report.checkpoints[origin] = checkpoint.tree_size
    return good


def _check_record(
    reader: _Reader, item: dict, checkpoints: Mapping[str, str], keys: Mapping[str, VerifierKey]
) -> dict[str, object] | None:
    origin, seq = item["origin"], item["seq"]
    where = f"{origin} Seq {seq}"
    findings = reader.report.findings
    entry = reader.read(entry_path(origin, seq), "entry")
    proof_text = reader.text(proof_path(origin, seq), "proof")
    if entry is None or proof_text is None:
        return None
    leaf = hash_leaf(entry)
    if item.get("leaf_hash") != leaf.hex():
        findings.append(
            BundleFinding("entry", where, "entry bytes do not hash to the leaf hash the manifest lists")
        )
    try:
        seal, columns = decode_entry(entry)
    except AuditError as exc:
        findings.append(BundleFinding("entry", where, f"not a sealed entry: {exc}"))
        return None
    if (seal.origin, seal.seq) != (origin, seq):
        findings.append(BundleFinding("entry", where, f"the entry is sealed as {seal.origin} Seq {seal.seq}"))
        return None
    if origin not in checkpoints:
        return None  # the checkpoint's own finding says why
    try:
        proof = TlogProof.parse(proof_text)
        if proof.index != seq:
            raise AuditError(f"the proof is for index {proof.index}")
        if proof.checkpoint_note != checkpoints[origin]:
            raise AuditError(f"the proof's checkpoint differs from {checkpoint_path(origin)}")
        proof.verify(leaf, keys[origin])
    except AuditError as exc:
        findings.append(BundleFinding("proof", where, str(exc)))
        return None
    return record_dict(columns, leaf)


def _check_readable(reader: _Reader, decoded: list[dict[str, object]], title: str) -> None:
    for name, expected in readable_files(render_rows(decoded), title).items():
        actual = reader.read(name, "readable")
        if actual is None or actual == expected:
            continue
        lines, want = actual.split(b"\n"), expected.split(b"\n")
        line = next((i for i, (a, b) in enumerate(zip(lines, want)) if a != b), min(len(lines), len(want)))
        reader.report.findings.append(
            BundleFinding(
                "readable",
                f"{name} line {line + 1}",
                "does not match the decoded entries (edited, added or removed text)",
            )
        )


def _readme(count: int, checkpoints: Mapping[str, str]) -> str:
    sizes = ", ".join(
        f"{origin} at tree size {Checkpoint.parse(SignedNote.parse(note).text).tree_size}"
        for origin, note in sorted(checkpoints.items())
    )
    return f"""otel-audit evidence bundle ({FORMAT})
================================================

This bundle holds {count} audit records, each with a proof that it is in a signed,
append-only log ({sizes or "no checkpoint"}). You need only the log's public key
(verifier key), obtained from its operator through a channel you trust - never from
this bundle alone.

Check it with one command (no database, no network):

    otel-audit verify-bundle THIS.bundle --key 'ORIGIN+KEYID+BASE64'

Or by hand, for any record:

1. The entry. entries/<origin>/<seq>.binpb holds the record exactly as sealed: a
   protobuf opentelemetry.proto.logs.v1.ResourceLogs. Its leaf hash is RFC 9162's
   SHA-256(0x00 || entry):
       (printf '\\000'; cat entries/ORIGIN/SEQ.binpb) | sha256sum
   It must equal the record's leaf_hash in manifest.json and records.jsonl. Read it with
       protoc --decode opentelemetry.proto.logs.v1.ResourceLogs logs.proto < entries/...
   The seal is in its last three attributes: otel_audit.origin, otel_audit.seq,
   otel_audit.sealed_at (Unix nanoseconds).
2. The proof. proofs/<origin>/<seq>.tlog-proof is a C2SP tlog-proof
   (https://c2sp.org/tlog-proof): the record's index, the RFC 9162 inclusion proof
   (one base64 SHA-256 per line), then the signed checkpoint verbatim. Run the
   algorithm of RFC 9162 section 2.1.3.2 from the leaf hash; the result must equal the
   checkpoint's root hash (its third line, base64). transparency-dev/merkle's
   proof.VerifyTLogProof checks the same file.
3. The checkpoint. checkpoints/<origin>.checkpoint is a C2SP tlog-checkpoint signed as
   a C2SP signed note (https://c2sp.org/signed-note) with Ed25519. Verify the signature
   line whose name is the origin with the public key (Go: golang.org/x/mod/sumdb/note).
   The proof files carry this same checkpoint.
4. The readable files. records.jsonl (for programs), records.csv and records.html
   (for people) are renderings of the entries; verify-bundle renders the entries again
   and compares them byte for byte.

What this proves: every record listed is in the log, unaltered, at its Seq, in a tree
the key holder signed. What it does not prove: that the query in query.json found every
matching record (re-run it against the store to check), and nothing in this README.
"""
