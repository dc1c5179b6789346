"""The anchor directory: signed checkpoints kept outside the database.

An administrator who rewrites ClickHouse cannot also rewrite these files (put the directory
on other storage: another volume, a WORM mount, a synced bucket), so `verify` can prove the
database was not rolled back or truncated behind the newest anchored checkpoint.

Layout, one folder per origin (the origin percent-encoded):
    <dir>/<origin>/<tree size, 20 digits>.checkpoint   one file per checkpoint, never rewritten
    <dir>/<origin>/latest.checkpoint                   a copy of the newest one
    <dir>/<origin>/<tree size, 20 digits>.<tsa>.tsr    an RFC 3161 TimeStampResp over that
                                                       checkpoint's note, by the TSA whose
                                                       URL's host:port is <tsa> (percent-encoded)
Files are written to a temporary name, fsynced, then renamed, so a crash never leaves a
half-written anchor. They are private whatever the process umask: files 0600, the folders
this module creates 0700 (like the signer key).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

from .checkpoint import Checkpoint, read_unverified
from .errors import AnchorError, AuditError

LATEST = "latest.checkpoint"
FILE_MODE, DIR_MODE = 0o600, 0o700


def origin_dir(anchor_dir: Path, origin: str) -> Path:
    return anchor_dir / quote(origin, safe="")


def _write_atomically(path: Path, data: str | bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # a .tmp left by a crash keeps its mode through O_CREAT
    with open(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_anchor(anchor_dir: Path, origin: str, tree_size: int, note_text: str) -> Path:
    """Write a signed checkpoint as the origin's anchor of `tree_size` and as its latest;
    AnchorError if the folder or a file cannot be written."""
    folder = origin_dir(anchor_dir, origin)
    try:
        _make_private_dirs(folder)
        path = folder / f"{tree_size:020d}.checkpoint"
        _write_atomically(path, note_text)
        _write_atomically(folder / LATEST, note_text)
    except OSError as exc:
        raise AnchorError(f"cannot write anchor in {folder}: {exc}") from exc
    return path


def _make_private_dirs(folder: Path) -> None:
    """Create the folder and its missing parents 0700; folders that exist are left as they are
    (the anchor directory may be a mount the operator set up)."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    for path in reversed(missing):
        try:
            path.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue  # made meanwhile by another writer
        path.chmod(DIR_MODE)  # mkdir's mode passes through the umask


@dataclass(frozen=True)
class Anchor:
    """One anchor file: its signed note verbatim and the checkpoint in it, signature NOT
    checked (the verifier opens `text` with its key; recovery only compares tree sizes)."""

    path: Path
    text: str
    checkpoint: Checkpoint


@dataclass(frozen=True)
class AnchorProblem:
    path: Path
    message: str


def read_anchors(anchor_dir: Path, origin: str) -> tuple[list[Anchor], list[AnchorProblem]]:
    """Every anchored checkpoint of an origin, by tree size, and the files that do not parse.

    Signatures are not checked here; the verifier does that with the key it was given.
    """
    folder = origin_dir(anchor_dir, origin)
    anchors: list[Anchor] = []
    problems: list[AnchorProblem] = []
    if not folder.is_dir():
        return anchors, problems
    for path in sorted(folder.glob("*.checkpoint")):
        try:
            text = path.read_text(encoding="utf-8")
            checkpoint = read_unverified(text).checkpoint
        except (AuditError, OSError, UnicodeDecodeError) as exc:
            problems.append(AnchorProblem(path, str(exc)))
            continue
        if checkpoint.origin != origin:
            problems.append(AnchorProblem(path, f"checkpoint is for origin {checkpoint.origin!r}"))
            continue
        anchors.append(Anchor(path, text, checkpoint))
    anchors.sort(key=lambda a: a.checkpoint.tree_size)
    return anchors, problems


def latest_anchor(anchor_dir: Path, origin: str) -> Anchor | None:
    anchors, _ = read_anchors(anchor_dir, origin)
    return anchors[-1] if anchors else None


def timestamp_file_name(tree_size: int, tsa: str) -> str:
    """`<tree size>.<host:port of the TSA's URL, percent-encoded>.tsr`: one file per TSA."""
    return f"{tree_size:020d}.{quote(urlsplit(tsa).netloc or tsa, safe='')}.tsr"


def write_timestamp(anchor_dir: Path, origin: str, tree_size: int, tsa: str, token: bytes) -> Path:
    """Write a TSA's token over the anchored checkpoint `tree_size` beside it; AnchorError if
    it cannot be written."""
    folder = origin_dir(anchor_dir, origin)
    try:
        _make_private_dirs(folder)
        path = folder / timestamp_file_name(tree_size, tsa)
        _write_atomically(path, token)
    except OSError as exc:
        raise AnchorError(f"cannot write time-stamp token in {folder}: {exc}") from exc
    return path


@dataclass(frozen=True)
class TimestampFile:
    """A `.tsr` file of the anchor directory, unchecked (the verifier checks the token)."""

    path: Path
    tree_size: int
    token: bytes


def read_timestamps(anchor_dir: Path, origin: str) -> tuple[list[TimestampFile], list[AnchorProblem]]:
    """Every token file of an origin, by name, and the files that cannot be read."""
    folder = origin_dir(anchor_dir, origin)
    found: list[TimestampFile] = []
    problems: list[AnchorProblem] = []
    if not folder.is_dir():
        return found, problems
    for path in sorted(folder.glob("*.tsr")):
        size = path.name.split(".", 1)[0]
        if not (len(size) == 20 and size.isascii() and size.isdigit()):
            problems.append(AnchorProblem(path, "a token file's name must start with a 20-digit tree size"))
            continue
        try:
            found.append(TimestampFile(path, int(size), path.read_bytes()))
        except OSError as exc:
            problems.append(AnchorProblem(path, str(exc)))
    return found, problems
