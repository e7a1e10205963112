"""After-ack work runs in a bounded pool of its own, so a hanging platform never holds the
threads that acknowledge Slack requests; a full pool answers "busy, retry in a moment".

Why a pool of our own: Bolt runs listeners in its own executor and waits for ``ack()``
there. A listener that acks and then reads the platform inline keeps its Bolt thread for
as long as the read hangs; five hung reads used to take every thread, and another user's
``/rollback help`` timed out (HTTP 404 "didn't call ack()"). Now a listener *reserves* a
slot before it acks, acks, and hands the slow part over (``Slot.run``). With no slot left
(every worker busy and the queue full) the listener says so in the ack itself (slash
commands, view submissions) or through ``respond`` (buttons) within Slack's 3 s, instead
of queueing work nobody would see finish. Quick answers (help, services, refusals found
while parsing) never reserve anything.

``SharedReads`` makes concurrent identical reads one read: the request modal's defaults
(the revision history) for a service are read once for everyone who opened the modal
while that read was in flight, so a burst of modal opens is one platform read, not one
per click, and joining a read in flight needs no slot at all.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from prometheus_client import Counter, Gauge
from slack_bolt import App

from bot.domain.errors import UserFacingError

log = logging.getLogger(__name__)
T = TypeVar("T")

# Sizing. Workers bound how many slow operations (platform reads, use cases) run at once;
# the queue bounds how long accepted work can wait: with platform calls hanging 20 s, the
# last queued item starts after queue / workers x 20 s, still long before Slack's
# response_url (30 min) expires. Beyond that we say "busy" at once.
# With Slack's ~100 ms a request holds its worker for two or three round trips after its
# answer lands, so eight workers said "busy" to people who were waiting for nothing else:
# bench/ack_latency.py --slack-rtt-ms 100 --cases request --n1 20 (the one-line request,
# 20 people each waiting for the answer before the next), side by side on the loaded
# 2-core machine: 8 workers 52-107 of 300 answered "busy", answer p50 230-300 ms; 16
# workers 13-22 busy; 24 workers 0 busy (two runs), answer p50 165-180 ms. The ack p99
# ratio swung 0.9-3.8 for both at load average ~8 (other jobs): noise, not decided here.
# 32 gained nothing more and failed tests/adversarial/test_slow_platform.py (its burst
# scales with the capacity and did not drain in time on this machine); 24 passes it.
# The workers share the database pool (bot/runtime/app.py: 10 + scheduler workers) with
# the decision lane and the listener threads. The paths that held a pooled connection
# across a Slack/HTTP call (a session advisory lock: the outboxes, the status page, the
# release watcher) claim rows instead now (bot/persistence/claims.py), so a worker
# borrows a connection per statement and more workers queue briefly for the pool
# instead of starving it. Measured in the runs above: the pool never filled (13-20 open
# connections of 26), ~60-100 of ~880 borrowings waited, ~1-4 ms each on average; the
# pool size stays as it is.
DEFAULT_WORKERS = 24
DEFAULT_QUEUE = 16
# The decision lane (handlers/actions.py): clicks that touch only our database and Slack.
DECISION_WORKERS = 4
DECISION_QUEUE = 64
# Modal opens that may wait on one shared read. Each costs a views.update when the read
# returns (serial, in the worker that read: 100 x Slack's ~50-100 ms is a few seconds).
MAX_WAITERS_PER_READ = 100
# Bolt's own listener threads (its default is 5; ``ROLLBACK_LISTENER_THREADS`` overrides).
# Listeners ack, then claim the delivery (one INSERT) and hand over to the pools above, but
# the modal's views.open runs in the listener after the ack: with a real Slack round trip
# (~100 ms) five threads fill at 50 opens/s and every other ack queues behind them
# (measured with bench/ack_latency.py --slack-rtt-ms 100 at c=20: p50 414 ms vs bare Bolt's
# 14 ms with 5 threads, 28-35 ms with 64). Idle threads cost nothing; the slow work stays
# bounded by the pools above, not by this number.
LISTENER_THREADS = 64

# Plain text: it is also shown under a form's input, where Slack renders no emoji.
BUSY_TEXT = ("I'm busy: too many requests are waiting on the platforms right now, so I did "
             "nothing with this one. Please retry in a moment.")

BUSY_REFUSALS = Counter(
    "rollback_bot_busy_refusals_total",
    "Requests answered 'busy, retry in a moment' because the after-ack pool was full")
PENDING = Gauge("rollback_bot_after_ack_pending",
                "After-ack work accepted and not finished (running plus queued)")


class Busy(UserFacingError):
    """The after-ack pool is full: nothing was done, the person may simply retry."""

    def __init__(self) -> None:
        super().__init__(f":hourglass: {BUSY_TEXT}")


class Slot:
    """A reserved place in the pool: ``run`` hands work over, ``release`` gives it back
    unused (a Slack retry, a refusal found after the ack). Exactly one of them, once."""

    def __init__(self, pool: WorkPool) -> None:
        self._pool = pool
        self._spent = False

    def run(self, work: Callable[[], object]) -> None:
        self._spend()
        try:
            self._pool._executor.submit(self._pool._run, work)
        except RuntimeError:  # the pool was shut down (the process is stopping)
            self._pool._done()
            raise

    def release(self) -> None:
        self._spend()
        self._pool._done()

    def _spend(self) -> None:
        if self._spent:
            raise RuntimeError("a work-pool slot is used once")
        self._spent = True


class WorkPool:
    """``workers`` threads and room for ``queue`` more items; ``reserve`` never blocks."""

    def __init__(self, *, workers: int = DEFAULT_WORKERS, queue: int = DEFAULT_QUEUE,
                 name: str = "after-ack") -> None:
        if workers < 1 or queue < 0:
            raise ValueError("a work pool needs at least one worker and a queue >= 0")
        self.workers = workers
        self.capacity = workers + queue
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._state = threading.Condition()
        self._pending = 0  # reserved and not finished: running, queued, or about to be
        self._closing = False

    @property
    def pending(self) -> int:
        with self._state:
            return self._pending

    def reserve(self) -> Slot | None:
        """A slot, or None when every worker is busy and the queue is full."""
        with self._state:
            if self._closing or self._pending >= self.capacity:
                BUSY_REFUSALS.inc()
                return None
            self._pending += 1
        PENDING.inc()
        return Slot(self)

    def shutdown(self, *, grace: float = 10.0) -> None:
        """Stop taking work, drop what is queued, and give running work up to ``grace``
        seconds to finish (it still needs the database and Slack the caller closes next)."""
        with self._state:
            self._closing = True
        self._executor.shutdown(wait=False)
        with self._state:
            if not self._state.wait_for(lambda: self._pending == 0, timeout=grace):
                log.warning("stopping with %d after-ack work item(s) unfinished",
                            self._pending)

    def _run(self, work: Callable[[], object]) -> None:
        try:
            if self._closing:
                log.info("after-ack work dropped: stopping")
            else:
                work()
        except Exception:  # work tells the user itself; reaching here is a bug of ours
            log.exception("after-ack work failed")
        finally:
            self._done()

    def _done(self) -> None:
        PENDING.dec()
        with self._state:
            self._pending -= 1
            self._state.notify_all()


@dataclass
class _Flight(Generic[T]):
    future: Future[T]
    waiters: int


class SharedReads(Generic[T]):
    """At most one read per key in flight. ``join`` returns the future of the read in
    flight for ``key`` (starting one in ``pool`` when there is none), or None when the
    caller should be told "busy": no slot for a new read, or too many waiters already.

    A read that started before a caller arrived is fresh enough for what it feeds (a
    form's choices; the use case behind the form reads again for itself). Callbacks added
    with ``add_done_callback`` run in the worker that read, or at once if it is done."""

    def __init__(self, pool: WorkPool, *, max_waiters: int = MAX_WAITERS_PER_READ) -> None:
        self._pool = pool
        self._max_waiters = max_waiters
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight[T]] = {}

    def join(self, key: str, read: Callable[[], T]) -> Future[T] | None:
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                if flight.waiters >= self._max_waiters:
                    BUSY_REFUSALS.inc()
                    return None
                flight.waiters += 1
                return flight.future
            slot = self._pool.reserve()
            if slot is None:
                return None
            future: Future[T] = Future()
            self._flights[key] = _Flight(future, waiters=1)
        try:
            slot.run(lambda: self._read(key, future, read))
        except RuntimeError as exc:
            self._land(key, future, exc)
        return future

    def _read(self, key: str, future: Future[T], read: Callable[[], T]) -> None:
        try:
            value = read()
        except Exception as exc:
            self._land(key, future, exc)
            return
        self._land(key, future, value)

    def _land(self, key: str, future: Future[T], outcome: T | Exception) -> None:
        # Forget the flight first: a caller arriving from now on starts a fresh read.
        with self._lock:
            current = self._flights.get(key)
            if current is not None and current.future is future:
                del self._flights[key]
        if isinstance(outcome, Exception):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


_POOLS: weakref.WeakKeyDictionary[App, WorkPool] = weakref.WeakKeyDictionary()


def attach(app: App, pool: WorkPool) -> None:
    """The composition root gives each Bolt app its pool before registering listeners."""
    _POOLS[app] = pool


def pool_of(app: App) -> WorkPool:
    """The pool attached to ``app`` (listeners registered through shared helpers such as
    ``on_click`` find it here instead of every ``register`` growing a parameter)."""
    try:
        return _POOLS[app]
    except KeyError:
        raise LookupError("no work pool attached to this Bolt app: call "
                          "handlers.work_pool.attach(app, pool) before registering "
                          "listeners") from None
