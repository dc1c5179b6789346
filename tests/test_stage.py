"""The coordination engine (sealer/stage.py) on plain values: no store, no OTLP."""

from __future__ import annotations

import threading

import pytest

from sealer.stage import Offer, Stage


class Recorder:
    """A stage's handler that records what it got, and can be held at a gate."""

    def __init__(self, gate: threading.Event | None = None, fail_on: object = None) -> None:
        self.batches: list[list[int]] = []
        self.errors: list[tuple[list[int], str]] = []
        self.entered = threading.Event()
        self._gate = gate
        self._fail_on = fail_on

    def handle(self, items: list[int]) -> None:
        self.entered.set()
        if self._gate is not None:
            self._gate.wait()
        if self._fail_on in items:
            raise RuntimeError(f"cannot handle {self._fail_on}")
        self.batches.append(items)

    def on_error(self, items: list[int], exc: Exception) -> None:
        self.errors.append((items, str(exc)))

    @property
    def handled(self) -> list[int]:
        return [item for batch in self.batches for item in batch]


def _stage(recorder: Recorder, **options) -> Stage[int]:  # type: ignore[no-untyped-def]
    return Stage("test-stage", recorder.handle, recorder.on_error, **options)


@pytest.mark.parametrize(
    ("weights", "max_batch", "want"),
    [
        ([1, 1, 1, 1, 1], 2, [[1, 1], [1, 1], [1]]),
        ([3, 1, 1], 2, [[3], [1, 1]]),  # the first item is taken whatever it weighs
        ([1, 5, 1], 3, [[1, 5], [1]]),  # one item may take a batch past max_batch
        ([2, 2, 2], 100, [[2, 2, 2]]),
    ],
)
def test_the_worker_takes_what_waits_in_order_up_to_max_batch(weights, max_batch, want) -> None:  # type: ignore[no-untyped-def]
    gate = threading.Event()
    recorder = Recorder(gate)
    stage = _stage(recorder, weight=lambda item: item, max_batch=max_batch)
    stage.start()
    assert stage.offer(0) is Offer.ACCEPTED  # the worker takes it and waits at the gate
    assert recorder.entered.wait(10)
    for weight in weights:
        assert stage.offer(weight) is Offer.ACCEPTED
    assert stage.waiting()
    gate.set()
    assert stage.shutdown(10)
    assert recorder.batches == [[0], *want]
    assert not stage.waiting() and stage.outstanding == 0


def test_backpressure_counts_weight_until_it_is_released() -> None:
    recorder = Recorder()
    stage = _stage(recorder, weight=lambda item: item, max_outstanding=5, hold=True)
    stage.start()
    assert stage.offer(9) is Offer.ACCEPTED  # alone, it is let in however heavy
    assert stage.full()
    assert stage.offer(1) is Offer.FULL
    assert stage.force_flush(0.01) is False  # held: a flush waits for the release
    stage.release(9)
    assert stage.force_flush(10)
    assert (stage.offer(3), stage.offer(2), stage.offer(1)) == (Offer.ACCEPTED, Offer.ACCEPTED, Offer.FULL)
    stage.release(5)
    assert stage.shutdown(10)
    assert recorder.handled == [9, 3, 2]


def test_put_waits_for_room_and_is_closed_by_shutdown() -> None:
    gate = threading.Event()
    recorder = Recorder(gate)
    stage = _stage(recorder, max_outstanding=2)  # released when handled
    stage.start()
    assert stage.put(1) is Offer.ACCEPTED
    assert recorder.entered.wait(10)
    assert stage.put(2) is Offer.ACCEPTED  # queued behind the one being handled
    results: list[Offer] = []
    third = threading.Thread(target=lambda: results.append(stage.put(3)))
    third.start()
    third.join(0.05)
    assert third.is_alive() and not results  # no room until the first is handled
    gate.set()
    third.join(10)
    assert results == [Offer.ACCEPTED]
    assert stage.shutdown(10)
    assert recorder.handled == [1, 2, 3]
    assert stage.put(4) is Offer.CLOSED


def test_a_put_waiting_for_room_gets_closed_at_shutdown() -> None:
    gate = threading.Event()
    recorder = Recorder(gate)
    stage = _stage(recorder, max_outstanding=1, hold=True)
    stage.start()
    assert stage.put(1) is Offer.ACCEPTED
    results: list[Offer] = []
    waiting = threading.Thread(target=lambda: results.append(stage.put(2)))
    waiting.start()
    gate.set()
    assert stage.shutdown(10)
    waiting.join(10)
    assert results == [Offer.CLOSED]
    assert recorder.handled == [1]


def test_shutdown_handles_everything_queued_and_then_refuses() -> None:
    gate = threading.Event()
    recorder = Recorder(gate)
    stage = _stage(recorder, max_batch=3)
    stage.start()
    offered = list(range(10))
    assert [stage.offer(item) for item in offered] == [Offer.ACCEPTED] * 10
    stopping = threading.Thread(target=stage.shutdown)
    stopping.start()
    gate.set()
    stopping.join(10)
    assert recorder.handled == offered
    assert stage.offer(10) is Offer.CLOSED
    assert stage.shutdown(10)  # again: nothing left to do


def test_shutdown_reports_a_worker_still_at_work() -> None:
    gate = threading.Event()
    recorder = Recorder(gate)
    stage = _stage(recorder)
    stage.start()
    stage.offer(1)
    assert recorder.entered.wait(10)
    assert stage.shutdown(0.01) is False
    gate.set()
    assert stage.shutdown(10) is True
    assert recorder.handled == [1]


def test_a_failing_handler_fails_its_items_only_and_the_stage_goes_on() -> None:
    gate = threading.Event()
    recorder = Recorder(gate, fail_on=2)
    stage = _stage(recorder, max_batch=2)
    stage.start()
    stage.offer(1)
    assert recorder.entered.wait(10)  # the worker holds [1] at the gate; the rest queue
    for item in range(2, 6):
        stage.offer(item)
    gate.set()
    assert stage.shutdown(10)
    assert recorder.errors == [([2, 3], "cannot handle 2")]
    assert recorder.handled == [1, 4, 5]
    assert stage.outstanding == 0  # their weight released too


def test_many_producers_each_item_once_each_producers_order_kept() -> None:
    recorder = Recorder()
    stage = _stage(recorder, max_batch=16, max_outstanding=64)
    stage.start()

    def produce(producer: int) -> None:
        for i in range(500):
            item = producer * 1000 + i
            while stage.put(item) is not Offer.ACCEPTED:
                pass

    producers = [threading.Thread(target=produce, args=(p,)) for p in range(4)]
    for thread in producers:
        thread.start()
    for thread in producers:
        thread.join()
    assert stage.force_flush(30)
    assert stage.shutdown(10)
    handled = recorder.handled
    assert sorted(handled) == sorted(p * 1000 + i for p in range(4) for i in range(500))
    for p in range(4):
        mine = [item for item in handled if item // 1000 == p]
        assert mine == sorted(mine)
    assert all(len(batch) <= 16 for batch in recorder.batches)
