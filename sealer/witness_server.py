"""`otel-audit witness serve`: a C2SP tlog-witness (https://c2sp.org/tlog-witness) on aiohttp.

Someone other than the log's operator runs it (the compliance department, an outside
auditor): it holds its own cosignature/v1 key, a list of logs it trusts, and per log the
newest tree it cosigned. It cosigns a checkpoint only if it extends that tree (a consistency
proof) or is that tree, so it never cosigns two trees of one log that are not consistent:
a fork, a rollback or a rewrite of the log shows up as a refusal (409 / 422) and as a quorum
not met when the log is verified.

The decision is otel_audit/tlog_witness.py's `witness_check`. Check, persist and sign happen
in one synchronous step on the event loop (no await between them), so two requests can
never interleave (the spec's race of "rolling back K leaves"); the state file is written
atomically (temp file, fsync, rename, directory fsync) BEFORE the cosignature is sent.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from otel_audit.anchors import _write_atomically
from otel_audit.checkpoint import read_unverified
from otel_audit.cosignature import CosignerKey
from otel_audit.errors import ConfigError, FormatError, WitnessRefusal
from otel_audit.note import VerifierKey
from otel_audit.tlog_witness import SIZE_CONTENT_TYPE, AddCheckpoint, WitnessedTree, witness_check

PATH = "/add-checkpoint"
MAX_BODY = 64 * 1024  # 63 proof lines and a note with a few dozen signatures fit many times over
BODY_SECONDS = 10.0  # how long a client may take to send its body
STATE_VERSION = 1


def load_state(path: Path) -> dict[str, WitnessedTree]:
    """Origin -> the newest tree cosigned, from the state file (empty if there is none yet)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read witness state {path}: {exc}") from None
    try:
        if data["version"] != STATE_VERSION:
            raise ConfigError(f"witness state {path} has version {data['version']}, want {STATE_VERSION}")
        return {
            origin: WitnessedTree(int(tree["size"]), base64.b64decode(tree["root"], validate=True))
            for origin, tree in data["logs"].items()
        }
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise ConfigError(f"witness state {path} is malformed: {exc!r}") from None


def save_state(path: Path, latest: Mapping[str, WitnessedTree]) -> None:
    logs = {o: {"size": t.size, "root": base64.b64encode(t.root).decode()} for o, t in sorted(latest.items())}
    _write_atomically(path, json.dumps({"version": STATE_VERSION, "logs": logs}, indent=1) + "\n")


@dataclass
class Witness:
    key: CosignerKey
    trusted: Mapping[str, Sequence[VerifierKey]]
    state_path: Path
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self.latest = load_state(self.state_path)

    def add_checkpoint(self, body: bytes) -> web.Response:
        """The whole add-checkpoint answer, synchronously: check, persist, cosign."""
        try:
            request = AddCheckpoint.parse(body)
            origin, tree = witness_check(request, self.trusted, self.latest)
        except FormatError as exc:
            return _text(400, f"malformed add-checkpoint body: {exc}")
        except WitnessRefusal as refusal:
            if refusal.status == 409:
                body = f"{refusal.size}\n".encode()
                return web.Response(status=409, body=body, headers={"Content-Type": SIZE_CONTENT_TYPE})
            return _text(refusal.status, str(refusal))
        if self.latest.get(origin) != tree:
            self.latest = {**self.latest, origin: tree}
            save_state(self.state_path, self.latest)
        text = read_unverified(request.note_text).note.text
        line = self.key.cosign(text, int(self.clock()))
        return web.Response(status=200, text=line.serialize(), content_type="text/plain", charset="utf-8")


def _text(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message + "\n", content_type="text/plain", charset="utf-8")


def build_app(witness: Witness, body_seconds: float = BODY_SECONDS) -> web.Application:
    """The witness's one route. A client that does not send its body within `body_seconds` is
    answered 408 and disconnected, so half-sent requests cannot pile up connections."""

    async def add_checkpoint(request: web.Request) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > MAX_BODY:
            return _text(413, f"request body above {MAX_BODY} bytes")
        try:
            body = await asyncio.wait_for(request.read(), body_seconds)
        except web.HTTPRequestEntityTooLarge:
            return _text(413, f"request body above {MAX_BODY} bytes")
        except asyncio.TimeoutError:
            response = _text(408, f"the request body did not arrive within {body_seconds:g} s")
            await response.prepare(request)
            await response.write_eof()
            request.protocol.force_close()  # no draining a client that does not send
            return response
        return witness.add_checkpoint(body)

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post(PATH, add_checkpoint)
    return app


def serve(witness: Witness, host: str, port: int, announce: Callable[[str], None]) -> None:
    """Serve until SIGTERM or SIGINT; `announce` gets the URL once it listens."""

    async def run() -> None:
        runner = web.AppRunner(build_app(witness), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        announce(f"http://{host}:{runner.addresses[0][1]}")
        await stop.wait()
        await runner.cleanup()

    asyncio.run(run())
