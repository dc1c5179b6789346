"""`otel-audit query` reads the otel_audit tables and the system tables that describe them, and
nothing else: no files written or read, no outbound requests, no settings changed, no other
database, no KILL; and every query is bounded in time, memory and result size.

Every case runs twice: through the local socket of a running `serve` (sealer/read_api.py),
then, after serve stopped, with the CLI opening the store itself. Each refusal is checked
for its effect too: the file it would write does not exist, the tokens file is unchanged,
the signer key's bytes and the admin's table are not in the output, no request arrived.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator

import pytest

from backend.migrations import migrate
from backend.read_commands import run
from backend.store import Store
from otel_audit.errors import AuditError
from otel_audit.note import SignerKey
from sealer.auth import add_token
from sealer.read_api import call, socket_path

from .conftest import Sealer, run_cli, start_sealer
from .producers import send_audit_events

COUNT = 30
ADMIN_NOTE = "ADMIN-ONLY-NOTE"


class _Listener(http.server.ThreadingHTTPServer):
    """A local HTTP server that counts the requests url()-like functions would send it."""

    requests = 0


class _Counter(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.requests += 1  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"line\n")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def listener() -> Iterator[_Listener]:
    server = _Listener(("127.0.0.1", 0), _Counter)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sealer]:
    """A serve with a tokens file, 30 records, and a table and a function (SQL UDF) an
    administrator made."""
    workdir = tmp_path_factory.mktemp("query")
    store = Store.open(f"chdb://{workdir / 'store'}")
    try:
        migrate(store)
        store.command("CREATE TABLE default.admin_notes (note String) ENGINE = MergeTree ORDER BY note")
        store.command(f"INSERT INTO default.admin_notes VALUES ('{ADMIN_NOTE}')")
        store.command("CREATE FUNCTION read_any_file AS (path) -> file(path)")
    finally:
        store.close()
    add_token(workdir / "tokens", "orders")
    sealer = start_sealer(
        workdir, SignerKey.generate("query.example/audit"), "--tokens", str(workdir / "tokens")
    )
    try:
        send_audit_events(sealer.endpoint, COUNT)
        sealer.wait_for_output(rf"checkpoint \S+ size {COUNT}\b")
        yield sealer
    finally:
        sealer.kill()


@pytest.fixture(scope="module")
def stopped(running: Sealer) -> Sealer:
    assert running.stop() == 0
    return running


Ask = Callable[..., bytes]  # (sql, format="TSV", **limits) -> output, or AuditError


@pytest.fixture(scope="module")
def through_socket(running: Sealer) -> Ask:
    """What the CLI sends to a running serve (sealer/read_api.py `call`), in this process."""

    def ask(sql: str, fmt: str = "TSV", **limits: int) -> bytes:
        path = socket_path(running.store)
        assert path is not None
        result = call(path, "query", {"sql": sql, "format": fmt, "limits": limits})
        assert result is not None, "serve is not listening on its socket"
        return result.out

    return ask


@pytest.fixture(scope="module")
def directly(stopped: Sealer) -> Iterator[Ask]:
    """What the CLI runs on a store it opens itself (backend/read_commands.py `run`), in this process."""
    store = Store.open(stopped.store, read_only=True)

    def ask(sql: str, fmt: str = "TSV", **limits: int) -> bytes:
        return run(store, "query", {"sql": sql, "format": fmt, "limits": limits}).out

    yield ask
    store.close()


def cli(sealer: Sealer, sql: str, *flags: str) -> tuple[int, str, str]:
    done = run_cli("query", sql, "--store", sealer.store, *flags, cwd=sealer.workdir)
    return done.returncode, done.stdout, done.stderr


# (id, SQL with {dir}, {key}, {tokens} and {url} filled in, what the refusal names)
REFUSED = [
    ("outfile", "SELECT 1 INTO OUTFILE '{dir}/out.txt'", "INTO OUTFILE"),
    ("outfile-append-tokens", "SELECT 'x' INTO OUTFILE '{tokens}' APPEND FORMAT TSVRaw", "INTO OUTFILE"),
    ("outfile-and-stdout", "SELECT 1 INTO OUTFILE '{dir}/out.txt' AND STDOUT", "INTO OUTFILE"),
    ("temporary-file-table", "CREATE TEMPORARY TABLE t (a String) ENGINE = File(TSV)", "CreateQuery"),
    ("temporary-table", "CREATE TEMPORARY TABLE t (a String)", "CreateQuery"),
    (
        "insert-function-file",
        "INSERT INTO FUNCTION file('{dir}/out.txt', 'TSV', 'a String') VALUES ('x')",
        "Insert",
    ),
    ("file-table-function", "SELECT * FROM file('{key}', 'LineAsString')", "table function file()"),
    ("file-function", "SELECT file('{key}')", "function file()"),
    ("file-in-subquery", "SELECT (SELECT file('{key}'))", "function file()"),
    ("describe-file", "DESCRIBE file('{key}', 'CSV')", "DescribeQuery"),
    ("explain-file", "EXPLAIN SELECT * FROM file('{key}', 'CSV')", "table function file()"),
    ("url", "SELECT * FROM url('{url}', 'LineAsString')", "table function url()"),
    ("s3", "SELECT * FROM s3('{url}', 'LineAsString')", "table function s3()"),
    ("remote", "SELECT * FROM remote('127.0.0.1', system.one)", "table function remote()"),
    ("executable", "SELECT * FROM executable('x.sh', 'TSV', 'a String')", "table function executable()"),
    ("dictionary-table-function", "SELECT * FROM dictionary('d')", "table function dictionary()"),
    ("sql-udf", "SELECT read_any_file('{key}')", "function read_any_file()"),
    ("dictGet", "SELECT dictGet('default.d', 'v', toUInt64(1))", "function dictGet()"),
    ("kill", "KILL QUERY WHERE 1", "KillQueryQuery"),
    ("set", "SET max_execution_time = 0", "SetQuery"),
    ("settings-clause", "SELECT count() FROM otel_audit.logs SETTINGS max_memory_usage = 0", "SETTINGS"),
    ("other-database", "SELECT * FROM default.admin_notes", "table default.admin_notes"),
    (
        "other-database-in",
        "SELECT count() FROM otel_audit.logs WHERE Body IN default.admin_notes",
        "default.",
    ),
    ("other-database-scalar", "SELECT (SELECT any(note) FROM default.admin_notes)", "table default."),
    ("information-schema", "SELECT * FROM information_schema.tables", "information_schema.tables"),
    ("system-processes", "SELECT * FROM system.processes", "system.processes"),
    ("show-other-database", "SHOW TABLES FROM default", "SHOW TABLES FROM default"),
    ("show-databases", "SHOW DATABASES", "SHOW DATABASES"),
    ("use", "USE default", "UseQuery"),
    ("explain-as-table", "SELECT * FROM (EXPLAIN SELECT file('{key}'))", "not allowed"),
    ("two-statements", "SELECT 1; SELECT file('{key}')", "Multi-statements"),
    ("insert", "INSERT INTO otel_audit.logs (Seq) VALUES (99999)", "Insert"),
    ("drop", "DROP TABLE otel_audit.logs", "DropQuery"),
]


def _fill(sql: str, sealer: Sealer, listener: _Listener) -> str:
    return sql.format(
        dir=sealer.workdir,
        key=sealer.workdir / "signer.key",
        tokens=sealer.workdir / "tokens",
        url=f"http://127.0.0.1:{listener.server_address[1]}/x",
    )


def _check_refused(ask: Ask, sealer: Sealer, listener: _Listener, sql: str, named: str) -> None:
    tokens = (sealer.workdir / "tokens").read_bytes()
    # PRIVATE+KEY+<name>+<key id>+<base64 seed>: the seed's base64 may itself hold a "+"
    secret = sealer.key.serialize().split("+", 4)[4]
    with pytest.raises(AuditError) as raised:
        ask(_fill(sql, sealer, listener))
    message = str(raised.value)
    assert named in message and message.startswith(("query refused", "query failed")), (sql, message)
    assert not (sealer.workdir / "out.txt").exists()
    assert (sealer.workdir / "tokens").read_bytes() == tokens
    assert secret not in message and ADMIN_NOTE not in message
    assert listener.requests == 0


ALLOWED = [
    ("aggregate", "SELECT count(), countIf(LogAttributes['audit.outcome'] = 'failure') FROM otel_audit.logs "
     "WHERE Seq < 30", "TSV", "30\t6\n"),
    ("unqualified", "SELECT max(Seq) FROM logs WHERE Seq < 30", "TSV", "29\n"),
    ("join", "SELECT max(c.TreeSize) FROM otel_audit.checkpoints AS c "
     "JOIN otel_audit.logs AS l ON l.Seq + 1 = c.TreeSize WHERE c.TreeSize <= 30", "TSV", "30\n"),
    ("cte", "WITH f AS (SELECT Seq FROM logs WHERE Seq % 5 = 0 AND Seq < 30) SELECT count() FROM f",
     "TSV", "6\n"),
    ("json-each-row", "SELECT Seq FROM otel_audit.logs WHERE Seq < 2 ORDER BY Seq FORMAT JSONEachRow", "TSV",
     '{"Seq":0}\n{"Seq":1}\n'),
    ("csv", "SELECT Seq, 'a,b' FROM otel_audit.logs WHERE Seq = 3", "CSV", '3,"a,b"\n'),
    ("window", "SELECT Seq, row_number() OVER (ORDER BY Seq DESC) AS r FROM logs WHERE Seq < 2 ORDER BY Seq",
     "TSV", "0\t2\n1\t1\n"),
    ("numbers", "SELECT sum(number) FROM numbers(10)", "TSV", "45\n"),
    ("readonly", "SELECT getSetting('readonly'), getSetting('max_execution_time')", "TSV", "1\t60\n"),
    ("exists", "EXISTS TABLE otel_audit.logs", "TSV", "1\n"),
    ("system-tables", "SELECT count() FROM system.tables WHERE database = 'otel_audit' AND name = 'logs'",
     "TSV",
     "1\n"),
]  # fmt: skip


def _check_allowed(ask: Ask, sql: str, fmt: str, expected: str) -> None:
    assert ask(sql, fmt).decode() == expected


def _check_metadata(ask: Ask) -> None:
    assert {"logs", "checkpoints", "tree_nodes", "schema_migrations"} <= set(
        ask("SHOW TABLES").decode().split()
    )
    described = ask("DESCRIBE TABLE otel_audit.logs").decode()
    assert "Seq\tUInt64" in described and "Entry\tString" in described
    assert b"MergeTree" in ask("SHOW CREATE TABLE logs", "TSVRaw")
    assert b"ReadFrom" in ask("EXPLAIN SELECT count() FROM otel_audit.logs WHERE Seq > 3")


LIMITS = [
    ("rows", "SELECT number FROM numbers(100)", {"result_rows": 10}, "max_result_rows"),
    (
        "bytes",
        "SELECT materialize(repeat('x', 100)) FROM numbers(1000)",
        {"result_bytes": 1000},
        "max_result_bytes",
    ),
    (
        "memory",
        "SELECT groupArray(number) FROM numbers(10000000)",
        {"memory_bytes": 10**7},
        "max_memory_usage",
    ),
    ("time", "SELECT sum(number) FROM numbers(1000000000000)", {"seconds": 1}, "max_execution_time"),
]


def _check_limit(ask: Ask, sql: str, limits: dict[str, int], setting: str) -> None:
    with pytest.raises(AuditError, match=f"query stopped: .*{setting}"):
        ask(sql, **limits)


# -- through the running sealer's socket -------------------------------------------------------


@pytest.mark.parametrize(("sql", "named"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_refused_through_the_socket(
    through_socket: Ask, running: Sealer, listener: _Listener, sql: str, named: str
) -> None:
    _check_refused(through_socket, running, listener, sql, named)


@pytest.mark.parametrize(("sql", "fmt", "expected"), [c[1:] for c in ALLOWED], ids=[c[0] for c in ALLOWED])
def test_auditor_queries_through_the_socket(through_socket: Ask, sql: str, fmt: str, expected: str) -> None:
    _check_allowed(through_socket, sql, fmt, expected)


def test_metadata_through_the_socket(through_socket: Ask) -> None:
    _check_metadata(through_socket)


@pytest.mark.parametrize(("sql", "limits", "setting"), [c[1:] for c in LIMITS], ids=[c[0] for c in LIMITS])
def test_limits_through_the_socket(
    through_socket: Ask, sql: str, limits: dict[str, int], setting: str
) -> None:
    _check_limit(through_socket, sql, limits, setting)


def test_the_cli_through_the_socket(running: Sealer) -> None:
    """Exit 2 and the reason on stderr for a refusal, a limit hit, and a limit raised."""
    rc, out, err = cli(running, "SELECT * FROM file('signer.key', 'LineAsString')")
    assert (rc, out) == (2, "") and "query refused: table function file() is not allowed" in err
    rc, _, err = cli(running, "SELECT number FROM numbers(100)", "--max-result-rows", "10")
    assert rc == 2 and "max_result_rows" in err
    for flags in (["--max-seconds", "61"], ["--max-result-rows", "0"], ["--max-memory-bytes", "-1"]):
        rc, _, err = cli(running, "SELECT 1", *flags)
        assert rc == 2 and f"{flags[0]} must be a whole number from 1 to" in err, err
    rc, out, err = cli(running, "SELECT count() FROM otel_audit.logs WHERE Seq < 30", "--format", "TSV")
    assert (rc, out) == (0, "30\n"), err


def test_a_format_is_a_name_from_the_engine(through_socket: Ask) -> None:
    """--format goes into the SQL text: only an output format's name is accepted."""
    with pytest.raises(AuditError, match="unknown output format"):
        through_socket("SELECT 1", "TSV; SELECT file('signer.key')")
    assert through_socket("SELECT 1", "JSONEachRow") == b'{"1":1}\n'


