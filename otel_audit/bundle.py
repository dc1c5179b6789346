"""Evidence bundles: records with proofs that anyone holding the log's public key can check
offline, with no database and nothing of ours but this module (or the README's steps).

A bundle is one zip file, byte-for-byte the same for the same records and checkpoint:

    README.txt                           how to check it by hand (not covered by any proof)
    manifest.json                        the records it holds, and where each one's files are
                                         (checked: see Manifest)
    query.json                           the search that selected them (not covered by any proof)
    keys.txt                             the verifier keys, one per line
    checkpoints/<origin>.checkpoint      the signed checkpoint the proofs lead to
    entries/<origin>/<seq>.binpb         each record's exact Entry bytes (an OTLP ResourceLogs)
    proofs/<origin>/<seq>.tlog-proof     its C2SP tlog-proof against that checkpoint
    timestamps/<origin>/<n>.tsr          RFC 3161 tokens over that checkpoint's note, if any
    timestamps/tsa-certs.pem             the TSA certificates the tokens carry (not trusted)
    records.jsonl / .csv / .html         the entries decoded, for programs and for people
                                         (SEC 17a-4(f): human-readable and electronic)

`verify_bundle` checks every entry's leaf hash, every proof against the signed root, the
signature under the key the caller trusts, and re-renders the readable files from the
entries to compare them byte for byte. It checks every field of the manifest against those
files, and reads every member through one reader (`_Reader`) that turns whatever a damaged
zip raises into a finding naming the member. What no proof covers is reported as unproven. A
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
import struct
import tempfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from .checkpoint import open_checkpoint, read_unverified
from .entry import decode_entry
from .errors import AuditError, FormatError
from .merkle import hash_leaf
from .note import VerifierKey
from .readable import Rows, readable_files, record_dict, render_rows
from .timestamp import existed_line, token_certificates, verify_token
from .tlog_proof import EXTENSION, TlogProof

FORMAT = "otel-audit-bundle@v1"
README, MANIFEST, QUERY, KEYS = "README.txt", "manifest.json", "query.json", "keys.txt"
TSA_CERTS = "timestamps/tsa-certs.pem"
_SIGNED_MEMBERS = ("entries/", "proofs/", "checkpoints/", "timestamps/")  # each must be listed
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


def timestamp_path(origin: str, number: int) -> str:
    return f"timestamps/{_folder(origin)}/{number}.tsr"


@dataclass(frozen=True)
class BundleRecord:
    origin: str
    seq: int
    entry: bytes
    proof: TlogProof


@dataclass(frozen=True)
class ManifestRecord:
    """One record the manifest lists; its file paths follow from origin and seq."""

    origin: str
    seq: int
    leaf_hash: str  # hex

    def as_dict(self) -> dict[str, object]:
        return {
            "origin": self.origin,
            "seq": self.seq,
            "leaf_hash": self.leaf_hash,
            "entry": entry_path(self.origin, self.seq),
            "proof": proof_path(self.origin, self.seq),
        }


_MANIFEST_KEYS = {"format", "checkpoints", "records"}
_RECORD_KEYS = {"origin", "seq", "leaf_hash", "entry", "proof"}


@dataclass(frozen=True)
class Manifest:
    """manifest.json: the bundle's index (which records, in the order the readable files list
    them). It is checked, not trusted: `parse` accepts only what `serialize` writes, every
    path must be the one its origin and seq give, and `verify_bundle` checks each leaf hash
    against its entry and that every entry, proof and checkpoint in the bundle is listed."""

    origins: tuple[str, ...]  # the logs whose checkpoints the bundle holds, sorted
    records: tuple[ManifestRecord, ...]
    timestamps: tuple[tuple[str, int], ...] = ()  # (origin, how many tokens over its checkpoint)

    def serialize(self) -> str:
        manifest: dict[str, object] = {
            "format": FORMAT,
            "checkpoints": {origin: checkpoint_path(origin) for origin in self.origins},
            "records": [r.as_dict() for r in self.records],
        }
        if self.timestamps:  # only then: bundles without tokens keep their bytes
            manifest["timestamps"] = {o: [timestamp_path(o, i) for i in range(n)] for o, n in self.timestamps}
        return json.dumps(manifest, sort_keys=True, separators=(",", ":")) + "\n"

    @classmethod
    def parse(cls, text: str) -> Manifest:
        """Strictly: the exact keys, types and paths `serialize` writes, byte for byte."""
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise FormatError(f"not JSON: {exc}") from None
        optional = {"timestamps"} & set(raw) if isinstance(raw, dict) else set()  # only with tokens
        _keys(raw, _MANIFEST_KEYS | optional, "the manifest")
        if raw["format"] != FORMAT:
            raise FormatError(f"format is {raw['format']!r}, expected {FORMAT!r}")
        listed = raw["checkpoints"]
        if not isinstance(listed, dict):
            raise FormatError("checkpoints is not a JSON object")
        for origin, path in listed.items():
            if path != checkpoint_path(origin):
                raise FormatError(
                    f"checkpoints[{origin!r}] is {path!r}, expected {checkpoint_path(origin)!r}"
                )
        if not isinstance(raw["records"], list):
            raise FormatError("records is not a list")
        records = []
        for i, item in enumerate(raw["records"]):
            _keys(item, _RECORD_KEYS, f"records[{i}]")
            origin, seq, leaf = item["origin"], item["seq"], item["leaf_hash"]
            if not isinstance(origin, str) or type(seq) is not int or seq < 0 or not isinstance(leaf, str):
                raise FormatError(f"records[{i}]: origin must be text, seq a number >= 0, leaf_hash text")
            for name, path in (("entry", entry_path(origin, seq)), ("proof", proof_path(origin, seq))):
                if item[name] != path:
                    raise FormatError(f"records[{i}].{name} is {item[name]!r}, expected {path!r}")
            records.append(ManifestRecord(origin, seq, leaf))
        manifest = cls(tuple(listed), tuple(records), _parse_timestamps(raw.get("timestamps", {}), listed))
        if len({(r.origin, r.seq) for r in records}) != len(records):
            raise FormatError("a record is listed twice")
        if set(manifest.origins) != {r.origin for r in records}:
            raise FormatError("checkpoints must list exactly the logs of the records")
        if manifest.serialize() != text:
            raise FormatError("not written the way otel-audit writes it (key order, spacing or escapes)")
        return manifest


def _parse_timestamps(listed: object, origins: Mapping[str, object]) -> tuple[tuple[str, int], ...]:
    """The manifest's `timestamps`: per origin of a checkpoint, the paths 0.tsr, 1.tsr, ..."""
    if not isinstance(listed, dict):
        raise FormatError("timestamps is not a JSON object")
    out = []
    for origin, paths in listed.items():
        if origin not in origins or not isinstance(paths, list):
            raise FormatError(f"timestamps[{origin!r}] is not a list for a log of the bundle")
        if paths != [timestamp_path(origin, i) for i in range(len(paths))]:
            raise FormatError(f"timestamps[{origin!r}] are not the paths {timestamp_path(origin, 0)!r}, ...")
        out.append((origin, len(paths)))
    return tuple(out)


