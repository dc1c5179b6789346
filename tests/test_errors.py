"""One exception hierarchy: store errors told apart by the engine's error code (real chDB
statements), the pipeline retrying only the retryable ones, and one table from an intake
outcome to a gRPC and an HTTP status."""

from __future__ import annotations

import inspect
import socket

import pytest
from google.rpc import code_pb2

import otel_audit.errors as errors
from backend.error_codes import CODES
from backend.store import Store
from otel_audit.anchors import latest_anchor, write_anchor
from otel_audit.errors import (
    AnchorError,
    ConfigError,
    StoreDiskFullError,
    StoreError,
    StoreReadOnlyError,
    StoreStatementError,
    StoreUnavailableError,
)
from otel_audit.note import SignerKey
from sealer.checkpointer import Checkpointer
from sealer.outcomes import outcome_of
from sealer.pipeline import Pipeline, PublishedLog
from sealer.state import LogState

from .prepared import items

ORIGIN = "errors.example/audit"


def test_every_code_is_named_as_the_engine_names_it(store) -> None:
    names = store.client.query(
        "SELECT arrayJoin({c:Array(UInt32)}) AS c, errorCodeToName(c)", parameters={"c": sorted(CODES)}
    ).result_rows
    assert dict(names) == {code: name for code, (name, _) in CODES.items()}


def test_retryable_store_errors_are_exactly_those_the_pipeline_retries() -> None:
    """sealer/group_commit.py retries StoreUnavailableError (tenacity, by type): `retryable`
    must say the same of every store error, or a receiver and the pipeline would disagree."""
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.AuditError)]
    for cls in classes:
        if issubclass(cls, StoreError):
            assert cls.retryable == issubclass(cls, StoreUnavailableError), cls
    assert {c.__name__ for c in classes if c.retryable} >= {"WorkerError", "StoreDiskFullError"}
    assert not StoreStatementError.retryable and not StoreReadOnlyError.retryable


def test_only_a_failed_check_exits_1() -> None:
    """The command line exits with the error's `exit_code` (otel_audit/offline_cli.py
    `run_command`), and a sealer relays it for the commands it runs (sealer/read_api.py):
    1 for a proof that does not hold, 2 for everything that kept the check from running."""
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.AuditError)]
    for cls in classes:
        if cls is not errors.RelayedError:
            assert (cls.exit_code == errors.EXIT_FAILED) == issubclass(cls, errors.ProofError), cls
    assert errors.RelayedError("gone", errors.EXIT_FAILED).exit_code == errors.EXIT_FAILED
    assert str(errors.RelayedError("gone", errors.EXIT_ERROR)) == "gone"


@pytest.mark.parametrize(
    ("sql", "match"),
    [
        ("SELEC 1", "SYNTAX_ERROR"),
        ("SELECT NoSuchColumn FROM otel_audit.logs", "UNKNOWN_IDENTIFIER"),
        ("SELECT noSuchFunction(1)", "UNKNOWN_FUNCTION"),
    ],
)
def test_a_bad_statement_is_not_retryable(store, sql: str, match: str) -> None:
    with pytest.raises(StoreStatementError, match=match) as raised:
        store.select(sql)
    assert not isinstance(raised.value, StoreUnavailableError) and not raised.value.retryable
    with pytest.raises(StoreStatementError, match=match):
        store.command(sql)


def test_a_write_on_a_read_only_session_is_a_read_only_refusal(store) -> None:
    reader = Store.open(store.dsn, read_only=True)
    try:
        with pytest.raises(StoreReadOnlyError, match="READONLY") as raised:
            reader.insert_migration(99, "never")
        assert not raised.value.retryable
        with pytest.raises(StoreReadOnlyError, match="READONLY"):
            reader.command("CREATE TABLE otel_audit.never (x UInt8) ENGINE = Memory")
    finally:
        reader.close()
    assert store.select("SELECT count() FROM otel_audit.schema_migrations WHERE Version = 99") == [(0,)]


def test_a_store_nobody_listens_on_is_retryable() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nobody listens on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(StoreUnavailableError, match=f"cannot open store http://127.0.0.1:{port}/") as raised:
        Store.open(f"http://127.0.0.1:{port}/")
    assert raised.value.retryable


