"""The sealer as a tlog-witness client (https://c2sp.org/tlog-witness).

Every `--witness-interval` and once at shutdown, in its own thread (so a slow or absent
witness never holds back ingest), it takes the newest stored checkpoint and sends it to each
witness of the policy that has a URL, with the consistency proof from the size that witness
last cosigned. It starts from old size 0; a 409 answer carries the size the witness holds,
and the request is sent again once with the proof from there (the proofs come from the
store's tree, backend/tree_reader.py). The cosignatures returned are checked against the
witness keys of the policy and appended to the log's note, which is written beside the
anchors (otel_audit/witnessed.py). The checkpoints in between are covered by the
consistency proofs, so one request per witness per interval is enough.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from backend.store import Store
from backend.tree_reader import TreeReader
from otel_audit.cosignature import add_cosignatures, cosigned_by
from otel_audit.errors import AuditError, Finding
from otel_audit.note import NoteSignature, SignedNote
from otel_audit.tlog_witness import AddCheckpoint, parse_cosignature_lines, parse_size_body
from otel_audit.witness_policy import Policy, PolicyWitness
from otel_audit.witnessed import write_cosigned

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 10.0


class WitnessClient:
    def __init__(
        self,
        store: Store,
        origin: str,
        policy: Policy,
        anchor_dir: Path,
        interval_seconds: float,
        on_cosigned: Callable[[str, int], None] = lambda _name, _size: None,
    ) -> None:
        """`on_cosigned(witness name, tree size)` is called for each cosignature (metrics)."""
        self._store = store
        self._origin = origin
        self._witnesses = [w for w in policy.witnesses if w.url]
        self._anchor_dir = anchor_dir
        self._interval = interval_seconds
        self._on_cosigned = on_cosigned
        self._known: dict[str, int] = {}  # witness name -> the size it last cosigned, as it told us
        self.cosigned: dict[str, int] = {}  # witness name -> the newest size it cosigned for us
        self._failing: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._session = requests.Session()
        self._thread = threading.Thread(target=self._run, name="witness-client", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the timer, then ask once more for the final checkpoint (after the
        checkpointer signed it)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.witness_now()
        self._session.close()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.witness_now()

    def witness_now(self) -> int:
        """Ask every witness to cosign the newest stored checkpoint; the number that did."""
        with self._lock:
            try:
                latest = self._store.latest_checkpoint(self._origin)
            except AuditError as exc:
                log.warning("witnesses: cannot read the newest checkpoint: %s", exc)
                return 0
            if latest is None:
                return 0
            note = SignedNote.parse(latest.note)
            lines: list[NoteSignature] = []
            for witness in self._witnesses:
                if self._known.get(witness.name) == latest.tree_size and witness.name in self.cosigned:
                    continue  # it cosigned this very tree already
                got = self._ask(witness, note, latest.tree_size)
                lines.extend(got)
            if not lines:
                return 0
            cosigned = add_cosignatures(note, tuple(lines))
            try:
                write_cosigned(self._anchor_dir, self._origin, latest.tree_size, cosigned)
            except AuditError as exc:
                log.error("witnesses: %s", exc)
            return len({line.name for line in lines})

    def _ask(self, witness: PolicyWitness, note: SignedNote, size: int) -> list[NoteSignature]:
        answer = ask(
            self._session, self._store, self._origin, witness, note, size, self._known.get(witness.name, 0)
        )
        if answer.witness_size is not None:
            self._known[witness.name] = answer.witness_size
        if not answer.lines:
            self._fail(witness, answer.problem)
            return []
        self.cosigned[witness.name] = size
        self._on_cosigned(witness.name, size)
        if witness.name in self._failing:
            self._failing.discard(witness.name)
            log.warning("witness %s cosigns again (tree size %d)", witness.name, size)
        return list(answer.lines)

    def _fail(self, witness: PolicyWitness, why: str) -> None:
        """Log once per outage; the next interval tries again."""
        if witness.name not in self._failing:
            self._failing.add(witness.name)
            log.error("witness %s did not cosign: %s", witness.name, why)


@dataclass(frozen=True)
class Answer:
    """What one witness made of our checkpoint: its cosignature lines (verified against its
    policy key), or why not; `witness_size` is the size it holds, when it said."""

    lines: tuple[NoteSignature, ...] = ()
    witness_size: int | None = None
    problem: str = ""
    status: int | None = None


def ask(
    session: requests.Session,
    store: Store,
    origin: str,
    witness: PolicyWitness,
    note: SignedNote,
    size: int,
    old: int,
) -> Answer:
    """add-checkpoint for the stored checkpoint `note` of `size`, from `old` (the size we
    believe the witness holds); after a 409, once more from the size it gave."""
    held: int | None = None
    try:
        for _ in range(2):
            if old > size:
                why = f"it cosigned tree size {old}, above our newest checkpoint {size}"
                return Answer(witness_size=held, problem=why, status=409)
            proof = TreeReader(store, origin).consistency_proof(old, size) if old else []
            body = AddCheckpoint(old, tuple(proof), note.serialize()).serialize()
            answer = session.post(str(witness.url), data=body, timeout=TIMEOUT_SECONDS)
            if answer.status_code == 409:
                held = old = parse_size_body(answer.content)
                continue
            if answer.status_code != 200:
                why = f"HTTP {answer.status_code}: {answer.text.strip()[:200]}"
                return Answer(witness_size=held, problem=why, status=answer.status_code)
            lines = parse_cosignature_lines(note, answer.content)
            mine = tuple(line for line in lines if witness.key.signed(line))
            if not cosigned_by(SignedNote(note.text, mine), (witness.key,)):
                return Answer(
                    witness_size=held, problem="its answer carries no cosignature by its policy key"
                )
            return Answer(lines=mine, witness_size=size, status=200)
        return Answer(witness_size=held, problem="it answered 409 twice", status=409)
    except (requests.RequestException, AuditError) as exc:
        return Answer(witness_size=held, problem=str(exc))


def ask_witnesses(store: Store, origin: str, policy: Policy) -> tuple[list[Finding], list[str]]:
    """`verify --policy --ask-witnesses`: show each witness the store's newest checkpoint.

    The witnesses' own state is the evidence no one on the sealer's host can delete: a
    witness that holds a larger tree of this log, or one the store's tree does not extend,
    refuses it (409 / 422), and that is an integrity failure (kind ``witness_refused``). A
    witness that accepts cosigns it, as the sealer would have (its state moves forward).
    """
    latest = store.latest_checkpoint(origin)
    if latest is None:
        return [], ["the store holds no checkpoint to show the witnesses"]
    note = SignedNote.parse(latest.note)
    findings: list[Finding] = []
    notes: list[str] = []
    with requests.Session() as session:
        for witness in (w for w in policy.witnesses if w.url):
            answer = ask(session, store, origin, witness, note, latest.tree_size, 0)
            if answer.lines:
                notes.append(
                    f"witness {witness.name} accepts the store's newest checkpoint ({latest.tree_size})"
                )
            elif answer.witness_size is not None and answer.status in (409, 422):
                findings.append(
                    Finding(
                        "witness_refused",
                        f"witness {witness.name} holds tree size {answer.witness_size} of {origin} and "
                        f"refuses the store's newest checkpoint (tree size {latest.tree_size}): "
                        f"{answer.problem}; the log was rolled back, forked or rewritten",
                    )
                )
            else:
                notes.append(f"witness {witness.name} could not be asked: {answer.problem}")
    return findings, notes