def _keys(value: object, expected: set[str], what: str) -> None:
    if not isinstance(value, dict):
        raise FormatError(f"{what} is not a JSON object")
    if set(value) != expected:
        extra, missing = sorted(set(value) - expected), sorted(expected - set(value))
        raise FormatError(f"{what}: unexpected keys {extra}, missing keys {missing}")


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
    timestamps: Mapping[str, Sequence[bytes]] | None = None,
) -> bytes:
    """The bundle's bytes. `records` in the order the readable files list them; `rendering`,
    their readable rows if already under way (see Rendering): the per-record files are
    written first, while it finishes. `timestamps`: per origin, RFC 3161 TimeStampResps over
    the note of its checkpoint."""
    if rendering is None:
        rendering = Rendering([r.entry for r in records])
    tokens = {o: list(t) for o, t in sorted((timestamps or {}).items()) if t and o in checkpoints}
    manifest = Manifest(
        tuple(sorted(checkpoints)),
        tuple(ManifestRecord(r.origin, r.seq, hash_leaf(r.entry).hex()) for r in records),
        tuple((o, len(t)) for o, t in tokens.items()),
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        _add(archive, README, (_readme(len(records), checkpoints) + _timestamps_readme(tokens)).encode())
        _add(archive, MANIFEST, manifest.serialize().encode())
        _add(archive, QUERY, (json.dumps(dict(query), indent=1, sort_keys=True) + "\n").encode())
        _add(archive, KEYS, "".join(k.serialize() + "\n" for k in keys).encode())
        for origin in sorted(checkpoints):
            _add(archive, checkpoint_path(origin), checkpoints[origin].encode())
        for origin, found in tokens.items():
            for i, token in enumerate(found):
                _add(archive, timestamp_path(origin, i), token)
        if tokens:
            certs = {
                c.public_bytes(Encoding.PEM)
                for t in tokens.values()
                for r in t
                for c in token_certificates(r)
            }
            _add(archive, TSA_CERTS, b"".join(sorted(certs)))
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
    checkpoint_notes: dict[str, str] = field(default_factory=dict)  # origin -> its note, as verified
    ranges: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # origin -> proven Seq runs
    # origin -> the trusted keys (name+keyid) that signed its checkpoint, for logs given
    # several keys (a rotation); empty when each log has one key, so that report is unchanged
    signed_by: dict[str, list[str]] = field(default_factory=dict)
    findings: list[BundleFinding] = field(default_factory=list)
    unproven: list[str] = field(default_factory=list)
    timestamps: list[str] = field(default_factory=list)  # what each verified RFC 3161 token proves

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
            **({"signed_by": self.signed_by} if self.signed_by else {}),
            "findings": [{"kind": f.kind, "where": f.where, "message": f.message} for f in self.findings],
            "unproven": self.unproven,
            "timestamps": self.timestamps,
        }


