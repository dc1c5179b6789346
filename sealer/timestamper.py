"""Trusted time: RFC 3161 tokens from each `serve --tsa` over the newest signed checkpoint.

Every `--timestamp-interval` and at shutdown, each TSA is asked (HTTP POST, RFC 3161 section
3.4) for a token over the exact note bytes of the newest stored checkpoint. The answer is
verified at once against `--tsa-roots` (otel_audit/timestamp.py), with the nonce sent, then
stored in otel_audit.timestamps and written beside the anchor (`<size>.<tsa>.tsr`).

A TSA that is down or answers badly never touches ingest: each TSA has its own thread, which
only reads the newest checkpoint from the store; failures are retried with exponential
back-off (tenacity) until the next interval, counted in the metrics, shown by `status`, and
logged once per outage (and once when the TSA answers again). A TSA that was down catches up
with the newest checkpoint, which covers every earlier one.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    stop_any,
    wait_exponential,
)
from tenacity.stop import stop_base

from backend.store import Store, StoredTimestamp
from otel_audit.anchors import write_timestamp
from otel_audit.errors import AuditError, TimestampError, TsaUnavailableError
from otel_audit.timestamp import timestamp_request, verify_token

from .metrics import SealerMetrics

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_SECONDS = 10.0
MAX_TOKEN_BYTES = 1 << 20  # a TimeStampResp with a certificate chain is a few KiB


def ask_tsa(url: str, query: bytes, timeout: float = REQUEST_TIMEOUT_SECONDS) -> bytes:
    """One RFC 3161 section 3.4 exchange: the DER TimeStampResp, or TsaUnavailableError."""
    request = urllib.request.Request(
        url, data=query, method="POST", headers={"Content-Type": "application/timestamp-query"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            body = answer.read(MAX_TOKEN_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise TsaUnavailableError(f"{url} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TsaUnavailableError(f"{url} did not answer: {reason}") from None
    if len(body) > MAX_TOKEN_BYTES:
        raise TsaUnavailableError(f"{url} answered more than {MAX_TOKEN_BYTES} bytes")
    return body


@dataclass
class TsaState:
    """What the sealer knows of one TSA (shown by `status`)."""

    url: str
    tree_size: int | None = None  # the newest checkpoint it stamped
    gen_time_ns: int | None = None  # that token's time
    problem: str | None = None  # why the last attempt failed, while it is down

    def as_dict(self) -> dict[str, object]:
        age = None if self.gen_time_ns is None else round((time.time_ns() - self.gen_time_ns) / 1e9, 1)
        return {"url": self.url, "tree_size": self.tree_size, "age_seconds": age, "problem": self.problem}


class Timestamper:
    def __init__(
        self,
        store: Store,
        anchor_dir: Path,
        origin: str,
        tsas: Sequence[str],
        roots: Sequence[x509.Certificate],
        interval_seconds: float,
        metrics: SealerMetrics | None = None,
    ) -> None:
        self._store = store
        self._anchor_dir = anchor_dir
        self._origin = origin
        self._roots = tuple(roots)
        self._interval = interval_seconds
        self._metrics = metrics
        self._stop = threading.Event()
        self.tsas = [TsaState(url) for url in tsas]
        for stored in store.timestamps(origin):  # by tree size: the last one per TSA is the newest
            for tsa in self.tsas:
                if tsa.url == stored.tsa:
                    tsa.tree_size, tsa.gen_time_ns = stored.tree_size, stored.gen_time_ns
        for tsa in self.tsas:
            if metrics is not None:
                metrics.watch_timestamps(tsa.url, lambda t=tsa: t.gen_time_ns)  # type: ignore[misc]
        self._threads = [
            threading.Thread(target=self._run, args=(tsa,), name=f"tsa-{i}", daemon=True)
            for i, tsa in enumerate(self.tsas)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop the timers, then ask each TSA once more (no retries) for the final checkpoint:
        call after the checkpointer signed it."""
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join()
        for tsa in self.tsas:
            self._attempt(tsa)

    def status(self) -> list[dict[str, object]]:
        return [tsa.as_dict() for tsa in self.tsas]

    def _run(self, tsa: TsaState) -> None:
        while not self._stop.is_set():
            self._with_retries(tsa)
            self._stop.wait(self._interval)

    def _with_retries(self, tsa: TsaState) -> None:
        """Stamp the newest checkpoint, retrying failures with back-off until the next interval."""

        def sleep(seconds: float) -> None:
            self._stop.wait(seconds)  # a stop ends the back-off at once

        retrying = Retrying(
            retry=retry_if_exception_type(TsaUnavailableError),
            wait=wait_exponential(multiplier=0.5, max=max(self._interval / 2, 0.5)),
            stop=stop_any(stop_after_delay(self._interval), _Stopped(self._stop)),
            sleep=sleep,
            reraise=True,
        )
        with contextlib.suppress(AuditError):  # counted and logged by _stamp; the next interval retries
            retrying(self._stamp, tsa)

    def _attempt(self, tsa: TsaState) -> None:
        with contextlib.suppress(AuditError):  # counted and logged by _stamp
            self._stamp(tsa)

    def _stamp(self, tsa: TsaState) -> None:
        """Ask `tsa` for a token over the newest checkpoint if it has none for it yet."""
        try:
            latest = self._store.latest_checkpoint(self._origin)
            if latest is None or latest.tree_size == tsa.tree_size:
                return
            note = latest.note.encode()
            query = timestamp_request(note)
            response = ask_tsa(tsa.url, query.der)
            try:
                verified = verify_token(response, note, self._roots, query.nonce)
            except TimestampError as exc:
                raise TsaUnavailableError(
                    f"{tsa.url} answered with a token that does not verify: {exc}"
                ) from None
            self._store.insert_timestamp(
                StoredTimestamp(self._origin, latest.tree_size, tsa.url, verified.gen_time_ns, response)
            )
            write_timestamp(self._anchor_dir, self._origin, latest.tree_size, tsa.url, response)
        except AuditError as exc:
            self._failed(tsa, str(exc))
            raise TsaUnavailableError(str(exc)) from None
        if tsa.problem is not None:
            log.info("TSA %s answers again (checkpoint %d time-stamped)", tsa.url, latest.tree_size)
        tsa.tree_size, tsa.gen_time_ns, tsa.problem = latest.tree_size, verified.gen_time_ns, None
        if self._metrics is not None:
            self._metrics.timestamp_requests.labels(tsa.url, "ok").inc()
        log.debug("checkpoint %d time-stamped by %s (%s) at %s", latest.tree_size, tsa.url,
                  verified.tsa, verified.gen_time.isoformat())  # fmt: skip

    def _failed(self, tsa: TsaState, problem: str) -> None:
        if tsa.problem is None:  # once per outage
            log.warning(
                "TSA %s: %s; ingest is not affected, retrying with back-off (logged again when it answers)",
                tsa.url,
                problem,
            )
        tsa.problem = problem
        if self._metrics is not None:
            self._metrics.timestamp_requests.labels(tsa.url, "failed").inc()


class _Stopped(stop_base):
    """Stop retrying once the sealer stops."""

    def __init__(self, event: threading.Event) -> None:
        self._event = event

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self._event.is_set()
