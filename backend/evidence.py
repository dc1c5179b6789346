"""Evidence from the store: search, inclusion and consistency proofs, export bundles.

Nothing read from the store is trusted on its way out: every proof is checked against the
signed checkpoint before it is returned, so a store whose records or tree nodes were
altered yields a clear ProofError ("run otel-audit verify"), never a proof that fails later
in someone else's hands.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import NamedTuple

from otel_audit import attributes as attr
from otel_audit.bundle import BundleRecord, Rendering, write_bundle
from otel_audit.checkpoint import Checkpoint, SignedCheckpoint, open_checkpoint, read_unverified
from otel_audit.columns import DerivedRow
from otel_audit.errors import AuditError, ConfigError, ProofError
from otel_audit.merkle import hash_children, hash_leaf
from otel_audit.note import VerifierKey
from otel_audit.proof import verify_consistency, verify_inclusion
from otel_audit.readable import iso_ns
from otel_audit.tlog_proof import TlogProof

from .store import LOGS, Store, select_list
from .tree_reader import TreeReader


@dataclass(frozen=True)
class Search:
    """What to look for. Times are Unix nanoseconds of the event's Timestamp, [since, until)."""

    since_ns: int | None = None
    until_ns: int | None = None
    actor: str | None = None
    action: str | None = None
    outcome: str | None = None
    service: str | None = None
    resource: str | None = None
    event: str | None = None
    text: str | None = None
    origin: str | None = None
    sealed_from_ns: int | None = None  # SealedAt range [from, until): archiving by partition
    sealed_until_ns: int | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Search:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in self.as_dict().items() if not k.endswith("_ns")]
        if self.since_ns is not None:
            parts.append(f"since={iso_ns(self.since_ns)}")
        if self.until_ns is not None:
            parts.append(f"until={iso_ns(self.until_ns)}")
        if self.sealed_from_ns is not None:
            parts.append(f"sealed from {iso_ns(self.sealed_from_ns)}")
        if self.sealed_until_ns is not None:
            parts.append(f"sealed before {iso_ns(self.sealed_until_ns)}")
        return ", ".join(parts) or "all records"

    def where(self) -> tuple[str, dict[str, object]]:
        """The WHERE clause and its bound parameters (never string-formatted values)."""
        clauses: list[str] = []
        params: dict[str, object] = {}
        for name, column, bound in (  # each range is [from, until)
            ("since", "Timestamp", ">="),
            ("until", "Timestamp", "<"),
            ("sealed_from", "SealedAt", ">="),
            ("sealed_until", "SealedAt", "<"),
        ):
            ns = getattr(self, f"{name}_ns")
            if ns is not None:
                clauses.append(f"{column} {bound} fromUnixTimestamp64Nano({{{name}:Int64}})")
                params[name] = ns
        for name, attribute in (
            ("actor", attr.ACTOR),
            ("action", attr.ACTION),
            ("outcome", attr.OUTCOME),
            ("resource", attr.RESOURCE),
        ):
            value = getattr(self, name)
            if value is not None:
                clauses.append(f"LogAttributes[{{k_{name}:String}}] = {{{name}:String}}")
                params[f"k_{name}"], params[name] = attribute, value
        for name, column in (("service", "ServiceName"), ("event", "EventName"), ("origin", "Origin")):
            value = getattr(self, name)
            if value is not None:
                clauses.append(f"{column} = {{{name}:String}}")
                params[name] = value
        if self.text is not None:  # lower(Body) LIKE: the tokenbf index on lower(Body) applies
            clauses.append("lower(Body) LIKE concat('%', lower({text:String}), '%')")
            params["text"] = self.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return (" AND ".join(clauses) or "1"), params


ORDER = "ORDER BY Timestamp, Origin, Seq"


def search(store: Store, query: Search, limit: int) -> tuple[list[DerivedRow], bool]:
    """Matching records' derived columns in time order, and whether more than `limit` matched."""
    where, params = query.where()
    rows = store.select(
        f"SELECT {select_list()} FROM {LOGS} WHERE {where} {ORDER} LIMIT {{limit:UInt64}}",
        {**params, "limit": limit + 1},
    )
    return [DerivedRow._make(row) for row in rows[:limit]], len(rows) > limit