# Everything zipfile and zlib raise on a damaged archive: a bad CRC, magic number or header
# (BadZipFile), a flipped compression method or version (NotImplementedError), a flipped
# encryption flag (RuntimeError), a broken deflate stream (zlib.error, EOFError), a name that
# does not decode (UnicodeDecodeError, a ValueError), a short header (struct.error).
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    NotImplementedError,
    RuntimeError,
    EOFError,
    OSError,
    ValueError,
    struct.error,
    OverflowError,
)
_KIB, _MIB = 1 << 10, 1 << 20
MAX_ENTRY_BYTES = 32 * _MIB  # one record of an OTLP request; the receivers take 16 MiB at most
_MAX_EXPANSION = 100  # members together, over the bundle's size: text deflated at level 1 is ~5x
_REFUSED_FLAGS = 0x1 | 0x20 | 0x40  # encrypted, compressed patch, strong encryption (APPNOTE 4.4.4)
_DATA_DESCRIPTOR = 0x8  # sizes and CRC follow the data; the local header holds zeros
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # APPNOTE 4.3.7, as zipfile reads it
_LOCAL_MAGIC = b"PK\x03\x04"
_END_RECORD = struct.Struct("<4s4H2LH")  # APPNOTE 4.3.16
_END_MAGIC = b"PK\x05\x06"
_CENTRAL_HEADER_SIZE = 46  # APPNOTE 4.3.12, before the name, extra field and comment
_CENTRAL_LENGTHS, _CENTRAL_LENGTHS_AT = struct.Struct("<3H"), 28  # name, extra, comment lengths


def _member_limit(name: str, entries: int) -> int:
    """The most bytes a member of this name holds in a bundle otel-audit writes (`entries`:
    how many entries the bundle holds). The readable files are held to the size of the
    rendering they must equal, when they are compared."""
    if name.startswith("entries/"):
        return MAX_ENTRY_BYTES
    if name.startswith(("proofs/", "checkpoints/")) or name == KEYS:
        return 256 * _KIB  # a checkpoint note (at most 100 signatures) and 64 hashes
    if name == MANIFEST:
        return 64 * _KIB + 8 * _KIB * entries  # a record's line holds its origin three times
    if name in READABLE:
        return 64 * _MIB + 64 * _KIB * entries
    return _MIB  # README.txt, query.json and anything else


