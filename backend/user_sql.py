"""A user's SQL (`otel-audit query`): what it may read, and the session it runs in.

`query` is for auditors: it reads the otel_audit tables and a few system tables that
describe them, and nothing else. Three layers, each the engine's own:

1. The engine's parser decides what the statement is and what it touches. The SQL is
   formatted by the engine (`formatQuerySingleLine`, one statement only) and that canonical
   text is what is checked and what runs. Its syntax tree (`parseQueryToJSON`, which must
   format back to the same text; for DESCRIBE, EXISTS and SHOW CREATE the `EXPLAIN AST`
   dump, matched whole) is checked against an allow-list: statement kinds, tables, table
   functions; no INTO OUTFILE, no SETTINGS, no function that reads files, dictionaries or
   models or calls out (the engine's catalog, system.functions, says which). Then the
   engine's analyzer (`EXPLAIN QUERY TREE`) resolves every table the query reads, and each
   must be in the allowed set.
2. The query runs on a session of its own with `readonly = 1` (no writes, no DDL, no
   temporary tables, no SET or SETTINGS, no table functions but numbers()/zeros()) and fixed
   limits on time, memory and result size (`QueryLimits`), set before `readonly` so the
   query cannot change them. It is a fresh session per query: the embedded driver applies
   per-query settings with SET, which `readonly = 1` refuses, so this session is never given
   any, and nothing one query does is left for the next.
3. On a ClickHouse server, the auditor role's grants and settings profile
   (backend/security/grants.sql) enforce the same.

Refusals and limits are told apart by ClickHouse's error codes, never by message text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from urllib.parse import urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from otel_audit.errors import ConfigError, StoreError, StoreReadOnlyError

from .error_codes import (
    BAD_ARGUMENTS,
    MEMORY_LIMIT_EXCEEDED,
    SYNTAX_ERROR,
    TIMEOUT_EXCEEDED,
    TOO_MANY_ROWS_OR_BYTES,
    code_of,
    error_class,
    store_error,
)
from .migrations import TABLE as MIGRATIONS
from .store import CHECKPOINTS, LOGS, TIMESTAMPS, TREE_NODES

DATABASE = "otel_audit"
# The tables `query` may read: the log's own, and the system tables that describe them
# (system.one is what a SELECT without FROM reads).
ALLOWED_TABLES = frozenset(
    {
        LOGS,
        CHECKPOINTS,
        TREE_NODES,
        TIMESTAMPS,
        MIGRATIONS,
        "system.tables",
        "system.columns",
        "system.parts",
        "system.one",
    }
)
# Table functions that read nothing but numbers they make up.
ALLOWED_TABLE_FUNCTIONS = frozenset(
    {"numbers", "numbers_mt", "zeros", "zeros_mt", "generateSeries", "generate_series"}
)
# Functions that read files, dictionaries (which may read files or call out), models, or
# call out, by system.functions category and by name; and every function not built in.
REFUSED_FUNCTION_CATEGORIES = ("Dictionary", "Embedded Dictionary", "Introspection", "AI")
REFUSED_FUNCTIONS = ("file", "joinGet", "joinGetOrNull", "catboostEvaluate", "modelEvaluate",
                     "naiveBayesClassifier", "naiveBayesClassifierWithProb",
                     "naiveBayesClassifierWithAllProbs", "generateSerialID")  # fmt: skip
_SELECTS = ("SelectWithUnionQuery", "SelectIntersectExceptQuery")
_SELECT_NODES = frozenset({*_SELECTS, "SelectQuery", "TablesInSelectQuery"})  # and its parts
_IN_FUNCTIONS = frozenset(
    {"in", "notIn", "globalIn", "globalNotIn", "nullIn", "notNullIn", "globalNullIn", "globalNotNullIn"}
)
_SHOW_TABLES_KEYS = frozenset(
    {"type", "like", "not_like", "case_insensitive_like", "from", "limit_length", "where_expression",
     "format_ast", "is_outfile_append", "is_outfile_truncate", "is_into_outfile_with_stdout"}
)  # fmt: skip
_WHAT_IS_ALLOWED = (
    "`otel-audit query` is read-only: SELECT, SHOW TABLES, SHOW COLUMNS, DESCRIBE, EXISTS, SHOW CREATE "
    "and EXPLAIN, over the otel_audit tables and system.tables/columns/parts"
)


@dataclass(frozen=True)
class QueryLimits:
    """What one user query may use. The defaults are also the ceilings: a caller may lower
    them (`query --max-seconds ...`: the flag is --max- and the field's name), never raise them."""

    seconds: int = field(default=60, metadata={"setting": "max_execution_time"})
    memory_bytes: int = field(default=1 << 30, metadata={"setting": "max_memory_usage"})
    result_rows: int = field(default=1_000_000, metadata={"setting": "max_result_rows"})
    result_bytes: int = field(default=256 << 20, metadata={"setting": "max_result_bytes"})

    @classmethod
    def lowered(cls, requested: dict[str, object]) -> QueryLimits:
        """The defaults, with each limit in `requested` (by field name) lowered to it."""
        limits = cls()
        for f in fields(cls):
            value = requested.get(f.name)
            if value is None:
                continue
            ceiling = getattr(limits, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= ceiling:
                flag = "--max-" + f.name.replace("_", "-")
                raise ConfigError(f"{flag} must be a whole number from 1 to {ceiling}")
            limits = replace(limits, **{f.name: value})
        return limits

    def settings(self) -> dict[str, object]:
        """The session settings that enforce these limits; a limit hit fails the query."""
        limits: dict[str, object] = {f.metadata["setting"]: getattr(self, f.name) for f in fields(self)}
        return {**limits, "result_overflow_mode": "throw", "timeout_overflow_mode": "throw"}


def run_user_sql(dsn: str, sql: str, fmt: str, limits: QueryLimits) -> bytes:
    """Check `sql` against the allow-list, then run it read-only within `limits`."""
    # The checks run the analyzer (which evaluates constant scalar subqueries) within the
    # same time and memory limits; the result limits would cut EXPLAIN's own output.
    check_limits = replace(limits, result_rows=QueryLimits.result_rows, result_bytes=QueryLimits.result_bytes)
    try:
        with _session(dsn, check_limits) as checker:
            canonical, has_format = check(checker, sql)
            if not has_format:
                _check_format(checker, fmt)
        with _session(dsn, limits) as session:
            return session.raw_query(canonical, fmt=None if has_format else fmt)
    except (ClickHouseError, OSError) as exc:
        raise _failure(exc, limits) from None


def check(session: Client, sql: str) -> tuple[str, bool]:
    """The canonical text of `sql` if `query` may run it, and whether it names its FORMAT;
    otherwise ConfigError saying what is refused."""
    canonical = str(_value(session, "SELECT formatQuerySingleLine({q:String})", sql))  # one statement
    tree = _syntax_tree(session, canonical)
    if tree is None:
        return canonical, _check_ast_dump(session, canonical)
    if _format_tree(session, tree) != canonical:  # what is checked below must be all that runs
        raise refused("the engine's syntax tree of this statement does not describe all of it")
    kind = tree.get("type")
    refs = _Refs()
    selects: list[dict] = []
    if kind in _SELECTS:
        refs.walk(tree)
        selects = [tree]
    elif (
        kind == "ExplainQuery"
        and isinstance(tree.get("query"), dict)
        and tree["query"].get("type") in _SELECTS
    ):
        refs.walk({k: v for k, v in tree.items() if k != "settings"})  # EXPLAIN's own options
        selects = [tree["query"]]
    elif kind == "ShowTablesQuery":
        _check_show_tables(tree)
        refs.walk(tree)
    elif kind == "ShowColumnsQuery":
        _check_table(f"{tree.get('database') or DATABASE}.{tree.get('table')}")
        refs.walk(tree)
    else:
        raise refused(f"{kind} statements are not allowed")
    refs.check(session)
    for select in selects:
        _check_query_tree(
            session, _format_tree(session, {k: v for k, v in select.items() if k != "format_ast"})
        )
    return canonical, bool(refs.formats)


def refused(what: str) -> ConfigError:
    return ConfigError(f"query refused: {what}; {_WHAT_IS_ALLOWED}")


@dataclass
class _Refs:
    """What a syntax tree (parseQueryToJSON) names: functions, tables, table functions, CTEs."""

    functions: set[str] = field(default_factory=set)
    table_functions: set[str] = field(default_factory=set)
    tables: set[tuple[str, ...]] = field(default_factory=set)
    ctes: set[str] = field(default_factory=set)
    formats: set[str] = field(default_factory=set)
    depth: int = 0  # 0 at the statement itself

    def walk(self, node: object) -> None:
        if isinstance(node, list):
            for item in node:
                self.walk(item)
            return
        if not isinstance(node, dict):
            return
        kind = str(node.get("type"))
        if self.depth and kind.endswith("Query") and kind not in _SELECT_NODES and kind != "SetQuery":
            raise refused(f"{kind} inside another statement is not allowed")
        if kind == "SetQuery":
            names = ", ".join(str(c.get("name")) for c in node.get("changes") or [])
            raise refused(f"settings changes are not allowed (SETTINGS {names})")
        if "out_file" in node or node.get("is_into_outfile_with_stdout"):
            raise refused("INTO OUTFILE is not allowed: query writes no files")
        if kind == "TableIdentifier":
            self.tables.add(tuple(node.get("name_parts") or [str(node.get("name"))]))
        elif kind == "WithElement":
            self.ctes.add(str(node.get("name")))
        elif kind == "Function":
            self.functions.add(str(node.get("name")))
            args = (node.get("arguments") or {}).get("children") or []
            if node.get("name") in _IN_FUNCTIONS and len(args) == 2 and args[1].get("type") == "Identifier":
                parts = args[1].get("name_parts")
                if parts:  # `x IN db.table`: a table read as a set
                    self.tables.add(tuple(parts))
        self.depth += 1
        for key, value in node.items():
            if key == "table_function" and isinstance(value, dict):
                self.table_functions.add(str(value.get("name")))
                self.walk(value.get("arguments"))
            elif key == "format_ast" and isinstance(value, dict):
                self.formats.add(str(value.get("name")))
            else:
                self.walk(value)
        self.depth -= 1

    def check(self, session: Client) -> None:
        for name in sorted(self.table_functions - ALLOWED_TABLE_FUNCTIONS):
            raise refused(f"table function {name}() is not allowed: query reads only the otel_audit tables")
        for parts in sorted(self.tables):
            if len(parts) == 1 and parts[0] in self.ctes:
                continue
            _check_table(".".join(parts if len(parts) > 1 else (DATABASE, *parts)))
        refused_functions = _refused_functions(session)
        for name in sorted(self.functions):
            if name.lower() in refused_functions:
                raise refused(
                    f"function {name}() is not allowed: it reads files, dictionaries or models, "
                    "calls out, or is not built in"
                )
        for name in sorted(self.formats):
            _check_format(session, name)


def _check_table(name: str) -> None:
    if name not in ALLOWED_TABLES:
        raise refused(f"table {name} is not allowed")


def _check_show_tables(tree: dict) -> None:
    extra = sorted(k for k, v in tree.items() if k not in _SHOW_TABLES_KEYS and v)
    if extra:
        raise refused(f"SHOW {' '.join(extra).upper()} is not allowed")
    source = tree.get("from")
    if source is not None and source.get("name") != DATABASE:
        raise refused(f"SHOW TABLES FROM {source.get('name')} is not allowed: only {DATABASE}")


def _refused_functions(session: Client) -> frozenset[str]:
    """Lower-case names (and aliases) of the functions user SQL may not call, by the catalog."""
    rows = session.query(
        "SELECT name FROM system.functions WHERE origin != 'System' OR categories IN {c:Array(String)} "
        "OR name IN {n:Array(String)} OR alias_to IN {n:Array(String)}",
        parameters={"c": list(REFUSED_FUNCTION_CATEGORIES), "n": list(REFUSED_FUNCTIONS)},
    ).result_rows
    return frozenset(str(name).lower() for (name,) in rows) | {n.lower() for n in REFUSED_FUNCTIONS}


def _check_format(session: Client, name: str) -> None:
    found = session.query(
        "SELECT count() FROM system.formats WHERE name = {f:String} AND is_output", parameters={"f": name}
    ).result_rows[0][0]
    if not found:
        raise ConfigError(
            f"unknown output format {name!r}: see SELECT name FROM system.formats WHERE is_output"
        )


# `EXPLAIN AST` dumps of the statements parseQueryToJSON cannot describe, matched whole: the
# statement line, its table, and an optional FORMAT; anything else in the dump is refused.
_DESCRIBE = re.compile(
    r"DescribeQuery \(children \d\)\n TableExpression \(children 1\)\n  TableIdentifier (\S+)"
)
_NAMED = re.compile(r"(ExistsTableQuery|ShowCreateTableQuery) (\S*) (\S+) \(children \d\)\n")
_FORMAT_LINE = re.compile(r"\n Identifier (\w+)$")


def _check_ast_dump(session: Client, canonical: str) -> bool:
    """DESCRIBE, EXISTS TABLE and SHOW CREATE TABLE of an allowed table; whether a FORMAT is given."""
    dump = session.raw_query(f"EXPLAIN AST {canonical}").decode().rstrip("\n")
    fmt = None
    describe = _DESCRIBE.match(dump)
    if describe:
        table, rest = describe.group(1), dump[describe.end() :]
    else:
        named = _NAMED.match(dump)
        if not named:
            raise refused(f"{dump.split(' ', 1)[0]} statements are not allowed")
        database, name = named.group(2), named.group(3)
        table = f"{database}.{name}" if database else name
        expected = "".join(f" Identifier {part}\n" for part in (database, name) if part)
        rest = dump[named.end() :]
        if not rest.startswith(expected.rstrip("\n")):
            raise refused(f"{named.group(1)} of {table} is not allowed")
        rest = rest[len(expected.rstrip("\n")) :]
    if rest:
        found = _FORMAT_LINE.fullmatch(rest)
        if not found:
            raise refused("this statement form is not allowed")
        fmt = found.group(1)
        _check_format(session, fmt)
    _check_table(table if "." in table else f"{DATABASE}.{table}")
    return fmt is not None


_TABLE_LINE = re.compile(r"^\s*TABLE id: \d+.*$", re.MULTILINE)
_TABLE_FUNCTION_LINE = re.compile(r"^\s*TABLE_FUNCTION id: \d+.*$", re.MULTILINE)


def _check_query_tree(session: Client, select: str) -> None:
    """Every table and table function the analyzer resolves the query to must be allowed."""
    tree = session.raw_query(f"EXPLAIN QUERY TREE {select}", fmt="TSVRaw").decode()
    for line in _TABLE_LINE.findall(tree):
        names = re.findall(r", table_name: ([^,\s]+)", line)
        if not names:
            raise refused("a table the query reads could not be identified")
        for name in names:
            _check_table(name)
    for line in _TABLE_FUNCTION_LINE.findall(tree):
        names = re.findall(r", table_function_name: ([^,\s]+)", line)
        if not names or not set(names) <= ALLOWED_TABLE_FUNCTIONS:
            raise refused(f"table function {', '.join(names) or '?'}() is not allowed")


def _value(session: Client, sql: str, text: str) -> object:
    """One value of a query of ours about the user's text, passed as a bound parameter."""
    return session.query(sql, parameters={"q": text}).result_rows[0][0]


def _format_tree(session: Client, tree: dict) -> str:
    """The SQL text of a syntax tree, formatted by the engine as formatQuerySingleLine() does."""
    return str(_value(session, "SELECT formatQueryFromJSON({q:String})", json.dumps(tree)))


def _syntax_tree(session: Client, canonical: str) -> dict | None:
    """The engine's syntax tree of the statement as JSON; None for the kinds it cannot
    describe that way (DESCRIBE, EXISTS, SHOW CREATE, INSERT ... VALUES, ...)."""
    try:
        text = session.query("SELECT parseQueryToJSON({q:String})", parameters={"q": canonical}).result_rows[
            0
        ][0]
    except ClickHouseError as exc:
        if code_of(exc) == BAD_ARGUMENTS:
            return None
        raise
    tree = json.loads(text)
    return tree if isinstance(tree, dict) else None


def _failure(exc: Exception, limits: QueryLimits) -> ConfigError | StoreError:
    """The engine's refusal or failure of a user query, by its error code (backend/error_codes.py)."""
    code = code_of(exc)
    text = str(exc).strip()
    if error_class(exc) is StoreReadOnlyError:
        return refused(f"the engine refuses it ({text})")
    if code == TIMEOUT_EXCEEDED:
        return ConfigError(
            f"query stopped: it ran longer than {limits.seconds} s (max_execution_time); "
            "narrow it, e.g. by Seq or Timestamp"
        )
    if code == MEMORY_LIMIT_EXCEEDED:
        return ConfigError(
            f"query stopped: it needed more than {limits.memory_bytes} bytes of memory (max_memory_usage)"
        )
    if code == TOO_MANY_ROWS_OR_BYTES:
        return ConfigError(
            f"query stopped: the result is larger than {limits.result_rows} rows or "
            f"{limits.result_bytes} bytes (max_result_rows, max_result_bytes); add a LIMIT or aggregate"
        )
    if code == SYNTAX_ERROR:  # said of our formatQuerySingleLine() call: the user's text, not ours
        return ConfigError(f"query failed: {text.split(': In scope SELECT formatQuerySingleLine(')[0]}")
    return store_error(exc, f"query failed: {text}")


@contextmanager
def _session(dsn: str, limits: QueryLimits) -> Iterator[Client]:
    """A fresh connection with `limits`, then `readonly = 1`, in the otel_audit database."""
    try:
        client = clickhouse_connect.get_client(dsn=dsn, database=DATABASE)
    except Exception as exc:
        raise StoreError(f"query: cannot open a session on the store: {exc}") from None
    try:
        settings = {**limits.settings(), "allow_introspection_functions": 0}
        if urlsplit(dsn).scheme == "chdb":
            settings["allow_python_table_function"] = 0  # chDB's Python(): reads this process's objects
        try:
            if str(client.command("SELECT getSetting('readonly')")) == "0":
                for name, value in settings.items():
                    client.command(
                        f"SET {name} = {value!r}" if isinstance(value, str) else f"SET {name} = {value}"
                    )
                client.command("SET readonly = 1")
            readonly = str(client.command("SELECT getSetting('readonly')"))
        except (ClickHouseError, OSError) as exc:
            raise store_error(exc, f"query: cannot set up a read-only session: {exc}") from None
        if readonly != "1":
            raise StoreError("query: the store's session is not read-only (readonly = 1); refusing user SQL")
        yield client
    finally:
        client.close()
