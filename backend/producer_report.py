"""What the stored log says about its producers: events lost or repeated per producer
instance, and audit events sealed without their required fields.

Producers using the otel_audit SDK number their events per process (audit.producer.instance,
audit.producer.seq from 0). A number missing from the log is an event lost before it reached
the sealer; a number seen twice is a retry that had already landed, sealed again (never
dropped) and named here by the Seq of each copy. None of this is tampering with the log,
which `verify` checks separately: it is about what reached it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from otel_audit import attributes as attr

from .store import LOGS, Store

_LIMIT = 20  # ranges / copies listed per instance


@dataclass(frozen=True)
class Instance:
    instance: str
    service: str
    producer: str
    events: int
    missing: int
    duplicates: int
    missing_ranges: list[tuple[int, int]] = field(default_factory=list)  # producer seq ranges
    duplicate_seqs: list[tuple[int, list[int]]] = field(default_factory=list)  # (producer seq, log Seqs)


@dataclass(frozen=True)
class ProducersReport:
    instances: list[Instance]
    incomplete_events: int
    incomplete_first_seqs: list[int]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def lines(self) -> list[str]:
        out = []
        for i in self.instances:
            if not (i.missing or i.duplicates):
                continue
            who = f"{i.service or '?'}" + (f", producer {i.producer}" if i.producer else "")
            line = f"producer instance {i.instance} ({who}): {i.events} events"
            if i.missing:
                ranges = ", ".join(f"{a}..{b}" if a != b else str(a) for a, b in i.missing_ranges)
                line += f"; {i.missing} lost before the sealer (numbers {ranges})"
            if i.duplicates:
                copies = "; ".join(f"{s} at Seq {', '.join(map(str, seqs))}" for s, seqs in i.duplicate_seqs)
                line += f"; {i.duplicates} received twice and sealed again ({copies})"
            out.append(line)
        if self.incomplete_events:
            first = ", ".join(map(str, self.incomplete_first_seqs))
            count = self.incomplete_events
            out.append(f"{count} audit events sealed without actor, action or outcome (Seq {first}, ...)")
        return out


_NUMBERED = f"""
    SELECT LogAttributes['{attr.PRODUCER_INSTANCE}'] AS instance,
           toInt64OrNull(LogAttributes['{attr.PRODUCER_SEQ}']) AS n, Seq, ServiceName, Producer
    FROM {LOGS}
    WHERE Origin = {{o:String}} AND instance != '' AND n IS NOT NULL
"""


def producer_report(store: Store, origin: str) -> ProducersReport:
    summary = store.select(
        f"""SELECT instance, any(ServiceName), any(Producer), count(), uniqExact(n), max(n)
            FROM ({_NUMBERED}) GROUP BY instance ORDER BY instance""",
        {"o": origin},
    )
    instances = []
    for instance, service, producer, events, distinct, highest in summary:
        missing, duplicates = highest + 1 - distinct, events - distinct
        ranges: list[tuple[int, int]] = []
        copies: list[tuple[int, list[int]]] = []
        if missing:
            ranges = [
                (int(a), int(b))
                for a, b in store.select(
                    f"""SELECT previous + 1, n - 1 FROM (
                          SELECT n, lagInFrame(n, 1, -1)
                                 OVER (ORDER BY n ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS previous
                          FROM ({_NUMBERED}) WHERE instance = {{i:String}})
                        WHERE n > previous + 1 ORDER BY n LIMIT {_LIMIT}""",
                    {"o": origin, "i": instance},
                )
            ]
        if duplicates:
            copies = [
                (int(n), sorted(seqs))
                for n, seqs in store.select(
                    f"""SELECT n, groupArray(Seq) FROM ({_NUMBERED}) WHERE instance = {{i:String}}
                        GROUP BY n HAVING count() > 1 ORDER BY n LIMIT {_LIMIT}""",
                    {"o": origin, "i": instance},
                )
            ]
        instances.append(Instance(instance, service, producer, events, missing, duplicates, ranges, copies))
    count, first = store.select(
        f"""SELECT count(), arraySlice(arraySort(groupArray(Seq)), 1, {_LIMIT}) FROM {LOGS}
            WHERE Origin = {{o:String}} AND {attr.incomplete_audit_event_sql()}""",
        {"o": origin},
    )[0]
    return ProducersReport(instances, int(count), [int(s) for s in first])