def test_a_full_disk_is_retryable(store) -> None:
    """NOT_ENOUGH_SPACE (243), as the engine raises it when its disk has less free than the
    table asks for (as tests/test_migrations.py makes it: more than any disk has)."""
    limit = f"min_free_disk_bytes_to_perform_insert = {1 << 62}"
    store.command(f"ALTER TABLE otel_audit.schema_migrations MODIFY SETTING {limit}")
    with pytest.raises(StoreDiskFullError, match="NOT_ENOUGH_SPACE") as raised:
        store.insert_migration(99, "never")
    assert isinstance(raised.value, StoreUnavailableError) and raised.value.retryable


def test_the_pipeline_retries_an_outage_but_not_a_bad_statement(store) -> None:
    calls: list[str] = []
    real_insert = store.insert_blocks
    wrong = {"columns": False}

    def insert(columns, blocks, token) -> None:  # type: ignore[no-untyped-def]
        calls.append(token)
        if wrong["columns"]:  # a programming error: a column the table does not have
            columns = (*columns[:-1], "NoSuchColumn")
        real_insert(columns, blocks, token)

    store.insert_blocks = insert
    pipeline = Pipeline(store, PublishedLog(LogState.empty(ORIGIN)), insert_attempts=3)
    pipeline.start()
    try:
        wrong["columns"] = True
        with pytest.raises(StoreStatementError, match="NO_SUCH_COLUMN_IN_TABLE"):
            pipeline.seal(items(2))
        assert len(calls) == 1  # refused once: sending it again cannot help
        wrong["columns"] = False
        calls.clear()
        store.command("DETACH TABLE otel_audit.logs")  # an outage: retried, then refused retryable
        try:
            with pytest.raises(StoreUnavailableError, match="UNKNOWN_TABLE"):
                pipeline.seal(items(2))
        finally:
            store.command("ATTACH TABLE otel_audit.logs")
        assert len(calls) == 3 and len(set(calls)) == 1  # the same INSERT, deduplicated by token
        assert pipeline.seal(items(2)) == 0  # nothing was committed, no Seq was used
    finally:
        pipeline.stop()
    assert [row[0] for row in store.hashes_from(ORIGIN, 0)] == [0, 1]


def test_an_anchor_that_cannot_be_written_is_an_anchor_error(tmp_path) -> None:
    """Not a ConfigError: the sealer's configuration is fine, its anchor directory's file
    system is not; the checkpointer logs it and writes the next anchor (sealer/checkpointer.py)."""
    (tmp_path / "anchors").write_text("a file where the anchor directory should be")
    with pytest.raises(AnchorError, match="cannot write anchor in") as raised:
        write_anchor(tmp_path / "anchors", ORIGIN, 7, "note\n")
    assert not isinstance(raised.value, ConfigError)


def test_the_checkpointer_anchors_again_after_an_anchor_write_failed(store, tmp_path) -> None:
    """The checkpoint is stored before its anchor is written; the AnchorError reaches the
    caller (the timer logs it and tries again), and once the directory can be written the
    next try anchors that tree size."""
    anchors = tmp_path / "anchors"
    anchors.write_text("not a directory")
    pipeline = Pipeline(store, PublishedLog(LogState.empty(ORIGIN)))
    pipeline.start()
    pipeline.seal(items(3))
    pipeline.stop()  # its state published
    checkpointer = Checkpointer(store, SignerKey.generate(ORIGIN), anchors, lambda: pipeline.state, 3600)
    with pytest.raises(AnchorError, match="cannot write anchor in"):
        checkpointer.checkpoint_now()
    assert store.checkpoint_sizes_above(ORIGIN, -1, limit=5) == [3]
    anchors.unlink()
    assert checkpointer.checkpoint_now() is not None
    anchor = latest_anchor(anchors, ORIGIN)
    assert anchor is not None and anchor.checkpoint.tree_size == 3


# -- one table from an intake outcome to a gRPC and an HTTP status ------------------------

