"""Live watch of producer instances: lost and repeated events, as the sealer receives them.

Producers using the otel_audit SDK number their events per process (audit.producer.instance,
audit.producer.seq). The sealer logs a warning when an instance skips numbers (events lost
on the way) or repeats one (a retry that had already landed; it is sealed again, never
dropped). `verify` and `status` report the same from the stored log, for all time.
"""

from __future__ import annotations

import logging
import threading

from .metrics import SealerMetrics

log = logging.getLogger(__name__)


class ProducerTracker:
    def __init__(self, max_instances: int = 100_000, metrics: SealerMetrics | None = None) -> None:
        self._metrics = metrics
        self._next: dict[str, int] = {}
        self._lock = threading.Lock()
        self._max = max_instances

    def observe(self, instance: str, seq_text: str) -> None:
        try:
            seq = int(seq_text)
        except ValueError:
            return
        with self._lock:
            expected = self._next.get(instance)
            if expected is not None and seq > expected:
                if self._metrics is not None:
                    self._metrics.producer_gaps.inc(seq - expected)
                log.warning(
                    "producer instance %s: events %d..%d missing (lost before the sealer)",
                    instance,
                    expected,
                    seq - 1,
                )
            elif expected is not None and seq < expected:
                if self._metrics is not None:
                    self._metrics.producer_duplicates.inc()
                log.warning(
                    "producer instance %s: event %d received again (a retry); sealed again", instance, seq
                )
            if expected is None or seq >= expected:
                if expected is None and len(self._next) >= self._max:
                    self._next.pop(next(iter(self._next)))
                self._next[instance] = seq + 1