def test_the_sealer_keeps_sealing_after_refusals(running: Sealer, through_socket: Ask) -> None:
    """The refusals above ran in the sealer's process: it still seals."""
    send_audit_events(running.endpoint, 5, start=COUNT)
    running.wait_for_output(rf"checkpoint \S+ size {COUNT + 5}\b")
    assert through_socket("SELECT count() FROM otel_audit.logs") == f"{COUNT + 5}\n".encode()


# -- with the store opened directly (serve stopped) ---------------------------------------------


@pytest.mark.parametrize(("sql", "named"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_refused_directly(directly: Ask, stopped: Sealer, listener: _Listener, sql: str, named: str) -> None:
    _check_refused(directly, stopped, listener, sql, named)


@pytest.mark.parametrize(("sql", "fmt", "expected"), [c[1:] for c in ALLOWED], ids=[c[0] for c in ALLOWED])
def test_auditor_queries_directly(directly: Ask, sql: str, fmt: str, expected: str) -> None:
    _check_allowed(directly, sql, fmt, expected)


def test_metadata_directly(directly: Ask) -> None:
    _check_metadata(directly)


@pytest.mark.parametrize(("sql", "limits", "setting"), [c[1:] for c in LIMITS], ids=[c[0] for c in LIMITS])
def test_limits_directly(directly: Ask, sql: str, limits: dict[str, int], setting: str) -> None:
    _check_limit(directly, sql, limits, setting)


def test_nothing_was_added_or_lost_directly(stopped: Sealer, directly: Ask) -> None:
    assert directly("SELECT count() FROM otel_audit.logs") == f"{COUNT + 5}\n".encode()
