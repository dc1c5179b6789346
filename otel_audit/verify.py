"""Verification of one origin's log: pure logic fed with stored data, checkpoints, anchors.

This module does no I/O; backend/log_verifier.py feeds it. Two ways to feed it, same findings:

- deep (`feed`): full rows in Seq order; every entry is hashed and decoded here, and every
  derived column compared with what the entry says;
- fast (`feed_hashes` + `columns_match` + `check_columns`): the engine reports the rows whose
  Seq, leaf hash or chain hash is off; this module builds the Merkle tree from the stored leaf
  hashes and checks each checkpoint's signed columns commitment; only rows that fail
  something (and the not yet signed tail) are decoded, to name the Seq and columns.

Each stored row is checked locally, so one altered row is reported at its own Seq and not as
a cascade:

- Seq is contiguous from 0 (a gap is `missing`, a repeat is `duplicate`);
- Entry hashes to LeafHash (`leaf_hash`), and ChainHash = SHA-256(previous ChainHash ||
  leaf hash) (`chain_hash`);
- every column derived from Entry still says what Entry says (`column`);
- at every stored or anchored checkpoint the Merkle root of the leaves computed from the
  entries equals the signed root (`root`), the signed chain head equals the stored chain
  (`chain_head`), and the note carries a valid signature by the key (`signature`);
- the store holds at least as many records as the newest checkpoint signs (`truncated`);
- the anchors keep up with the store's checkpoints (`unanchored`). The checkpointer inserts
  each checkpoint into the store before it writes the anchor, so a crash between the two
  leaves the newest stored checkpoint, and only that one, without its anchor: one stored tree
  size above the newest anchor is accepted with a note, two or more fail (anchors deleted,
  or never written). No anchor at all is a warning, not a failure: nothing outside the
  database then proves the log was not rolled back, which the report says plainly.

A row rewritten together with its hashes and every later chain hash is still caught by the
signed root, and located between the last checkpoint that matches and the first that does not.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography import x509

from .anchors import Anchor, AnchorProblem
from .chain import CHAIN_START, chain_next
from .checkpoint import Checkpoint, open_checkpoint
from .columns import DERIVED_COLUMNS, StoredRow, columns_commitment
from .entry import decode_entry
from .errors import AuditError, Finding, FormatError, ProofError
from .merkle import CompactRange, hash_leaf
from .note import VerifierKey
from .proof import verify_consistency
from .rotation import KeyHistory
from .timestamp import existed_line, verify_token

MAX_FINDINGS = 1000


@dataclass(frozen=True)
class SignedTarget:
    """A checkpoint the log must match, from the store or from the anchor directory."""

    source: str
    checkpoint: Checkpoint
    compact_range: bytes | None = None  # stored beside store checkpoints only


@dataclass
class Report:
    origin: str
    mode: str = "fast"
    records: int = 0
    checkpoints_verified: int = 0
    anchors_verified: int = 0
    anchors_consistent: int = 0  # anchors the newest checkpoint was proven to extend (RFC 9162)
    expired_records: int = 0  # Seq 0.. removed under the retention policy (not tampering)
    signed_size: int = 0
    findings: list[Finding] = field(default_factory=list)
    findings_dropped: int = 0
    warnings: list[str] = field(default_factory=list)  # weaker proof than asked for, not tampering
    notes: list[str] = field(default_factory=list)
    timestamps: list[str] = field(default_factory=list)  # what each verified RFC 3161 token proves

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def unsigned_records(self) -> int:
        """Records after the newest valid checkpoint: sealed, not yet signed."""
        return max(0, self.records - self.signed_size)

    def as_dict(self) -> dict[str, object]:
        return {
            "origin": self.origin,
            "mode": self.mode,
            "ok": self.ok,
            "records": self.records,
            "signed_size": self.signed_size,
            "unsigned_records": self.unsigned_records,
            "checkpoints_verified": self.checkpoints_verified,
            "anchors_verified": self.anchors_verified,
            "anchors_consistent": self.anchors_consistent,
            "expired_records": self.expired_records,
            "findings": [f.as_dict() for f in self.findings],
            "findings_dropped": self.findings_dropped,
            "warnings": self.warnings,
            "notes": self.notes,
            "timestamps": self.timestamps,
        }


class LogVerifier:
    def __init__(self, origin: str, key: VerifierKey, *more_keys: VerifierKey) -> None:
        """`key` and `more_keys`: the keys trusted to sign this log's checkpoints (several
        after a key rotation, see otel_audit/rotation.py)."""
        self.report = Report(origin)
        self._keys = (key, *more_keys)
        self._targets: dict[int, list[SignedTarget]] = {}
        self._tree = CompactRange()
        self._expected_seq = 0
        self._prev_chain = CHAIN_START
        self._rows = 0
        self._last_good_size = 0  # the largest tree size whose signed root matched
        self._tree_broken = False  # set by a hole in Seq: roots after it cannot be checked
        self._signed: dict[int, Checkpoint] = {}  # valid checkpoints by tree size
        self._anchored: list[tuple[str, Checkpoint]] = []  # valid anchors: (source, checkpoint)
        self._stored_sizes: set[int] = set()  # tree sizes of the valid stored checkpoints
        self._no_anchors = "no anchor of this log could be verified"
        self._notes: dict[int, str] = {}  # the note text of each valid checkpoint, by tree size

    def _find(self, kind: str, message: str, first: int | None = None, last: int | None = None) -> None:
        if first is not None and last is not None and last < first:
            raise AssertionError(f"bug: a {kind} finding for the reversed range Seq {first}..{last}")
        if len(self.report.findings) >= MAX_FINDINGS:
            self.report.findings_dropped += 1
            return
        self.report.findings.append(Finding(kind, message, first, last))

    # -- signed material ----------------------------------------------------------------

    def _open(self, note_text: str, source: str) -> Checkpoint | None:
        try:
            checkpoint = open_checkpoint(note_text, *self._keys).checkpoint
        except AuditError as exc:
            self._find("signature", f"{source}: {exc}")
            return None
        if checkpoint.origin != self.report.origin:  # the key is of another log than this one
            self._find("signature", f"{source}: checkpoint is for origin {checkpoint.origin!r}")
            return None
        return checkpoint

    def add_key_history(self, history: KeyHistory) -> None:
        """Which key signed which range (notes), and each checkpoint an old key signed after
        its successor took over (a `signature` finding over the Seq range it covers)."""
        self.report.notes.extend(history.lines())
        for late in history.late:
            self._find("signature", late.message(), late.first, late.last)

    def add_stored_checkpoint(
        self, tree_size: int, root_hash: bytes, chain_head: bytes, note_text: str, compact_range: bytes
    ) -> None:
        source = f"stored checkpoint {tree_size}"
        checkpoint = self._open(note_text, source)
        if checkpoint is None:
            return
        if (checkpoint.tree_size, checkpoint.root_hash, checkpoint.chain_head) != (
            tree_size,
            root_hash,
            chain_head,
        ):
            self._find(
                "checkpoint", f"{source}: TreeSize/RootHash/ChainHead columns differ from its signed note"
            )
        self._add_target(SignedTarget(source, checkpoint, compact_range))
        self._notes.setdefault(tree_size, note_text)
        self._stored_sizes.add(tree_size)
        self.report.checkpoints_verified += 1

    def add_anchor(self, anchor: Anchor) -> None:
        checkpoint = self._open(anchor.text, f"anchor {anchor.path}")
        if checkpoint is not None:
            self._add_target(SignedTarget(f"anchor {anchor.path}", checkpoint))
            self._anchored.append((f"anchor {anchor.path}", checkpoint))
            self._notes.setdefault(checkpoint.tree_size, anchor.text)
            self.report.anchors_verified += 1

    def start_after_expiry(self, start: Checkpoint, compact_range: bytes) -> bool:
        """The log's oldest rows expired under the retention policy: continue from the signed
        checkpoint at that partition boundary, whose stored compact range stands in for them.

        Checkpoints and anchors older than the boundary can no longer be recomputed and are
        set aside; every row after it is checked as usual. False if the range is not right.
        """
        try:
            tree = CompactRange.from_bytes(start.tree_size, compact_range)
        except FormatError as exc:
            self._find("checkpoint", f"checkpoint {start.tree_size}: stored CompactRange unusable: {exc}")
            return False
        if tree.root() != start.root_hash:
            self._find(
                "checkpoint",
                f"checkpoint {start.tree_size}: stored CompactRange does not match its signed root",
            )
            return False
        self._tree = tree
        self._expected_seq = self._last_good_size = start.tree_size
        self._prev_chain = start.chain_head
        self.report.expired_records = start.tree_size
        for size in [size for size in self._targets if size < start.tree_size]:
            del self._targets[size]
        self._anchored = [(s, c) for s, c in self._anchored if c.tree_size >= start.tree_size]
        self._stored_sizes = {size for size in self._stored_sizes if size >= start.tree_size}
        self._check_targets(start.tree_size)  # the boundary's own checkpoints and anchors
        return True

    @property
    def records_seen(self) -> int:
        return self._rows

    def anchored(self) -> list[tuple[str, Checkpoint]]:
        return list(self._anchored)

    def add_consistency(self, source: str, old: Checkpoint, new: Checkpoint, proof: Sequence[bytes]) -> None:
        """An RFC 9162 consistency proof, built from the store, that `new` extends an anchor."""
        try:
            verify_consistency(old.tree_size, new.tree_size, proof, old.root_hash, new.root_hash)
        except ProofError:
            self._find(
                "consistency",
                f"the consistency proof from {source} (tree size {old.tree_size}) to the checkpoint of "
                f"tree size {new.tree_size}, built from the store's tree nodes, does not verify: "
                "otel_audit.tree_nodes was altered, so proofs served from it will fail",
            )
            return
        self.report.anchors_consistent += 1

    def add_timestamp(
        self, source: str, tree_size: int, token: bytes, roots: Sequence[x509.Certificate]
    ) -> None:
        """An RFC 3161 token over the note of the checkpoint `tree_size` (call after the
        checkpoints and anchors are added): a `timestamp` finding unless it verifies."""
        note = self._notes.get(tree_size)
        if note is None:
            self._find(
                "timestamp", f"{source}: no checkpoint of tree size {tree_size} with a valid signature"
            )
            return
        try:
            stamp = verify_token(token, note.encode(), roots)
        except AuditError as exc:
            self._find("timestamp", f"{source}: the token over checkpoint {tree_size} does not verify: {exc}")
            return
        line = existed_line(tree_size, stamp)
        if line not in self.report.timestamps:  # the store's copy and the anchor's
            self.report.timestamps.append(line)

    def anchors_absent(self, reason: str) -> None:
        """Why no anchor was read (no directory given, or it does not exist), for the warning."""
        self._no_anchors = reason

    def add_anchor_problem(self, problem: AnchorProblem) -> None:
        self._find("anchor", f"anchor {problem.path}: {problem.message}")

    def _add_target(self, target: SignedTarget) -> None:
        size = target.checkpoint.tree_size
        self._targets.setdefault(size, []).append(target)
        self._signed[size] = target.checkpoint
        self.report.signed_size = max(self.report.signed_size, size)
        if size == 0:
            self._check_targets(0)

    # -- rows ---------------------------------------------------------------------------

    def feed(self, rows: Iterable[Sequence[object]]) -> None:
        """Check stored rows, in Seq order, as the store reads them (ROW_COLUMNS: StoredRow.of)."""
        self.report.mode = "deep"
        tree = self._tree
        targets = self._targets
        for values in rows:
            self._rows += 1
            row = StoredRow.of(values)
            seq, entry, leaf_hash, chain_hash = row.derived.Seq, row.Entry, row.LeafHash, row.ChainHash
            follows = True
            if seq != self._expected_seq:
                if seq < self._expected_seq:
                    self._find("duplicate", "a second row claims this Seq (inserted row)", seq, seq)
                    continue
                self._find("missing", "rows are missing (deleted)", self._expected_seq, seq - 1)
                self._tree_broken = True  # no root can be recomputed past a hole
                for size in [t for t in targets if self._expected_seq < t <= seq]:
                    del targets[size]  # signed sizes inside the hole: the hole is their finding
                follows = False  # the previous row is gone: its chain hash is unknown
            leaf = hash_leaf(entry)
            if leaf != leaf_hash:
                self._find(
                    "leaf_hash", "Entry does not hash to LeafHash (Entry or LeafHash altered)", seq, seq
                )
            if follows and chain_next(self._prev_chain, leaf_hash) != chain_hash:
                self._find("chain_hash", "ChainHash does not follow from the previous row", seq, seq)
            self._prev_chain = chain_hash
            self._check_columns(row)
            tree.append(leaf)
            self._expected_seq = seq + 1
            if self._expected_seq in targets:
                self._check_targets(self._expected_seq)

    def _check_columns(self, row: StoredRow) -> bool:
        seq = row.derived.Seq
        try:
            _, derived = decode_entry(row.Entry)
        except FormatError as exc:
            self._find("entry", f"Entry does not decode: {exc}", seq, seq)
            return False
        if row.derived != derived:
            names = [n for n, a, b in zip(DERIVED_COLUMNS, row.derived, derived) if a != b]
            self._find("column", f"columns differ from Entry: {', '.join(names)}", seq, seq)
            return False
        return True

    # -- the fast path --------------------------------------------------------------------

    def add_hash_anomaly(self, seq: int, leaf_ok: bool, chain_ok: bool) -> None:
        """A row the engine found with a LeafHash or ChainHash that does not add up."""
        if not leaf_ok:
            self._find("leaf_hash", "Entry does not hash to LeafHash (Entry or LeafHash altered)", seq, seq)
        if not chain_ok:
            self._find("chain_hash", "ChainHash does not follow from the previous row", seq, seq)

    def feed_hashes(self, first_seq: int, leaf_and_chain: bytes) -> None:
        """Rows Seq first_seq.. as LeafHash || ChainHash, 64 bytes each.

        Requires that the engine found Seq contiguous from 0 (otherwise use `feed`); builds
        the Merkle tree from the stored leaf hashes and checks every signed root on the way.
        """
        if first_seq != self._expected_seq:
            raise ValueError(f"feed_hashes got Seq {first_seq}, want {self._expected_seq}")
        start = self._tree.size
        leaves = [leaf_and_chain[offset : offset + 32] for offset in range(0, len(leaf_and_chain), 64)]
        done = 0
        for size in sorted(t for t in self._targets if start < t <= start + len(leaves)):
            self._tree.extend(leaves[done : size - start])  # up to a signed size, then check it
            done = size - start
            self._prev_chain = leaf_and_chain[done * 64 - 32 : done * 64]
            self._check_targets(size)
        self._tree.extend(leaves[done:])
        rows = len(leaves)
        if rows:
            self._prev_chain = leaf_and_chain[-32:]
        self._rows += rows
        self._expected_seq += rows

    def signed_checkpoints(self) -> list[Checkpoint]:
        """The checkpoints with a valid signature, one per tree size, smallest first."""
        return [self._signed[size] for size in sorted(self._signed)]

    def columns_match(self, checkpoint: Checkpoint, column_hashes: bytes) -> bool:
        """Whether the stored columns of [columns_from, tree size) hash to the signed commitment."""
        return columns_commitment(column_hashes) == checkpoint.columns_hash

    def check_columns(self, rows: Iterable[Sequence[object]]) -> int:
        """Decode the entries of these rows (ROW_COLUMNS, as `feed`) and compare their columns;
        returns the rows that differ."""
        bad = 0
        for values in rows:
            if not self._check_columns(StoredRow.of(values)):
                bad += 1
        return bad

    def columns_unexplained(self, checkpoint: Checkpoint) -> None:
        """The commitment failed but every row's values still equal its entry."""
        self._find(
            "column",
            f"columns differ from what was sealed (checkpoint {checkpoint.tree_size}'s columns "
            "commitment), yet each row equals its entry: entries and columns were rewritten "
            "together, or rows were re-encoded (e.g. map key order)",
            checkpoint.columns_from,
            checkpoint.tree_size - 1,
        )

    def _check_targets(self, size: int) -> None:
        targets = self._targets.pop(size, [])
        if self._tree_broken:
            return  # the missing rows are already reported; a root here proves nothing more
        root = self._tree.root()
        for target in targets:
            cp = target.checkpoint
            if cp.root_hash != root:
                self._find(
                    "root",
                    f"Merkle root of the first {size} entries differs from {target.source}: a "
                    f"record in this range was rewritten",
                    self._last_good_size,
                    size - 1,
                )
                continue
            self._last_good_size = size
            if size and cp.chain_head != self._prev_chain:
                self._find("chain_head", f"chain hash differs from {target.source}", size - 1, size - 1)
            if target.compact_range is not None and target.compact_range != self._tree.to_bytes():
                self._find(
                    "checkpoint",
                    f"{target.source}: stored CompactRange does not match the log",
                    None,
                    None,
                )

    def finish(self) -> Report:
        self.report.records = self._rows
        have = self._expected_seq
        for size in sorted(self._targets):
            self._find(
                "truncated",
                f"the store ends at Seq {have - 1} but {self._targets[size][0].source} signs "
                f"{size} records: the log was truncated or rolled back",
                have,
                size - 1,
            )
        self._targets.clear()
        self._check_anchored()
        return self.report

    def _check_anchored(self) -> None:
        """The anchors must keep up with the store's checkpoints (see the module docstring)."""
        if not self._stored_sizes and not self.report.records:
            return
        if not self._anchored:
            self.report.warnings.append(
                f"{self._no_anchors}: nothing outside the database proves that the log was not "
                "rolled back or truncated (with its checkpoints); keep the anchor directory on "
                "storage the database administrators cannot rewrite, and pass it with --anchor-dir"
            )
            return
        anchored = max(c.tree_size for _, c in self._anchored)
        ahead = sorted(size for size in self._stored_sizes if size > anchored)
        if len(ahead) == 1:
            self.report.notes.append(
                f"the newest checkpoint (tree size {ahead[0]}) has no anchor yet; the sealer stores a "
                "checkpoint before it writes its anchor, so a crash between the two explains one"
            )
        elif ahead:
            self._find(
                "unanchored",
                f"the store holds {len(ahead)} checkpoints (tree sizes {ahead[0]}..{ahead[-1]}) newer "
                f"than the newest anchor (tree size {anchored}); at most the newest one can lack its "
                "anchor: anchors were deleted, or the sealer could not write them (see its log)",
                anchored,
                ahead[-1] - 1,
            )
