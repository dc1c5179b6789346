"""The sealing workers: processes that prepare requests (sealer/prepare.py) on every core.

Python runs one thread at a time per process, and preparing records is most of the Python
work of sealing; in worker processes it runs beside the sealer's own thread and the store.
The receivers hand each request over as the bytes it arrived in, and get back a Prepared.

Workers are started fresh (spawn), never forked from the sealer, whose threads and embedded
store must not be copied. They ignore SIGINT and SIGTERM, so that a Ctrl-C or a stop signal
sent to the whole process group lets the sealer finish its in-flight calls with them, and
they exit on their own if the sealer dies (kill -9). If a worker dies, the requests it held
fail with a retryable error and the pool is started again for the next ones.

With `workers=0` requests are prepared in the calling thread (tests, debugging).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from otel_audit.errors import WorkerError

from .prepare import Prepared, Rules, prepare_request

log = logging.getLogger(__name__)


_STOPPED = "the sealing workers are stopped (the sealer is stopping); retry against a running one"
_rules: Rules | None = None  # in a worker: set once by _start_worker


def _start_worker(rules: Rules) -> None:
    global _rules
    _rules = rules
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent,), name="parent-watch", daemon=True).start()


def _exit_with(parent: multiprocessing.process.BaseProcess) -> None:
    """Exit once the sealer is gone, whatever way it went."""
    multiprocessing.connection.wait([parent.sentinel])
    os._exit(0)


def _prepare(raw: bytes) -> Prepared:
    assert _rules is not None, "worker not initialised"
    return prepare_request(raw, _rules)


def _ready() -> int:
    time.sleep(0.02)  # long enough that the other workers take the other calls
    return os.getpid()


class Workers:
    """`workers` processes that prepare requests under `rules` (none: in the caller)."""

    def __init__(self, rules: Rules, workers: int) -> None:
        self.rules = rules
        self.count = workers
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._stopped = False

    def start(self, timeout: float = 120) -> None:
        """Start every worker now and wait until each has set itself up (signals included),
        so that the first requests do not wait for them."""
        if not self.count:
            return
        pool = self._new_pool()
        ready: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(ready) < self.count:
            if time.monotonic() > deadline:
                raise WorkerError(f"only {len(ready)} of {self.count} sealing workers started")
            try:
                ready.update(f.result() for f in [pool.submit(_ready) for _ in range(self.count)])
            except BrokenProcessPool:
                raise WorkerError("a sealing worker stopped while starting; see the log above") from None

    def prepare(self, raw: bytes) -> Prepared:
        """The request prepared (RequestError if it cannot be decoded, WorkerError if the
        worker preparing it stopped)."""
        if not self.count:
            return prepare_request(raw, self.rules)
        pool = self._pool or self._new_pool()
        try:
            future: Future[Prepared] = pool.submit(_prepare, raw)
            return future.result()
        except BrokenProcessPool:  # a RuntimeError too: first
            self._replace(pool)
            raise WorkerError("a sealing worker stopped while preparing this request; retry") from None
        except RuntimeError as exc:
            if not self._stopped:  # not "cannot schedule new futures after shutdown": a bug
                raise
            raise WorkerError(_STOPPED) from exc

    def stop(self) -> None:
        """Let the workers finish what they hold, then end them."""
        with self._lock:
            pool, self._pool, self._stopped = self._pool, None, True
        if pool is not None:
            pool.shutdown(wait=True)

    def _new_pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._stopped:
                raise WorkerError(_STOPPED)
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=self.count,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start_worker,
                    initargs=(self.rules,),
                )
            return self._pool

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is broken:
                log.error("a sealing worker stopped unexpectedly; starting the workers again")
                self._pool = None
        broken.shutdown(wait=False, cancel_futures=True)