def _local_header_problem(data: bytes, info: zipfile.ZipInfo) -> str | None:
    """What a member's local header says differently from the central directory, which is
    what zipfile trusts: two readers must never see two different bundles."""
    start = info.header_offset
    header = data[start : start + _LOCAL_HEADER.size]
    if len(header) < _LOCAL_HEADER.size:
        return "truncated local header"
    fields = _LOCAL_HEADER.unpack(header)
    if fields[0] != _LOCAL_MAGIC:
        return "bad magic number for its local header"
    version, flags, method, time, date, crc, compressed, size = fields[1:3], *fields[3:10]
    local: dict[str, object] = {"version needed": version, "flags": flags, "compression method": method}
    central: dict[str, object] = {
        "version needed": (info.extract_version, info.reserved),
        "flags": info.flag_bits,
        "compression method": info.compress_type,
    }
    local["date and time"], central["date and time"] = (date, time), _dos_date_time(info.date_time)
    if not flags & _DATA_DESCRIPTOR:
        local["CRC-32"], central["CRC-32"] = crc, info.CRC
        if (compressed, size) != (0xFFFFFFFF, 0xFFFFFFFF):  # else in a zip64 extra field
            local["sizes"], central["sizes"] = (compressed, size), (info.compress_size, info.file_size)
    differ = [name for name in local if local[name] != central[name]]
    return f"its local header and the central directory differ in {', '.join(differ)}" if differ else None


def _structure_problem(data: bytes, infos: Sequence[zipfile.ZipInfo]) -> str | None:
    """What in the archive's end record and central directory zipfile does not check: counts
    and lengths that other zip readers rely on, and bytes before or after the archive."""
    start = data.rfind(_END_MAGIC, max(0, len(data) - _END_RECORD.size - 0xFFFF))
    if start < 0 or len(data) < start + _END_RECORD.size:
        return "no end of central directory record"
    _, disk, cd_disk, on_disk, count, cd_size, cd_offset, comment = _END_RECORD.unpack(
        data[start : start + _END_RECORD.size]
    )
    if (disk, cd_disk) != (0, 0):
        return "its end record says it spans disks; a bundle is one file"
    if start + _END_RECORD.size + comment != len(data):
        return "its end record's comment length does not match the bytes after it"
    if 0xFFFF in (on_disk, count) or 0xFFFFFFFF in (cd_size, cd_offset):
        return None  # zip64: zipfile read the counts and offsets from the zip64 record
    if on_disk != count or count != len(infos):
        return f"its end record counts {count} members ({on_disk} on this disk), not {len(infos)}"
    if cd_offset + cd_size != start:
        return "its central directory does not end where the end record begins (bytes before the zip?)"
    position = cd_offset
    for info in infos:  # each record's own lengths: zipfile reads names from a bounded buffer
        fits = position + _CENTRAL_HEADER_SIZE <= start
        lengths = _CENTRAL_LENGTHS.unpack_from(data, position + _CENTRAL_LENGTHS_AT) if fits else None
        name = info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437")
        if lengths != (len(name), len(info.extra), len(info.comment)):
            return f"the central directory record of {info.filename} has wrong name, extra or comment lengths"
        position += _CENTRAL_HEADER_SIZE + sum(lengths)
    if position != start:
        return f"its central directory records end at {position}, its end record at {start}"
    return None


def _dos_date_time(date_time: tuple[int, int, int, int, int, int]) -> tuple[int, int]:
    year, month, day, hour, minute, second = date_time
    return (year - 1980) << 9 | month << 5 | day, hour << 11 | minute << 5 | second // 2


