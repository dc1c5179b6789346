"""The local read API: how `search`, `export`, `proof`, `consistency` and `query` reach an
embedded store that a running `otel-audit serve` owns.

chDB lets one process open a data directory. While serve runs, the CLI sends its command
and JSON parameters over gRPC on a Unix socket beside the store (`<store path>.sock`, mode
0600: local and same-user only), and the sealer runs the very function the CLI would have
run (backend/read_commands.py) on its own connection, read-only; `query` gets a readonly = 1
session of its own per call (backend/user_sql.py). The response streams a JSON header (exit
code and notes for stderr) and then the output bytes in chunks.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import grpc

from backend.read_commands import Result, run
from backend.store import Store
from otel_audit.errors import AuditError, RelayedError, StoreUnavailableError

log = logging.getLogger(__name__)

SERVICE, METHOD = "otel_audit.v1.LocalReader", "Run"
_CHUNK = 1 << 20
_MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the terminating NUL
_MESSAGE_LIMIT = 8 << 20


def socket_path(dsn: str) -> Path | None:
    """Where the sealer of an embedded store listens; None for server stores (no need)."""
    parts = urlsplit(dsn)
    if parts.scheme != "chdb" or not parts.path:
        return None
    return Path(parts.path + ".sock")


class ReadApi:
    """Serves the read commands on a read-only connection of its own, so that nothing a user
    sends can write, or change a setting of the connection the sealer writes through."""

    def __init__(self, dsn: str, path: Path, sealer: Callable[[], dict[str, object]] | None = None) -> None:
        self._dsn = dsn
        self._sealer = sealer  # the running sealer's readiness, for `status`
        self._store: Store | None = None
        self._path = path
        self._lock = threading.Lock()  # one read at a time next to the sealing pipeline
        self._server: grpc.Server | None = None

    def start(self) -> bool:
        if len(str(self._path).encode()) > _MAX_SOCKET_PATH:
            log.warning(
                "store path too long for the local read socket %s: search/export/proof/query "
                "will need serve stopped",
                self._path,
            )
            return False
        self._store = Store.open(self._dsn, read_only=True)
        server = grpc.server(
            ThreadPoolExecutor(max_workers=2, thread_name_prefix="read-api"),
            options=[("grpc.max_send_message_length", _MESSAGE_LIMIT)],
        )
        handler = grpc.method_handlers_generic_handler(
            SERVICE, {METHOD: grpc.unary_stream_rpc_method_handler(self._run)}
        )
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port(f"unix:{self._path}")
        server.start()
        os.chmod(self._path, 0o600)
        self._server = server
        return True

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(5).wait()
            self._server = None
        if self._store is not None:
            self._store.close()
            self._store = None

    def _run(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        try:
            call = json.loads(request)
            command, params = call["command"], call["params"]
        except (ValueError, KeyError, TypeError):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "request must be JSON {command, params}")
        if command == "status" and self._sealer is not None and isinstance(params, dict):
            params = {**params, "sealer": self._sealer()}
        try:
            with self._lock:
                assert self._store is not None
                result = run(self._store, command, params)
        except AuditError as exc:  # the CLI raises the same kind of error, with the same text
            detail = json.dumps({"exit_code": exc.exit_code, "message": str(exc)})
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, detail)
        yield json.dumps({"code": result.code, "notes": result.notes}).encode()
        for start in range(0, len(result.out), _CHUNK):
            yield result.out[start : start + _CHUNK]


def call(path: Path, command: str, params: dict[str, object]) -> Result | None:
    """Run a read command in the sealer listening at `path`; None if none is listening."""
    request = json.dumps({"command": command, "params": params}).encode()
    with grpc.insecure_channel(
        f"unix:{path}", options=[("grpc.max_receive_message_length", _MESSAGE_LIMIT)]
    ) as channel:
        stream = channel.unary_stream(f"/{SERVICE}/{METHOD}")(request, timeout=3600)
        try:
            header = json.loads(next(stream))
            out = b"".join(stream)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                return None  # a socket left by a sealer that is gone: open the store directly
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                raise _error(exc.details() or "") from None
            raise StoreUnavailableError(f"the running sealer failed the request: {exc.details()}") from None
    return Result(out, list(header["notes"]), int(header["code"]))


def _error(detail: str) -> AuditError:
    """The sealer's error, ending the command line as the sealer's own class would have."""
    try:
        parsed = json.loads(detail)
        return RelayedError(str(parsed["message"]), int(parsed["exit_code"]))
    except (ValueError, KeyError, TypeError):
        return AuditError(detail)