# -- checkpoints and keys --------------------------------------------------------------------


def _key_for(origin: str, keys: Sequence[VerifierKey]) -> VerifierKey | None:
    return next((k for k in keys if k.name == origin), None)


def signed_checkpoint(
    store: Store, origin: str, key: VerifierKey | None, tree_size: int | None = None
) -> SignedCheckpoint:
    """The newest stored checkpoint (or the one of `tree_size`), opened with the key when one
    is given."""
    stored = store.latest_checkpoint(origin) if tree_size is None else store.checkpoint_at(origin, tree_size)
    if stored is None:
        at = "" if tree_size is None else f" of tree size {tree_size}"
        raise ConfigError(f"log {origin!r} has no checkpoint{at} in the store")
    return _open(stored.note, key)


def _open(note: str, key: VerifierKey | None) -> SignedCheckpoint:
    """`proof` and `consistency` without --key read the store's checkpoints unverified on
    purpose (they say so on stderr: "signature not checked"); with a key, every checkpoint
    they use is opened with it."""
    return read_unverified(note) if key is None else open_checkpoint(note, key)


def default_origin(store: Store, keys: Sequence[VerifierKey], origin: str | None) -> str:
    if origin is not None:
        return origin
    if len(keys) == 1:
        return keys[0].name
    origins = store.origins()
    if len(origins) != 1:
        raise ConfigError(f"the store holds logs {origins or 'none'}; say which with --origin or --key")
    return origins[0]


# -- proofs ------------------------------------------------------------------------------------


def inclusion_proof(
    store: Store, origin: str, seq: int, key: VerifierKey | None, tree_size: int | None = None
) -> TlogProof:
    signed = signed_checkpoint(store, origin, key, tree_size)
    checkpoint = signed.checkpoint
    if seq >= checkpoint.tree_size:
        raise ConfigError(
            f"Seq {seq} of {origin!r} is not covered by a checkpoint yet (the newest signs "
            f"{checkpoint.tree_size} records); wait for the next checkpoint"
        )
    reader = TreeReader(store, origin)
    reader.prefetch_for([seq], checkpoint.tree_size)
    proof = TlogProof(seq, tuple(reader.inclusion_proof(seq, checkpoint.tree_size)), signed.text)
    leaf = reader.leaf_hash(seq)
    with _from_the_store(origin, checkpoint.tree_size):
        verify_inclusion(seq, checkpoint.tree_size, leaf, proof.hashes, checkpoint.root_hash)
    return proof


@contextmanager
def _from_the_store(origin: str, size: int) -> Iterator[None]:
    """A proof built from the store that fails its check: say what that means and what to do
    (the failed check is kept as the cause)."""
    try:
        yield
    except ProofError as exc:
        raise ProofError(
            f"the store's records or tree nodes of {origin!r} do not lead to the signed root of tree "
            f"size {size}: they were altered. Run `otel-audit verify` to locate the change."
        ) from exc


@dataclass(frozen=True)
class ConsistencyProof:
    old_size: int
    new_size: int
    hashes: tuple[bytes, ...]
    old_note: str | None  # the signed checkpoint of old_size, when the store has one
    new_note: str

    def serialize(self) -> str:
        """C2SP tlog-witness's add-checkpoint body: old size, proof lines, the new checkpoint."""
        lines = [f"old {self.old_size}", *(base64.b64encode(h).decode() for h in self.hashes)]
        return "\n".join(lines) + "\n\n" + self.new_note