class _Reader:
    """The one place a bundle's zip is opened and read. Every error zipfile or zlib can raise,
    and whatever a bundle otel-audit writes never holds (encrypted or oddly compressed
    members, two members of one name, sizes no member can have, local headers that disagree
    with the central directory), becomes a finding that names the member."""

    def __init__(self, archive: zipfile.ZipFile, refused: dict[str, str], report: BundleReport) -> None:
        self.archive = archive
        self.report = report
        self.names = set(archive.namelist())
        self.used: set[str] = set()
        self._refused = refused  # member -> why it is not read

    @classmethod
    def open(cls, data: bytes, report: BundleReport) -> _Reader | None:
        """The reader, or None (with the finding that says why) if the zip is unusable."""
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
            infos = archive.infolist()
            entries = sum(i.filename.startswith("entries/") for i in infos)
            refused = {}
            for info in infos:
                problem = _member_problem(data, info, _member_limit(info.filename, entries))
                if problem is not None:
                    refused[info.filename] = problem
        except _ZIP_ERRORS as exc:
            report.findings.append(BundleFinding("bundle", "bundle", f"not a readable zip file: {exc}"))
            return None
        problem = _structure_problem(data, infos) or _archive_problem(infos, len(data))
        if problem is not None:
            archive.close()
            report.findings.append(BundleFinding("bundle", "bundle", problem))
            return None
        return cls(archive, refused, report)

    def close(self) -> None:
        self.archive.close()

    def read(self, name: str, kind: str, limit: int | None = None) -> bytes | None:
        self.used.add(name)
        if name not in self.names:
            self.report.findings.append(BundleFinding(kind, name, "missing from the bundle"))
            return None
        problem = self._refused.get(name)
        size = self.archive.getinfo(name).file_size
        if problem is None and limit is not None and size > limit:
            problem = f"declares {size} bytes, more than it can hold ({limit})"
        if problem is not None:
            self.report.findings.append(BundleFinding(kind, name, f"refused unread: {problem}"))
            return None
        try:
            return self.archive.read(name)
        except _ZIP_ERRORS as exc:
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

    def read_the_rest(self) -> list[str]:
        """Read every member not read yet (a damaged README is a damaged bundle too); the names."""
        rest = sorted(self.names - self.used)
        for name in rest:
            self.read(name, "bundle")
        return rest


def _archive_problem(infos: Sequence[zipfile.ZipInfo], size: int) -> str | None:
    twice = sorted(name for name, n in Counter(i.filename for i in infos).items() if n > 1)
    if twice:
        return f"holds two members named {', '.join(twice)}: which one is the bundle's is ambiguous"
    declared = sum(i.file_size for i in infos)
    if declared > _MAX_EXPANSION * size + 64 * _MIB:
        return f"its members declare {declared} bytes from {size}: more than a bundle expands to"
    return None


def _member_problem(data: bytes, info: zipfile.ZipInfo, limit: int) -> str | None:
    if info.flag_bits & _REFUSED_FLAGS:
        return f"encrypted or patched (flag bits {info.flag_bits:#06x}); bundles never are"
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        return f"compression method {info.compress_type}; bundles use only 0 (stored) and 8 (deflate)"
    if info.file_size > limit:
        return f"declares {info.file_size} bytes, more than such a member holds ({limit})"
    if info.volume != 0:
        return f"says it starts on disk {info.volume}; a bundle is one file"
    kind = info.external_attr >> 16 & 0o170000
    if info.create_system == 3 and kind not in (0, 0o100000):
        return f"is not a regular file (Unix file type {kind:#o}: a link or device when unzipped)"
    return _local_header_problem(data, info)


def verify_bundle(
    data: bytes, trusted: Sequence[VerifierKey], tsa_roots: Sequence[x509.Certificate] = ()
) -> BundleReport:
    """Check a bundle against the keys the caller trusts (never against the bundle's own), and
    its time-stamp tokens against the TSA roots the caller trusts (none: left unchecked)."""
    report = BundleReport()
    reader = _Reader.open(data, report)
    if reader is None:
        return report
    try:
        _verify(reader, trusted, tsa_roots)
    finally:
        reader.close()
    return report


