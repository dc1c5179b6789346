"""One exception hierarchy for the whole project.

Messages say what failed and what to do. Integrity failures carry the Seq range and the
kind of failure as data so that the CLI, its JSON output and the tests read the same fields.

Every class says whether doing the same again may succeed (`retryable`). The sealer's own
INSERT retry (sealer/group_commit.py) retries StoreUnavailableError and nothing else, so among the
store's errors `retryable` holds exactly for StoreUnavailableError and its subclasses
(tests/test_errors.py checks it). How a receiver answers each error, and whether OTLP clients
retry that answer, is sealer/outcomes.py's table.
"""

from __future__ import annotations

from dataclasses import dataclass

# The command line's exit codes (`otel-audit` and `otel-audit-verify` alike): success or an
# intact log, a check that ran and failed, and a usage or operational error.
EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2


class AuditError(Exception):
    """Base of every error otel-audit raises on purpose."""

    retryable: bool = False
    exit_code: int = EXIT_ERROR  # the command line could not do what it was asked


class FormatError(AuditError):
    """A key, note, checkpoint or entry does not follow its format."""


class SignatureError(AuditError):
    """A signed note carries no valid signature by the expected key."""


class ProofError(AuditError):
    """A Merkle proof, or the bundle carrying it, does not lead to the signed root."""

    exit_code = EXIT_FAILED  # the check ran, and what it checked is not intact


class RootMismatchError(ProofError):
    """A proof leads to another root than the one it was checked against (as
    transparency-dev/merkle's RootMismatchError); both roots are carried as data."""

    def __init__(self, expected_root: bytes, calculated_root: bytes) -> None:
        super().__init__(expected_root, calculated_root)  # the args: it pickles across processes
        self.expected_root = expected_root
        self.calculated_root = calculated_root

    def __str__(self) -> str:
        return (
            f"calculated root {self.calculated_root.hex()} does not match "
            f"expected root {self.expected_root.hex()}"
        )


class ProofSizeError(ProofError):
    """A proof holds another number of hashes than its tree sizes call for."""

    def __init__(self, got: int, want: int) -> None:
        super().__init__(got, want)
        self.got = got
        self.want = want

    def __str__(self) -> str:
        return f"wrong proof size {self.got}, want {self.want}"


class TimestampError(AuditError):
    """An RFC 3161 time-stamp token (otel_audit/timestamp.py) does not prove what it should:
    not granted, over other bytes than the checkpoint note, not signed by a TSA certificate
    that chains to the trusted roots at the token's time, or without the timestamping EKU."""


class TsaUnavailableError(AuditError):
    """A time-stamp authority did not answer, or answered with something that is not a usable
    token; the sealer's timestamper (sealer/timestamper.py) retries with back-off."""

    retryable = True


class ConfigError(AuditError):
    """A command-line flag, environment variable or key file is unusable."""


class AnchorError(AuditError):
    """A checkpoint could not be written to an external anchor (otel_audit/anchors.py): the
    anchor directory cannot be created or written. The checkpointer tries again at its next
    checkpoint; the same write may pass once the file system does."""

    retryable = True


# -- the store ----------------------------------------------------------------------------
# backend/error_codes.py turns the engine's error codes into these classes.


class StoreError(AuditError):
    """The ClickHouse store failed or holds something the sealer cannot continue from."""


class StoreUnavailableError(StoreError):
    """A store operation failed in a way that may succeed when retried (a lost connection,
    a missing table, a cancelled query, a full disk)."""

    retryable = True


class StoreStatementError(StoreError):
    """The engine refused a statement as wrong (bad SQL, an unknown column or function, a
    wrong argument): a programming error, not an outage. Sending it again will not help."""


class StoreReadOnlyError(StoreError):
    """The engine refused a write or a settings change in this session: it is read-only
    (readonly = 1 or 2) or lacks the grant. Sending it again on this session will not help."""


class StoreDataError(StoreError):
    """The store cannot take these rows: a value it cannot hold (backend/limits.py).
    Sending the same rows again will not help."""


class StoreDamagedError(StoreUnavailableError):
    """The engine cannot read data it holds (a part whose files are empty or cut short, as a
    full disk leaves them). A retry may succeed once the engine drops the part; its rows are
    lost all the same."""


class StoreDiskFullError(StoreUnavailableError):
    """The engine refused to write: not enough space on its disk (NOT_ENOUGH_SPACE). A retry
    succeeds once space is freed."""


# -- the sealer ----------------------------------------------------------------------------


class DiskFullError(StoreUnavailableError):
    """The store's file system is nearly full (sealer/disk.py): records are refused until
    space is freed, then a retry succeeds."""


class BackpressureError(StoreUnavailableError):
    """The pipeline holds as many records as it may; the caller should retry later."""


class SealerStoppedError(StoreUnavailableError):
    """The pipeline is not accepting records (stopping, or halted by a store divergence);
    a retry succeeds against a running sealer."""


class WorkerError(AuditError):
    """A sealing worker stopped while preparing the request (sealer/workers.py); retrying it
    is safe."""

    retryable = True


class RequestError(AuditError):
    """The request is not an OTLP ExportLogsServiceRequest; sending it again will not help."""


class BodyTooLarge(RequestError):
    """The body, as sent or once inflated, is over the size limit (answered 413); sending it
    again will not help."""


class RefusedByStoreError(RequestError):
    """The store cannot hold this batch's records (StoreDataError); sending them again will
    not help. Only this batch is refused: the others of its group are written without it."""

    def __init__(self, cause: StoreDataError) -> None:
        super().__init__(f"records refused, the store cannot hold them (do not retry): {cause}")


class WitnessRefusal(AuditError):
    """A witness will not cosign (c2sp.org/tlog-witness): `status` is the HTTP status the
    spec gives (400, 403, 404, 409, 422); `size` is the tree size it last cosigned, sent as
    the body of a 409."""

    def __init__(self, status: int, message: str, size: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.size = size


class RelayedError(AuditError):
    """An error a running sealer raised for a read command it ran for the command line
    (sealer/read_api.py): the message and exit code of the sealer's error, carried over the
    local socket so the command line ends exactly as if it had run the command itself."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message, exit_code)
        self.exit_code = exit_code

    def __str__(self) -> str:
        return str(self.args[0])


class Unauthenticated(AuditError):
    """The request carries no identity we accept (sealer/auth.py); the message says what to
    send. Sending it again unchanged will not help."""


@dataclass(frozen=True)
class Finding:
    """One integrity failure found by the verifier, located by Seq.

    `kind` is a stable machine-readable word (missing, duplicate, leaf_hash, chain_hash,
    column, root, signature, truncated, ...); `first_seq`/`last_seq` bound the affected range
    (both None when the failure is not tied to a record, e.g. a bad anchor file).
    """

    kind: str
    message: str
    first_seq: int | None = None
    last_seq: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "message": self.message,
        }

    def __str__(self) -> str:
        if self.first_seq is None:
            where = "log"
        elif self.last_seq is None or self.last_seq == self.first_seq:
            where = f"Seq {self.first_seq}"
        else:
            where = f"Seq {self.first_seq}..{self.last_seq}"
        return f"{where}: {self.kind}: {self.message}"


class JournalError(AuditError):
    """The journal (sealer/journal.py) cannot be written, or holds records that do not check
    out: torn beyond repair, altered, forged, or not what the store and the signed checkpoints
    say the log holds."""
