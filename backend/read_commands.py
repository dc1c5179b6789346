"""The read-only commands (search, export, proof, consistency, query, status) as one function each
from JSON-safe parameters to output bytes; what they print as text is in record_table.py and
log_status.py.

The CLI runs them against a store it opens itself, or, when `otel-audit serve` owns the
embedded store, sends the same parameters to the running sealer (sealer/read_api.py), which
runs the same function on its own connection. Either way the user sees the same bytes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from otel_audit.errors import ConfigError
from otel_audit.note import VerifierKey
from otel_audit.readable import json_line, record_dict

from .evidence import Search, consistency_proof, default_origin, export, inclusion_proof, search
from .log_status import log_status, sealer_line
from .migrations import check_readable
from .partitions import PARTITION_KEY
from .record_table import record_table
from .store import LOGS, Store
from .user_sql import QueryLimits, run_user_sql

Params = Mapping[str, object]


@dataclass
class Result:
    out: bytes
    notes: list[str] = field(default_factory=list)  # for stderr
    code: int = 0


def _keys(params: Params) -> list[VerifierKey]:
    return [VerifierKey.parse(str(k)) for k in params.get("keys") or []]  # type: ignore[attr-defined]


def _int(params: Params, name: str) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name} must be a non-negative integer")
    return value


def run_search(store: Store, params: Params) -> Result:
    query = Search.from_dict(params.get("search") or {})  # type: ignore[arg-type]
    limit = _int(params, "limit") or 1000
    rows, more = search(store, query, limit)
    records = [record_dict(row) for row in rows]
    notes = [f"more than {limit} records match; showing the first {limit} (raise --limit)"] if more else []
    if params.get("json"):
        return Result("".join(json_line(r) + "\n" for r in records).encode(), notes)
    notes.append(f"{len(records)} records ({query.describe()})")
    return Result(record_table(records).encode(), notes)


def run_export(store: Store, params: Params) -> Result:
    query = Search.from_dict(params.get("search") or {})  # type: ignore[arg-type]
    keys = _keys(params)
    if not keys:
        raise ConfigError("--key is required: the verifier key of each log the export covers")
    witnessed = params.get("witnessed")
    done = export(store, query, keys, witnessed if isinstance(witnessed, dict) else None)
    signed = ", ".join(f"{o} at tree size {s}" for o, s in sorted(done.checkpoints.items())) or "none"
    notes = [f"exported {done.records} records with inclusion proofs (checkpoints: {signed})"]
    if done.unsigned:
        notes.append(
            f"left out {done.unsigned} matching records sealed after the newest checkpoint; "
            "export again after the next checkpoint to include them"
        )
    return Result(done.bundle, notes)


def _origin_and_key(store: Store, params: Params) -> tuple[str, VerifierKey | None]:
    """Which log a proof is about, and the key to check its signatures with, if given."""
    keys = _keys(params)
    origin = default_origin(store, keys, params.get("origin"))  # type: ignore[arg-type]
    return origin, next((k for k in keys if k.name == origin), None)


def run_proof(store: Store, params: Params) -> Result:
    origin, key = _origin_and_key(store, params)
    seq = _int(params, "seq")
    if seq is None:
        raise ConfigError("--seq is required")
    proof = inclusion_proof(store, origin, seq, key, _int(params, "tree_size"))
    notes = [] if key else ["signature not checked: pass --key to check the checkpoint's signature"]
    if params.get("json"):
        body = {
            "origin": origin,
            "index": proof.index,
            "hashes": [base64.b64encode(h).decode() for h in proof.hashes],
            "checkpoint": proof.checkpoint_note,
            "tlog_proof": proof.serialize(),
        }
        return Result((json.dumps(body, indent=1) + "\n").encode(), notes)
    return Result(proof.serialize().encode(), notes)


def run_consistency(store: Store, params: Params) -> Result:
    origin, key = _origin_and_key(store, params)
    old = _int(params, "old")
    if old is None:
        raise ConfigError("--from is required")
    proof = consistency_proof(store, origin, old, _int(params, "new"), key)
    notes = [] if key else ["signature not checked: pass --key to check the checkpoints' signatures"]
    if proof.old_note is None:
        notes.append(f"the store has no signed checkpoint of tree size {old}: compare the old root yourself")
    if params.get("json"):
        body = {
            "origin": origin,
            "old_size": proof.old_size,
            "new_size": proof.new_size,
            "hashes": [base64.b64encode(h).decode() for h in proof.hashes],
            "old_checkpoint": proof.old_note,
            "new_checkpoint": proof.new_note,
        }
        return Result((json.dumps(body, indent=1) + "\n").encode(), notes)
    return Result(proof.serialize().encode(), notes)


def run_query(store: Store, params: Params) -> Result:
    sql = params.get("sql")
    if not isinstance(sql, str) or not sql.strip():
        raise ConfigError("give the SQL to run, e.g. otel-audit query 'SELECT count() FROM otel_audit.logs'")
    fmt = str(params.get("format") or "PrettyCompactMonoBlock")
    requested = params.get("limits") or {}
    if not isinstance(requested, dict):
        raise ConfigError("limits must be a mapping of limit names to numbers")
    limits = QueryLimits.lowered(requested)
    return Result(run_user_sql(store.dsn, sql, fmt, limits))


def _origins(store: Store, params: Params) -> list[str]:
    """The logs a command covers: --origin, else the given keys' logs, else all in the store."""
    if params.get("origin"):
        return [str(params["origin"])]
    return [k.name for k in _keys(params)] or store.origins()