def _verify(reader: _Reader, trusted: Sequence[VerifierKey], tsa_roots: Sequence[x509.Certificate]) -> None:
    report = reader.report
    manifest = _manifest(reader)
    if manifest is None:
        reader.read_the_rest()
        return
    keys: dict[str, list[VerifierKey]] = {}
    for key in trusted:
        keys.setdefault(key.name, []).append(key)
    _check_keys(reader, keys)
    checkpoints = _checkpoints(reader, manifest, keys)
    _check_timestamps(reader, manifest, {o: text for o, (text, _) in checkpoints.items()}, tsa_roots)
    decoded = [_check_record(reader, item, checkpoints) for item in manifest.records]
    report.records = len(decoded)
    report.records_verified = sum(d is not None for d in decoded)
    proven = sorted((r.origin, r.seq) for r, d in zip(manifest.records, decoded) if d is not None)
    for origin, seq in proven:  # contiguous runs: a run holds every record of its Seq range
        runs = report.ranges.setdefault(origin, [])
        if runs and runs[-1][1] + 1 == seq:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
    query = _query(reader)
    if all(d is not None for d in decoded):
        _check_readable(reader, [d for d in decoded if d is not None], _title(query))
    else:
        report.unproven.extend(n for n in READABLE if n in reader.names)
        reader.used.update(READABLE)
    for name in sorted(reader.names - reader.used - {TSA_CERTS}):
        if name.startswith(_SIGNED_MEMBERS):
            report.findings.append(
                BundleFinding("manifest", name, f"is not listed in {MANIFEST}: the bundle was altered")
            )
    report.unproven[:0] = [
        f"{README}: instructions, not covered by any proof",
        f"{QUERY}: the query that selected the records; a bundle cannot prove it found every match",
        f"{MANIFEST}: the list of records, checked against them; the list's completeness is not proven",
    ]
    for name in reader.read_the_rest():
        if name == TSA_CERTS:
            report.unproven.append(
                f"{name}: the TSA certificates the tokens carry; trust only your own roots"
            )
        elif name != README and not name.startswith(_SIGNED_MEMBERS):
            report.unproven.append(f"{name}: not part of the bundle format, not covered by any proof")


def _manifest(reader: _Reader) -> Manifest | None:
    text = reader.text(MANIFEST, "manifest")
    if text is None:
        return None
    try:
        return Manifest.parse(text)
    except FormatError as exc:
        reader.report.findings.append(BundleFinding("manifest", MANIFEST, f"unusable: {exc}"))
        return None


def _query(reader: _Reader) -> dict:
    text = reader.text(QUERY, "manifest") if QUERY in reader.names else None
    try:
        query = json.loads(text) if text else {}
    except ValueError:
        query = {}
    return query if isinstance(query, dict) else {}


def _check_keys(reader: _Reader, keys: Mapping[str, Sequence[VerifierKey]]) -> None:
    """Each log's trusted key (one of them, for a log given its old and new keys) is listed."""
    text = reader.text(KEYS, "key") or ""
    listed = {line.strip() for line in text.splitlines() if line.strip()}
    for of_log in keys.values():
        if not any(key.serialize() in listed for key in of_log):
            wanted = " or ".join(key.serialize() for key in of_log)
            reader.report.findings.append(
                BundleFinding("key", KEYS, f"does not list the key you trust ({wanted})")
            )


def _checkpoints(
    reader: _Reader, manifest: Manifest, keys: Mapping[str, Sequence[VerifierKey]]
) -> dict[str, tuple[str, VerifierKey]]:
    """Origin -> note text of each checkpoint that is validly signed by a trusted key, and
    that key."""
    good = {}
    for origin in manifest.origins:
        name = checkpoint_path(origin)
        note_text = reader.text(name, "checkpoint")
        if note_text is None:
            continue
        of_log = keys.get(origin)
        if not of_log:
            reader.report.findings.append(
                BundleFinding("key", name, f"no trusted key given for log {origin!r}; pass its --key")
            )
            continue
        try:  # the keys' name is `origin`, so the checkpoint opened is of this log
            opened = open_checkpoint(note_text, *of_log)
        except AuditError as exc:
            reader.report.findings.append(BundleFinding("checkpoint", name, str(exc)))
            continue
        good[origin] = (note_text, opened.verified_by[0])
        reader.report.checkpoints[origin] = opened.checkpoint.tree_size
        reader.report.checkpoint_notes[origin] = note_text  # may carry witness cosignatures
        if len(of_log) > 1:
            reader.report.signed_by[origin] = [f"{k.name}+{k.key_id:08x}" for k in opened.verified_by]
    return good


