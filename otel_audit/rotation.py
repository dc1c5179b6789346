"""Key rotation: how a log hands over from one signing key to the next, and how a verifier
follows it.

When the sealer starts with a new key and the previous one (`serve --previous-key`), the first
checkpoint the new key signs carries both signatures and one more extension line, covered by
both:

    otel-audit next-key <origin>+<keyid>+<base64>

the new verifier key. A verifier who trusts only the old key thus learns the new one from the
log itself: the old key vouches for it, and the new key's own signature on the same note shows
that its holder took over there. From that checkpoint on the new key has taken over: a later
checkpoint signed only by the old key (or any key that signed before it) is a failure, since
whoever still holds the old key could otherwise go on signing a second history.

Pure: `follow_keys` reads checkpoint notes and the trusted keys, and returns every key to
trust, which key signed which Seq range, and the late signatures found.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .checkpoint import Checkpoint, open_checkpoint, read_unverified
from .errors import AuditError
from .note import VerifierKey

NEXT_KEY_EXTENSION = "otel-audit next-key "


def handover_extension(successor: VerifierKey) -> str:
    """The extension line of the first checkpoint the successor signs."""
    return NEXT_KEY_EXTENSION + successor.serialize()


def announced_key(checkpoint: Checkpoint) -> VerifierKey | None:
    """The successor key a checkpoint announces, if any (malformed lines announce nothing)."""
    for line in checkpoint.other_extensions:
        if line.startswith(NEXT_KEY_EXTENSION):
            try:
                key = VerifierKey.parse(line[len(NEXT_KEY_EXTENSION) :])
            except AuditError:
                return None
            return key if key.name == checkpoint.origin else None
    return None


def key_label(key: VerifierKey) -> str:
    return f"{key.name}+{key.key_id:08x}"


@dataclass(frozen=True)
class KeyRange:
    """Key `key` signed the checkpoints that cover Seq [first, last]."""

    key: str
    first: int
    last: int


@dataclass(frozen=True)
class LateSignature:
    """A checkpoint signed only by keys whose successor had already taken over."""

    tree_size: int
    first: int  # the Seq range it covers beyond the previous checkpoint
    last: int
    signers: tuple[str, ...]
    successor: str
    since: int  # the tree size at which the successor took over

    def message(self) -> str:
        by = ", ".join(self.signers)
        return (
            f"checkpoint at tree size {self.tree_size} is signed only by {by}, after its successor "
            f"{self.successor} took over at tree size {self.since}: the old key signed after the "
            "handover (leaked or misused)"
        )


@dataclass(frozen=True)
class KeyHistory:
    keys: tuple[VerifierKey, ...]  # the trusted keys and those learned from handovers
    learned: tuple[VerifierKey, ...]
    ranges: tuple[KeyRange, ...]
    late: tuple[LateSignature, ...]

    def lines(self) -> list[str]:
        """One line per key: which Seq ranges its checkpoints signed."""
        out = []
        for key in self.keys:
            runs = [f"{r.first}..{r.last}" for r in self.ranges if r.key == key_label(key)]
            how = " (learned from the log's key handover)" if key in self.learned else ""
            out.append(f"key {key_label(key)}{how} signed Seq {', '.join(runs) if runs else 'nothing'}")
        return out


def follow_keys(notes: Iterable[str], trusted: Sequence[VerifierKey]) -> KeyHistory:
    """Walk the checkpoint notes in tree-size order from the trusted keys, learning each
    successor a trusted key announces, and find checkpoints signed by a superseded key only.

    Notes that no known key signed are skipped here (the log verifier reports them)."""
    by_size: dict[int, list[str]] = {}
    for text in notes:
        try:  # unverified only to order the notes: each is opened with the known keys below
            size = read_unverified(text).checkpoint.tree_size
        except AuditError:
            continue
        same_size = by_size.setdefault(size, [])
        if text not in same_size:  # the store, an anchor and `latest` often hold one note
            same_size.append(text)
    known = list(dict.fromkeys(trusted))
    learned: list[VerifierKey] = []
    took_over: dict[VerifierKey, int] = {}  # key -> tree size of its first checkpoint
    ranges: list[KeyRange] = []
    late: list[LateSignature] = []
    previous_size = 0
    for size in sorted(by_size):
        per_note: list[set[VerifierKey]] = []  # judged one by one: an anchor may differ from the store
        for text in by_size[size]:
            try:
                opened = open_checkpoint(text, *known)
            except AuditError:
                continue
            signers = set(opened.verified_by)
            successor = announced_key(opened.checkpoint)
            if successor is not None and successor not in known:
                try:
                    open_checkpoint(text, successor)  # the successor signed its own handover
                except AuditError:
                    successor = None
                if successor is not None:
                    known.append(successor)
                    learned.append(successor)
                    signers.add(successor)
            per_note.append(signers)
        everyone = set().union(*per_note)
        if not everyone or size <= previous_size:
            continue
        for key in sorted(everyone, key=key_label):
            took_over.setdefault(key, size)
        for signers in per_note:
            late_note = _late(signers, took_over, size, previous_size)
            if late_note is not None:
                late.append(late_note)
        ranges.extend(KeyRange(key_label(key), previous_size, size - 1) for key in everyone)
        previous_size = size
    return KeyHistory(tuple(known), tuple(learned), _merge(ranges), tuple(late))


def _late(
    signers: set[VerifierKey], took_over: dict[VerifierKey, int], size: int, previous_size: int
) -> LateSignature | None:
    """The note signed by `signers` at `size` is late if a key took over after all of them,
    at a smaller tree size."""
    newest = max(took_over[k] for k in signers)
    successors = [k for k, since in took_over.items() if newest < since < size]
    if not successors:
        return None
    first = min(successors, key=lambda k: took_over[k])
    by = tuple(sorted(key_label(k) for k in signers))
    return LateSignature(size, previous_size, size - 1, by, key_label(first), took_over[first])


def _merge(ranges: list[KeyRange]) -> tuple[KeyRange, ...]:
    merged: list[KeyRange] = []
    for r in sorted(ranges, key=lambda r: (r.key, r.first)):
        if merged and merged[-1].key == r.key and merged[-1].last + 1 >= r.first:
            last = merged.pop()
            merged.append(KeyRange(r.key, last.first, max(last.last, r.last)))
        else:
            merged.append(r)
    return tuple(merged)