def run_status(store: Store, params: Params) -> Result:
    """The log at a glance: size, newest checkpoint and its age, anchors, producers."""
    origins = _origins(store, params)
    anchor_dir = Path(str(params["anchor_dir"])) if params.get("anchor_dir") else None
    logs = [log_status(store, origin, anchor_dir) for origin in origins]
    sealer = params.get("sealer")  # set by a running sealer answering through its read API
    if params.get("json"):
        body = {"logs": [asdict(log) for log in logs], "sealer": sealer}
        return Result((json.dumps(body, indent=1) + "\n").encode())
    lines = [line for log in logs for line in log.lines()] + [sealer_line(sealer)]
    return Result("".join(line + "\n" for line in lines).encode())


def run_partitions(store: Store, params: Params) -> Result:
    """Each log's months (partitions): Seq and SealedAt ranges, as JSON (for `archive`)."""
    origins = _origins(store, params)
    months = []
    for origin in origins:
        rows = store.select(
            f"""SELECT {PARTITION_KEY} AS month, min(Seq), max(Seq), count(),
                       toUnixTimestamp64Nano(min(SealedAt)), toUnixTimestamp64Nano(max(SealedAt))
                FROM {LOGS} WHERE Origin = {{o:String}} GROUP BY month ORDER BY month""",
            {"o": origin},
        )
        months += [
            {"origin": origin, "month": str(m), "first_seq": a, "last_seq": b, "records": n,
             "sealed_from_ns": lo, "sealed_until_ns": hi + 1}
            for m, a, b, n, lo, hi in rows
        ]  # fmt: skip
    return Result((json.dumps(months) + "\n").encode())


COMMANDS: dict[str, Callable[[Store, Params], Result]] = {
    "search": run_search,
    "export": run_export,
    "proof": run_proof,
    "consistency": run_consistency,
    "query": run_query,
    "status": run_status,
    "partitions": run_partitions,
}


def run(store: Store, command: str, params: Params) -> Result:
    if command not in COMMANDS:
        raise ConfigError(f"unknown read command {command!r}")
    if not store.has_schema():
        raise ConfigError("the store holds no otel-audit log; check --store")
    check_readable(store)
    return COMMANDS[command](store, params)
