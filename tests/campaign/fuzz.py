"""The fuzzer over both receivers: sending what tests/campaign/generate.py makes to ONE
running sealer, beside a canary producer, and judging every answer (the tests and
bench/fuzz.py share all of it).

The answers a request may get (README, "Sending audit events"): OK / 200, with
partial_success naming what was refused; INVALID_ARGUMENT / 400 with a message for what
cannot be decoded; back-pressure (RetryInfo, 429), after which it is sent again. Never
INTERNAL / 500, never UNAVAILABLE / 503 (input that is not retryable answered as if it were),
never no answer at all. A canary producer's good records, sent at the same moment, must
always be sealed: one producer's bad input never fails another's. After the run every
record answered OK must be in the store, once, and `verify` must pass.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf.message import DecodeError
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from otel_audit.note import SignerKey
from tests.conftest import Sealer, start_sealer

from .clients import TRANSPORTS, Answer, GrpcClient, HttpClient, otlp_json
from .generate import (
    STORE_TIMESTAMPS,
    RequestSpec,
    Sizes,
    bad_gzip,
    bad_json,
    edge_u64,
    good_request_bytes,
    gunzip_exactly,
    gzip_defects,
    mutate,
    mutation,
    request_specs,
)
from .soak import audit_request
from .store import stored_ids

FIELD_WORDS = (  # a refusal must say what it refused: one of these appears in the message
    "attribute",
    "time_unix_nano",
    "timestamp",
    "severity",
    "body",
    "event",
    "trace",
    "span",
    "flags",
    "log_records",
    "resource",
    "scope",
    "audit event",
)


@dataclass
class Sent:
    """One request and its answer; `ids` are its records' ids (empty when they cannot be
    known: a mutant, a JSON document)."""

    transport: str
    ids: list[str]
    answer: Answer
    what: str = ""


@dataclass
class Ledger:
    """Every request the fuzzer sent and what it was told, for the check after the run."""

    sent: list[Sent] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: itertools.count = field(default_factory=itertools.count)

    def new_ids(self, prefix: str, n: int) -> list[str]:
        with self._lock:
            return [f"{prefix}-{next(self._ids)}" for _ in range(n)]

    def add(self, sent: Sent) -> Sent:
        with self._lock:
            self.sent.append(sent)
        return sent

    @property
    def requests(self) -> int:
        return len(self.sent)


def answer_problem(answer: Answer, records: int | None) -> str | None:
    """What is wrong with `answer` to a request of `records` records (None: unknown), or None."""
    if answer.ok:
        if answer.rejected and not any(word in answer.message.lower() for word in FIELD_WORDS):
            return f"partial_success names no field: {answer.message!r}"
        if records is not None and not 0 <= answer.rejected <= records:
            return f"{answer.rejected} records rejected of {records}"
        return None
    if answer.status in ("INVALID_ARGUMENT", "400"):
        return None if answer.message else f"{answer.status} without a message"
    return f"{answer.transport} answered {answer.status}: {answer.message[:300]!r}"


class Sender:
    """Sends to one running sealer over either receiver, retrying after back-pressure."""

    def __init__(self, grpc_endpoint: str, http_url: str, ledger: Ledger) -> None:
        self._grpc = GrpcClient(grpc_endpoint)
        self._grpc_endpoint, self._http_url = grpc_endpoint, http_url
        self._local = threading.local()
        self._http_clients: list[HttpClient] = []
        self.ledger = ledger

    def _http(self) -> HttpClient:
        """One keep-alive session per sending thread."""
        client = getattr(self._local, "http", None)
        if client is None:
            client = self._local.http = HttpClient(self._http_url)
            self._http_clients.append(client)
        return client

    def send(self, transport: str, body: bytes, *, encoded: bool = False) -> Answer:
        for _ in range(30):
            if transport == "grpc":
                answer = self._grpc.send(body, timeout=60)
            else:
                answer = self._http().send(body, transport, timeout=60, encoded=encoded)
            if not answer.backpressure:
                return answer
            time.sleep(0.2)
        return answer

    def send_spec(self, transport: str, spec: RequestSpec) -> tuple[Sent, str | None]:
        """Send `spec` (JSON only when it decodes: JSON cannot carry invalid UTF-8)."""
        ids = self.ledger.new_ids("fz", spec.records)
        body = spec.encode(ids)
        if transport == "http/json":
            try:
                body = otlp_json(ExportLogsServiceRequest.FromString(body))
            except DecodeError:
                transport = "http/protobuf"
        answer = self.send(transport, body)
        sent = self.ledger.add(Sent(transport, ids, answer))
        return sent, answer_problem(answer, spec.records)

    def canary(self, transport: str) -> tuple[Sent, str | None]:
        """Three good audit records from another producer: they must be sealed, always."""
        ids = self.ledger.new_ids("canary", 3)
        request = audit_request(ids, "canary")
        body = otlp_json(request) if transport == "http/json" else request.SerializeToString()
        answer = self.send(transport, body)
        sent = self.ledger.add(Sent(transport, ids, answer, "canary"))
        problem = None if answer.accepted_all else f"canary over {transport} got {answer}"
        return sent, problem

    def close(self) -> None:
        """Close every connection (before the sealer is stopped: see the README's campaign
        section on idle OTLP/HTTP keep-alive connections)."""
        self._grpc.close()
        for client in self._http_clients:
            client.close()


@dataclass(frozen=True)
class Problem:
    """Something the check after a run found; `what` is the kind of request (Sent.what)."""

    what: str
    message: str


def stored_problems(ledger: Ledger, stored: dict[str, int]) -> list[Problem]:
    """Per request with known ids: all answered OK are stored once; a partial answer stores
    exactly the records it did not reject; a refused request stores none."""
    problems = []
    for sent in ledger.sent:
        if not sent.ids:
            continue
        what = sent.what or "request"
        copies = [stored.get(i, 0) for i in sent.ids]
        if any(n > 1 for n in copies):
            problems.append(Problem(what, f"{what} over {sent.transport}: a record stored twice"))
        kept = sum(1 for n in copies if n)
        want = len(sent.ids) - sent.answer.rejected if sent.answer.ok else 0
        if kept != want:
            message = (
                f"{what} over {sent.transport} answered {sent.answer.status} (rejected "
                f"{sent.answer.rejected}): {kept} of {len(sent.ids)} stored, want {want}"
            )
            problems.append(Problem(what, message))
    return problems


class WrongAnswers(AssertionError):
    """The answers of one fuzz example that are wrong (the fuzzed request's, the canary's)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class Target:
    """The one running sealer a fuzz run sends to, and how it sends (a canary beside)."""

    def __init__(self, workdir: Path) -> None:
        self.sealer: Sealer = start_sealer(
            workdir, SignerKey.generate("fuzz.example/audit"), "--workers", "1"
        )
        self.ledger = Ledger()
        self.sender = Sender(self.sealer.endpoint, self.sealer.http_endpoint, self.ledger)
        self._canary = ThreadPoolExecutor(1, thread_name_prefix="canary")
        self._problems: list[Problem] | None = None

    def __repr__(self) -> str:  # hypothesis prints a failing example's arguments: not all of this
        return f"Target({self.sealer.endpoint})"

    def beside_a_canary(self, canary_transport: str, send: Callable[[], str | None]) -> None:
        """Run `send` (it returns what is wrong with its answer) while another producer sends
        good records over `canary_transport`: both must be answered as they should."""
        canary = self._canary.submit(self.sender.canary, canary_transport)
        problem = send()
        _, canary_problem = canary.result()
        problems = [p for p in (problem, canary_problem) if p is not None]
        if problems:
            raise WrongAnswers(problems)

    def finish(self, timeout: float = 60) -> list[Problem]:
        """Stop the sealer cleanly, then: what is wrong with what it stored (empty: nothing).
        Computed once; later calls return the same list."""
        if self._problems is None:
            self._problems = self._finish(timeout)
        return self._problems

    def _finish(self, timeout: float) -> list[Problem]:
        self.sender.close()
        self._canary.shutdown()
        try:
            code = self.sealer.stop(signal.SIGTERM, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return [
                f"serve did not stop within {timeout} s of SIGTERM:\n" + "".join(self.sealer.output[-30:])
            ]
        if code != 0:
            return [f"serve exited {code}:\n" + "".join(self.sealer.output[-30:])]
        problems = stored_problems(self.ledger, stored_ids(self.sealer.store))
        verified = self.sealer.verify()
        if verified.returncode != 0:
            problems.append(f"verify exited {verified.returncode}: {verified.stdout}{verified.stderr}")
        return problems

    def kill(self) -> None:
        if self.sealer.proc.poll() is None:
            self.sealer.proc.kill()
            self.sealer.proc.wait()


# --- the cases: each sends one generated request beside a canary and asserts on the answer --


def other_receiver(transport: str) -> str:
    return "http/protobuf" if transport == "grpc" else "grpc"


def send_records(target: Target, spec: RequestSpec, transport: str) -> None:
    target.beside_a_canary(other_receiver(transport), lambda: target.sender.send_spec(transport, spec)[1])


def send_mutant(target: Target, records: int, mutations: list, transport: str) -> None:
    body = mutate(good_request_bytes(target.ledger.new_ids, records)[1], mutations)

    def send() -> str | None:
        answer = target.sender.send(transport, body)
        target.ledger.add(Sent(transport, [], answer, "mutant"))
        try:
            request = ExportLogsServiceRequest.FromString(body)
        except DecodeError:
            # Refused whole, or (sealer/salvage.py) the broken records, resources or scopes
            # refused alone and named: never OK with nothing refused.
            if answer.ok and not answer.rejected:
                return f"a request protobuf cannot decode was answered {answer}"
            return None if answer.ok else answer_problem(answer, None)
        return answer_problem(
            answer, sum(len(s.log_records) for r in request.resource_logs for s in r.scope_logs)
        )

    target.beside_a_canary(other_receiver(transport), send)


def send_gzip(target: Target, defect: tuple) -> None:
    record_ids, body = bad_gzip(target.ledger.new_ids, defect)
    kind = defect[0]

    def send() -> str | None:
        answer = target.sender.send("http/protobuf+gzip", body, encoded=True)
        exact = gunzip_exactly(body)
        # What an exact decoder makes of it is what must be sealed (or a 400): ids known.
        target.ledger.add(Sent("http/protobuf+gzip", record_ids if exact is not None else [], answer, kind))
        if exact is None and answer.status != "400":
            return f"{kind} gzip body (not exactly gzip) answered {answer}, want 400"
        return answer_problem(answer, None)

    target.beside_a_canary("grpc", send)


def send_json(target: Target, document: bytes) -> None:
    def send() -> str | None:
        answer = target.sender.send("http/json", document)
        target.ledger.add(Sent("http/json", [], answer, "bad json"))
        return answer_problem(answer, None)

    target.beside_a_canary("grpc", send)


@dataclass(frozen=True)
class Case:
    """A fuzz case: its strategies (by argument name) and the function they feed."""

    run: Callable[..., None]
    strategies: dict[str, st.SearchStrategy]


HTTP_TRANSPORTS = st.sampled_from([t for t in TRANSPORTS if t != "grpc"])


def cases(sizes: Sizes) -> dict[str, Case]:
    """Every fuzz case by name, with "huge" values of `sizes`."""
    extremes = request_specs(edge_u64, sizes)
    return {
        "records in the store's time range, both receivers": Case(
            send_records,
            {"spec": request_specs(STORE_TIMESTAMPS, sizes), "transport": st.sampled_from(TRANSPORTS)},
        ),
        "extreme records over gRPC": Case(send_records, {"spec": extremes, "transport": st.just("grpc")}),
        "extreme records over HTTP": Case(send_records, {"spec": extremes, "transport": HTTP_TRANSPORTS}),
        "mutated requests, both receivers": Case(
            send_mutant,
            {
                "records": st.integers(1, 20),
                "mutations": st.lists(mutation, min_size=1, max_size=6),
                "transport": st.sampled_from(["grpc", "http/protobuf", "http/protobuf+gzip"]),
            },
        ),
        "gzip bodies that are not exactly gzip": Case(send_gzip, {"defect": gzip_defects}),
        "JSON that is not OTLP": Case(send_json, {"document": bad_json}),
    }