def consistency_proof(
    store: Store, origin: str, old_size: int, new_size: int | None, key: VerifierKey | None
) -> ConsistencyProof:
    new_signed = signed_checkpoint(store, origin, key, new_size)
    new = new_signed.checkpoint
    if old_size > new.tree_size:
        raise ConfigError(f"--from {old_size} is beyond the checkpoint of tree size {new.tree_size}")
    reader = TreeReader(store, origin)
    hashes = tuple(reader.consistency_proof(old_size, new.tree_size))
    old_stored = store.checkpoint_at(origin, old_size)
    old_note = None if old_stored is None else old_stored.note
    if old_note is not None:
        old_root = _old_checkpoint(origin, old_size, old_note, key).root_hash
    else:  # no signed root of that size: check against the tree the store holds
        old_root = reader.root(old_size)
    with _from_the_store(origin, new.tree_size):
        verify_consistency(old_size, new.tree_size, hashes, old_root, new.root_hash)
    return ConsistencyProof(old_size, new.tree_size, hashes, old_note, new_signed.text)


def _old_checkpoint(origin: str, old_size: int, note: str, key: VerifierKey | None) -> Checkpoint:
    """The store's checkpoint of `old_size`, opened like the new one: a row whose note is not
    signed by the key, or signs another tree size, is refused, never served as evidence."""
    try:
        checkpoint = _open(note, key).checkpoint
    except AuditError as exc:
        problem = str(exc)
    else:
        if checkpoint.tree_size == old_size:
            return checkpoint
        problem = f"its note signs tree size {checkpoint.tree_size}"
    raise ProofError(
        f"the store's checkpoint of {origin!r} at tree size {old_size} is not a checkpoint of this "
        f"log: {problem}. Run `otel-audit verify` to locate the change."
    )


# -- export ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Export:
    bundle: bytes
    records: int
    checkpoints: dict[str, int]
    unsigned: int  # matching records sealed after the newest checkpoint, left out


class _Exported(NamedTuple):
    """The columns an export reads of each matching row, by their names in otel_audit.logs."""

    Origin: str
    Seq: int
    Entry: bytes


def export(
    store: Store, query: Search, keys: Sequence[VerifierKey], witnessed: Mapping[str, str] | None = None
) -> Export:
    """An evidence bundle of the records matching `query`, with proofs against each log's
    newest stored checkpoint; or, for the logs in `witnessed` (origin -> a cosigned note,
    `export --policy`), against that checkpoint, which the bundle then carries with its
    witness cosignatures. Its body must be the store's checkpoint of that size."""
    where, params = query.where()
    rows = [
        _Exported._make(row)
        for row in store.select(
            f"SELECT {select_list(_Exported._fields)} FROM {LOGS} WHERE {where} {ORDER}",
            params,
            column_formats={"Entry": "bytes"},
        )
    ]
    checkpoints: dict[str, SignedCheckpoint] = {}
    for origin in sorted({row.Origin for row in rows}):
        key = _key_for(origin, keys)
        if key is None:
            raise ConfigError(f"records of log {origin!r} match; pass its verifier key with --key")
        last_seq = max(row.Seq for row in rows if row.Origin == origin)
        checkpoints[origin] = signed_checkpoint(store, origin, key, _stamped_size(store, origin, last_seq))
        if witnessed and origin in witnessed:
            cosigned = open_checkpoint(witnessed[origin], key)
            stored = signed_checkpoint(store, origin, key, cosigned.checkpoint.tree_size)
            if stored.note.text != cosigned.note.text:
                raise ConfigError(f"the cosigned checkpoint of {origin!r} is not the store's checkpoint")
            checkpoints[origin] = cosigned
    # A token is over the exact note bytes the sealer stored; a cosigned note (export --policy)
    # carries more signature lines, so its tokens would not match it and are left out.
    tokens = {
        o: [t.token for t in store.timestamps(o) if t.tree_size == signed.checkpoint.tree_size]
        for o, signed in checkpoints.items()
        if not (witnessed and o in witnessed)
    }
    covered = [row for row in rows if row.Seq < checkpoints[row.Origin].checkpoint.tree_size]
    rendering = Rendering([row.Entry for row in covered])  # decodes in other processes meanwhile
    proofs: dict[tuple[str, int], TlogProof] = {}
    for origin, signed in checkpoints.items():
        leaves = {row.Seq: hash_leaf(row.Entry) for row in covered if row.Origin == origin}
        for seq, hashes in _proofs(store, origin, leaves, signed.checkpoint).items():
            proofs[(origin, seq)] = TlogProof(seq, hashes, signed.text)
    records = [BundleRecord(r.Origin, r.Seq, r.Entry, proofs[(r.Origin, r.Seq)]) for r in covered]
    used = {r.origin for r in records}
    bundle = write_bundle(
        records,
        {o: signed.text for o, signed in checkpoints.items() if o in used},
        [k for k in keys if k.name in used],
        {"description": query.describe(), "search": query.as_dict(), "table": LOGS, "order": ORDER},
        rendering,
        tokens,
    )
    sizes = {o: signed.checkpoint.tree_size for o, signed in checkpoints.items()}
    return Export(bundle, len(records), sizes, len(rows) - len(records))


