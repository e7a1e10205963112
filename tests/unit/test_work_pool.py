"""The after-ack pool's bounds and the shared reads, with real threads and real work."""

from __future__ import annotations

import threading
from concurrent.futures import Future

import pytest

from handlers.work_pool import SharedReads, WorkPool

WAIT = 5.0


def test_the_pool_takes_workers_plus_queue_then_says_busy_and_frees_slots() -> None:
    pool = WorkPool(workers=2, queue=1)
    gate, started = threading.Event(), threading.Semaphore(0)

    def stuck() -> None:
        started.release()
        gate.wait(WAIT)

    slots = [pool.reserve() for _ in range(3)]
    assert all(slots) and pool.reserve() is None  # 2 running + 1 queued, then busy
    for slot in slots:
        assert slot is not None
        slot.run(stuck)
    assert started.acquire(timeout=WAIT) and started.acquire(timeout=WAIT)
    assert pool.reserve() is None
    gate.set()
    pool.shutdown(grace=WAIT)
    assert pool.pending == 0


def test_a_released_slot_is_free_again_and_a_slot_is_used_once() -> None:
    pool = WorkPool(workers=1, queue=0)
    slot = pool.reserve()
    assert slot is not None and pool.reserve() is None
    slot.release()
    with pytest.raises(RuntimeError):
        slot.run(lambda: None)
    again = pool.reserve()
    assert again is not None
    again.release()
    pool.shutdown(grace=WAIT)


def test_failing_work_frees_its_slot() -> None:
    pool = WorkPool(workers=1, queue=0)
    slot = pool.reserve()
    assert slot is not None
    slot.run(lambda: 1 / 0)
    pool.shutdown(grace=WAIT)
    assert pool.pending == 0


def test_reads_in_flight_are_shared_and_errors_reach_every_caller() -> None:
    pool = WorkPool(workers=2, queue=0)
    reads = SharedReads[int](pool, max_waiters=3)
    gate = threading.Event()
    calls: list[str] = []

    def read(key: str, fail: bool = False) -> int:
        calls.append(key)
        gate.wait(WAIT)
        if fail:
            raise LookupError(key)
        return len(calls)

    first = [reads.join("a", lambda: read("a")) for _ in range(3)]
    assert reads.join("a", lambda: read("a")) is None  # max_waiters reached: busy
    other = reads.join("b", lambda: read("b", fail=True))
    assert reads.join("c", lambda: read("c")) is None  # no worker left for a new read
    assert all(f is first[0] for f in first) and other is not None
    gate.set()
    assert first[0].result(WAIT) in (1, 2)
    with pytest.raises(LookupError):
        other.result(WAIT)
    assert sorted(calls) == ["a", "b"]
    # Once landed, the next caller starts a fresh read.
    again = reads.join("a", lambda: read("a"))
    assert isinstance(again, Future) and again.result(WAIT) == 3
    pool.shutdown(grace=WAIT)
