"""Cosigned checkpoints: where the sealer keeps them, and what a policy says of them.

The sealer writes each checkpoint the witnesses cosigned as ``<tree size, 20 digits>.cosigned``
beside the anchors (otel_audit/anchors.py's folder for the origin), a new file rather than a
rewrite of the ``.checkpoint`` anchor, so an anchor directory on a WORM mount keeps working.
The note is the log's signed note with the witnesses' cosignature lines appended.

`witnessed` opens one such note under a tlog-policy: the log's signature (open_checkpoint),
the valid cosignatures of the policy's witnesses, and whether they meet its quorum.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .anchors import _make_private_dirs, _write_atomically, origin_dir
from .checkpoint import Checkpoint, open_checkpoint
from .cosignature import add_cosignatures, cosigned_by
from .errors import AnchorError, AuditError
from .note import SignedNote, VerifierKey
from .witness_policy import Policy

SUFFIX = ".cosigned"


def write_cosigned(anchor_dir: Path, origin: str, tree_size: int, note: SignedNote) -> Path:
    """Write the note with its cosignatures, keeping those an earlier round wrote for the same
    tree (witnesses answer in different rounds when one was down)."""
    folder = origin_dir(anchor_dir, origin)
    path = folder / f"{tree_size:020d}{SUFFIX}"
    try:
        earlier = SignedNote.parse(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, AuditError):
        earlier = None
    if earlier is not None and earlier.text == note.text:
        note = add_cosignatures(earlier, note.signatures)
    note_text = note.serialize()
    try:
        _make_private_dirs(folder)
        _write_atomically(path, note_text)
    except OSError as exc:
        raise AnchorError(f"cannot write cosigned checkpoint in {folder}: {exc}") from exc
    return path


def read_cosigned(anchor_dir: Path, origin: str) -> list[tuple[Path, str]]:
    """(path, note text) of every cosigned checkpoint of the origin, smallest tree first;
    nothing is checked here (see `witnessed`)."""
    folder = origin_dir(anchor_dir, origin)
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob(f"*{SUFFIX}")):
        try:
            out.append((path, path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            raise AnchorError(f"cannot read {path}: {exc}") from exc
    return out


@dataclass(frozen=True)
class Witnessed:
    """A checkpoint as a policy sees it: who cosigned it (name -> cosignature time) and
    whether that meets the quorum."""

    checkpoint: Checkpoint
    text: str
    cosigners: dict[str, int]
    quorum_met: bool

    def describe(self) -> str:
        names = ", ".join(sorted(self.cosigners)) or "no witness"
        return f"tree size {self.checkpoint.tree_size} cosigned by {names}"


def witnessed(text: str, policy: Policy, log_keys: tuple[VerifierKey, ...]) -> Witnessed:
    """Open a cosigned note: FormatError / SignatureError if the log's signature or a
    cosignature by a policy witness does not verify."""
    keys = log_keys or policy.log_keys()
    opened = open_checkpoint(text, *keys)
    cosigners = cosigned_by(opened.note, policy.witness_keys())
    names = {w.key.name: w.name for w in policy.witnesses}  # key name -> the policy's name
    by_policy_name = {names[k]: t for k, t in cosigners.items()}
    return Witnessed(opened.checkpoint, text, by_policy_name, policy.quorum_met(by_policy_name))


def newest_witnessed(
    notes: list[tuple[str, str]], policy: Policy, log_keys: tuple[VerifierKey, ...]
) -> tuple[Witnessed | None, list[str]]:
    """The cosigned checkpoint with the largest tree that meets the quorum among (source,
    note) pairs, and a problem line per note that does not open."""
    best: Witnessed | None = None
    problems: list[str] = []
    for source, text in notes:
        try:
            seen = witnessed(text, policy, log_keys)
        except AuditError as exc:
            problems.append(f"{source}: {exc}")
            continue
        if seen.quorum_met and (best is None or seen.checkpoint.tree_size > best.checkpoint.tree_size):
            best = seen
    return best, problems