def _stamped_size(store: Store, origin: str, last_seq: int) -> int | None:
    """The checkpoint a bundle relies on: the newest one an RFC 3161 token stamps if it covers
    every record exported (so the bundle carries trusted time), else None: the newest."""
    token = next(iter(store.timestamps(origin, latest_only=True)), None)
    return token.tree_size if token is not None and last_seq < token.tree_size else None


def _proofs(
    store: Store, origin: str, leaves: dict[int, bytes], checkpoint: Checkpoint
) -> dict[int, tuple[bytes, ...]]:
    """Inclusion proofs for records (Seq -> the leaf hash of the entry being exported), each
    checked against the signed root: an Entry altered in the store fails here, not later.

    Records are taken in Seq order. When a record and the previous one share a complete
    subtree (their lowest common ancestor), the new proof is the new record's siblings below
    that ancestor plus the previous proof above it, and the check stops at the ancestor: its
    value was already carried to the signed root by an earlier, fully checked proof, with the
    same hashes above it. Any other record gets a proof built and checked in full (RFC 9162).
    """
    size, root = checkpoint.tree_size, checkpoint.root_hash
    reader = TreeReader(store, origin)
    reader.prefetch_for(leaves, size)
    proven: dict[tuple[int, int], bytes] = {}  # complete subtrees on checked paths -> their hash
    out: dict[int, tuple[bytes, ...]] = {}
    previous: tuple[int, tuple[bytes, ...]] | None = None
    for seq in sorted(leaves):
        leaf = leaves[seq]
        hashes = None
        if previous is not None:
            level = (seq ^ previous[0]).bit_length()  # height of the lowest common ancestor
            expected = proven.get((level, seq >> level))
            if expected is not None:
                siblings = [reader.node(h, (seq >> h) ^ 1) for h in range(level)]
                if _climb(seq, leaf, siblings, proven, check=expected):
                    hashes = (*siblings, *previous[1][level:])
        if hashes is None:
            hashes = tuple(reader.inclusion_proof(seq, size))
            with _from_the_store(origin, size):
                verify_inclusion(seq, size, leaf, hashes, root)
            complete = 0  # how many of the lowest proof hashes are siblings in complete subtrees
            while complete < len(hashes) and ((seq >> (complete + 1)) + 1) << (complete + 1) <= size:
                complete += 1
            _climb(seq, leaf, hashes[:complete], proven, check=None)
        out[seq] = hashes
        previous = (seq, hashes)
    return out


def _climb(
    seq: int,
    leaf: bytes,
    siblings: Sequence[bytes],
    proven: dict[tuple[int, int], bytes],
    check: bytes | None,
) -> bool:
    """Hash from the leaf up through `siblings` (one per height); record every ancestor's hash
    in `proven` if the top one equals `check` (or unconditionally when check is None)."""
    value, path = leaf, []
    for height, sibling in enumerate(siblings):
        value = hash_children(sibling, value) if (seq >> height) & 1 else hash_children(value, sibling)
        path.append(((height + 1, seq >> (height + 1)), value))
    if check is not None and value != check:
        return False
    proven.update(path)
    return True