_ANSWERS = [  # what each receiver has always answered: gRPC code and text, HTTP status, body code and text
    (errors.Unauthenticated("unknown bearer token"), "unauthenticated",
     "UNAUTHENTICATED", "unknown bearer token", 401, "UNAUTHENTICATED", "unknown bearer token",
     {"WWW-Authenticate": "Bearer"}),
    (errors.BodyTooLarge("body exceeds 9 bytes"), None,
     "RESOURCE_EXHAUSTED", "body exceeds 9 bytes", 413, "INVALID_ARGUMENT", "body exceeds 9 bytes", {}),
    (errors.RequestError("not OTLP"), "bad_request",
     "INVALID_ARGUMENT", "not OTLP", 400, "INVALID_ARGUMENT", "not OTLP", {}),
    (errors.RefusedByStoreError(errors.StoreDataError("x")), "bad_request", "INVALID_ARGUMENT",
     "records refused, the store cannot hold them (do not retry): x", 400, "INVALID_ARGUMENT",
     "records refused, the store cannot hold them (do not retry): x", {}),
    (errors.BackpressureError("queue full"), "queue_full",
     "UNAVAILABLE", "records not sealed, retry in 1 s: queue full", 429, "RESOURCE_EXHAUSTED", "queue full",
     {"Retry-After": "1"}),
    (errors.DiskFullError("disk"), None,
     "UNAVAILABLE", "records not sealed, retry: disk", 503, "UNAVAILABLE", "records not sealed, retry: disk",
     {"Retry-After": "1"}),
    (errors.StoreUnavailableError("down"), "unavailable",
     "UNAVAILABLE", "records not sealed, retry: down", 503, "UNAVAILABLE", "records not sealed, retry: down",
     {"Retry-After": "1"}),
    (errors.StoreStatementError("bad"), "unavailable",  # not lost: the sealer is mended, the retry passes
     "UNAVAILABLE", "records not sealed, retry: bad", 503, "UNAVAILABLE", "records not sealed, retry: bad",
     {"Retry-After": "1"}),
    (errors.WorkerError("stopped"), "unavailable", "UNAVAILABLE", "records not sealed, retry: stopped",
     503, "UNAVAILABLE", "records not sealed, retry: stopped", {"Retry-After": "1"}),
    (ValueError("a bug"), None,
     "INTERNAL", "sealer error: a bug", 500, "INTERNAL", "sealer error: a bug", {}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("exc", "reason", "grpc_code", "grpc_text", "http_status", "body_code", "body_text", "headers"), _ANSWERS
)
def test_each_refusal_is_answered_as_the_receivers_always_answered_it(  # type: ignore[no-untyped-def]
    exc, reason, grpc_code, grpc_text, http_status, body_code, body_text, headers
) -> None:
    outcome = outcome_of(exc)
    assert outcome.reason == reason
    assert (outcome.grpc_code.name, outcome.grpc_text(exc)) == (grpc_code, grpc_text)
    assert (int(outcome.http_status), code_pb2.Code.Name(outcome.http_code)) == (http_status, body_code)
    assert (outcome.http_text(exc), outcome.headers()) == (body_text, headers)
    assert outcome.grpc_retry_info == isinstance(exc, errors.BackpressureError)


# OTLP spec (protocol/otlp.md, Failures): what clients retry.
_GRPC_RETRYABLE = {"CANCELLED", "DEADLINE_EXCEEDED", "ABORTED", "OUT_OF_RANGE", "UNAVAILABLE", "DATA_LOSS"}
_HTTP_RETRYABLE = {429, 502, 503, 504}


@pytest.mark.parametrize("exc", [answer[0] for answer in _ANSWERS], ids=lambda e: type(e).__name__)
def test_an_outcome_is_retried_by_otlp_clients_exactly_when_it_says_so(exc: Exception) -> None:
    outcome = outcome_of(exc)
    assert (outcome.grpc_code.name in _GRPC_RETRYABLE) == outcome.retryable
    assert (int(outcome.http_status) in _HTTP_RETRYABLE) == outcome.retryable
    assert (
        outcome.retry_delay_seconds is not None
    ) == outcome.retryable  # Retry-After on every retryable one