def _check_timestamps(
    reader: _Reader, manifest: Manifest, checkpoints: Mapping[str, str], roots: Sequence[x509.Certificate]
) -> None:
    """Each token over its log's checkpoint note, against the caller's TSA roots."""
    report = reader.report
    for origin, count in manifest.timestamps:
        for i in range(count):
            name = timestamp_path(origin, i)
            token = reader.read(name, "timestamp", limit=_MIB)
            if token is None or origin not in checkpoints:
                continue  # the checkpoint's own finding says why
            size = report.checkpoints[origin]
            if not roots:
                report.unproven.append(f"{name}: a time-stamp token, not checked: pass --tsa-roots")
                continue
            try:
                stamp = verify_token(token, checkpoints[origin].encode(), roots)
            except AuditError as exc:
                report.findings.append(
                    BundleFinding(
                        "timestamp", name, f"the token over checkpoint {size} does not verify: {exc}"
                    )
                )
                continue
            report.timestamps.append(f"{origin}: {existed_line(size, stamp)}")


def _check_record(
    reader: _Reader, item: ManifestRecord, checkpoints: Mapping[str, tuple[str, VerifierKey]]
) -> dict[str, object] | None:
    origin, seq = item.origin, item.seq
    where = f"{origin} Seq {seq}"
    findings = reader.report.findings
    entry = reader.read(entry_path(origin, seq), "entry")
    proof_text = reader.text(proof_path(origin, seq), "proof")
    if entry is None or proof_text is None:
        return None
    leaf = hash_leaf(entry)
    if item.leaf_hash != leaf.hex():
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
        note_text, key = checkpoints[origin]
        if proof.checkpoint_note != note_text:
            raise AuditError(f"the proof's checkpoint differs from {checkpoint_path(origin)}")
        proof.verify(leaf, key)
    except AuditError as exc:
        findings.append(BundleFinding("proof", where, str(exc)))
        return None
    return record_dict(columns, leaf)


def _check_readable(reader: _Reader, decoded: list[dict[str, object]], title: str) -> None:
    for name, expected in readable_files(render_rows(decoded), title).items():
        actual = reader.read(name, "readable", limit=2 * len(expected) + _MIB)
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


def _timestamps_readme(tokens: Mapping[str, Sequence[bytes]]) -> str:
    """How to check the tokens by hand, when the bundle holds any."""
    if not tokens:
        return ""
    origin = next(iter(tokens))
    return f"""
Trusted time (RFC 3161). timestamps/<origin>/<n>.tsr are time-stamp responses from
independent time-stamp authorities over the exact bytes of checkpoints/<origin>.checkpoint:
each proves that every record up to that checkpoint's tree size existed no later than the
token's time, whatever the log's operator says. Check one with OpenSSL, against the TSA root
certificate you trust (from the TSA, not from this bundle):

    openssl ts -verify -in {timestamp_path(origin, 0)} \\
        -data {checkpoint_path(origin)} -CAfile TSA-ROOT.pem
    openssl ts -reply -in {timestamp_path(origin, 0)} -text    # its time and TSA

{TSA_CERTS} holds the TSA certificates the tokens carry, for reading only. Or:

    otel-audit verify-bundle THIS.bundle --key 'ORIGIN+KEYID+BASE64' --tsa-roots TSA-ROOT.pem
"""


def _readme(count: int, checkpoints: Mapping[str, str]) -> str:
    # The writer's own checkpoints, opened with the key by its caller (backend/evidence.py);
    # the reader of the bundle checks them again.
    sizes = ", ".join(
        f"{origin} at tree size {read_unverified(note).checkpoint.tree_size}"
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
5. The manifest. manifest.json lists the records in the order the readable files show
   them. It is checked, not trusted: verify-bundle refuses it unless every field is what
   the files it names prove (each leaf_hash that of its entry, each path the one its
   origin and seq give, no key added or renamed), and refuses any entry, proof or
   checkpoint file it does not list. It cannot prove that the list is complete.

What this proves: every record listed is in the log, unaltered, at its Seq, in a tree
the key holder signed. What it does not prove: that the query in query.json found every
matching record (re-run it against the store to check), and nothing in this README.
"""
