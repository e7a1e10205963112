"""Timed work on exactly one replica: the leader holds a PostgreSQL advisory lock.

Every replica runs the loop, but only the one holding the lock on its dedicated connection
runs due rows from ``scheduled_jobs``. On takeover the new leader re-queues rows a dead
leader left ``running``. The leader claims due jobs in batches (``JobStore.claim_due``) and
runs them on a bounded pool of threads (``scheduler.workers``): jobs are mostly I/O
(Prometheus, health probes, Slack), so a slow one no longer holds back every other due
job. Jobs of one rollback still run one at a time, in due order (a *lane* per rollback),
so a rollback's notices keep their order and its transitions never race each other; jobs
without a rollback are independent. The loop sleeps until the next job is due (at most
``interval_seconds``, so leadership is re-checked that often) or until a pool thread frees
up, instead of waking on a fixed 1 s grid that made every job up to a second late.

The clock is injected, so tests drive timers with ``tick(now=...)`` instead of sleeping:
``tick`` claims one batch, runs it on the pool and returns when all of it finished. The
leader also runs periodic maintenance (``bot.persistence.housekeeping``: retention) at its
first tick and then every ``maintenance.interval``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import psycopg

from bot.domain.ports import Clock, utcnow
from bot.observability import metrics
from bot.persistence.claims import ClaimHeld
from bot.persistence.jobs import Job, JobStore

log = logging.getLogger(__name__)

LEADER_LOCK_KEY = 0x6C656164  # "lead"
MAINTENANCE_RETRY = timedelta(minutes=5)  # after a failed maintenance run
# A job whose work another live runner has claimed (ClaimHeld) looks again this much later.
CLAIM_HELD_RETRY = timedelta(seconds=5)
TICK_BATCH = 100  # jobs one ``tick`` claims (the old serial tick read 100 due rows too)
# The loop claims at most once per quantum: due jobs a few milliseconds apart are claimed
# together instead of one wake-up and claim per job (200 checks/s would be 200 claims/s).
QUANTUM_SECONDS = 0.02
DEFAULT_WORKERS = 16
STOP_TIMEOUT_SECONDS = 30.0  # ``stop`` waits this long for jobs in flight


class Maintenance(Protocol):
    """Idempotent upkeep the leader runs every ``interval`` (``bot.persistence.housekeeping``)."""

    @property
    def interval(self) -> timedelta: ...

    def run(self) -> object: ...


@dataclass(eq=False)
class _Run:
    """One claimed job on its way through a lane; ``done`` is set when it finished (ran,
    failed and was given back to the table with backoff, or released unrun)."""

    job: Job
    at: datetime  # the claim's time: a failure's backoff counts from it
    done: threading.Event = field(default_factory=threading.Event)
    ran: bool = False


def _lane_key(job: Job) -> object:
    """A rollback's jobs share a lane (one at a time, in due order). A job not tied to the
    rollback's row but about it (a PagerDuty event: ``payload.rollback_id``, kept when the
    rollback's own jobs are cancelled) joins that lane too, so an alert's acknowledge and
    resolve, due at the same moment, reach PagerDuty in that order. Any other job is its
    own lane."""
    if job.rollback_id is not None:
        return job.rollback_id
    about = job.payload.get("rollback_id")
    if isinstance(about, int):
        return about
    return ("job", job.id)

class LeaderScheduler:
    def __init__(
        self, *, database_url: str, jobs: JobStore, run_job: Callable[[Job], None],
        clock: Clock = utcnow, interval_seconds: float = 1.0, owner: str | None = None,
        maintenance: Maintenance | None = None, workers: int = DEFAULT_WORKERS,
        stop_timeout_seconds: float = STOP_TIMEOUT_SECONDS,
    ) -> None:
        self.database_url = database_url
        self.jobs = jobs
        self.run_job = run_job
        self.clock = clock
        self.interval = interval_seconds
        self.owner = owner or f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.workers = max(1, int(workers))
        self.stop_timeout = stop_timeout_seconds
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._is_leader = False
        self._lock = threading.Lock()  # the leader connection
        self.maintenance = maintenance
        self._maintain_at: datetime | None = None  # None: at the next tick as leader
        # The pool and its lanes: ``_state`` guards ``_lanes`` and ``_outstanding``.
        self._pool: ThreadPoolExecutor | None = None
        self._state = threading.Condition()
        self._lanes: dict[object, deque[_Run]] = {}
        self._outstanding = 0  # claimed and not yet finished, retried or released
        self._starved = False  # the loop filled the pool and waits for a thread to free up
        self._stopping = threading.Event()
        self._wake = threading.Event()  # a pool thread freed up, or ``stop``
        self._thread: threading.Thread | None = None

    def try_lead(self) -> bool:
        """Take (or keep) leadership; a dropped connection releases the lock server-side."""
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(self.database_url, autocommit=True)
                    self._is_leader = False
                if self._is_leader:
                    self._conn.execute("SELECT 1")
                    return True
                row = self._conn.execute("SELECT pg_try_advisory_lock(%s)",
                                         (LEADER_LOCK_KEY,)).fetchone()
            except psycopg.Error:
                log.warning("leader connection lost; stepping down")
                self._is_leader = False
                self._conn = None
                return False
            got = bool(row and row[0])
            if got and not self._is_leader:
                self._is_leader = True
                self._maintain_at = None  # a new leader does its upkeep at once
                # Our own 'running' rows (if we led before) are still in our pool.
                recovered = self.jobs.recover_running(older_than_seconds=0,
                                                      except_owner=self.owner)
                log.info("became scheduler leader (%s); re-queued %d jobs", self.owner,
                         recovered)
            return self._is_leader

    @property
    def in_flight(self) -> int:
        """Jobs claimed by this scheduler and not finished yet."""
        with self._state:
            return self._outstanding

    def tick(self, *, now: datetime | None = None) -> int:
        """Claim one batch of due jobs (leader only), run it on the pool and wait for all of
        it; returns how many ran without failing. Jobs the batch's jobs schedule run at the
        next tick, like the serial tick did."""
        if not self.try_lead():
            return 0
        at = now or self.clock()
        runs = self._dispatch(self.jobs.claim_due(at, owner=self.owner, limit=TICK_BATCH), at)
        for run in runs:
            run.done.wait()
        self._maintain(at)
        return sum(1 for run in runs if run.ran)

    # ------------------------------------------------------------------ the pool
    def _dispatch(self, jobs: Sequence[Job], at: datetime) -> list[_Run]:
        """Queue claimed jobs on their lanes; a lane not running yet gets a pool thread."""
        runs = [_Run(job, at) for job in jobs]
        with self._state:
            self._outstanding += len(runs)
            for run in runs:
                key = _lane_key(run.job)
                lane = self._lanes.get(key)
                if lane is not None:
                    lane.append(run)  # its drainer picks it up after the running job
                    continue
                self._lanes[key] = deque([run])
                self._executor().submit(self._drain, key)
        return runs

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.workers,
                                            thread_name_prefix="scheduler-job")
        return self._pool

    def _drain(self, key: object) -> None:
        """A pool thread: run the lane's jobs in order until it is empty."""
        while True:
            with self._state:
                lane = self._lanes[key]
                if not lane:
                    del self._lanes[key]
                    return
                run = lane.popleft()
            try:
                self._run(run)
            finally:
                with self._state:
                    self._outstanding -= 1
                    self._state.notify_all()
                    wake, self._starved = self._starved, False
                run.done.set()
                if wake:
                    self._wake.set()

    def _run(self, run: _Run) -> None:
        job = run.job
        if self._stopping.is_set() or not self._is_leader:
            # Not started yet and no longer ours to run: back to the table for the leader.
            self._quietly(lambda: self.jobs.release(job.id, owner=self.owner), job,
                          "release")
            return
        try:
            self.run_job(job)
        except ClaimHeld as held:
            # Another live runner is sending this very thing: look again shortly rather than
            # wait in this worker for its call, and count no failed attempt.
            log.info("job %s (%s): %s is being sent by another runner; again in %.0f s",
                     job.id, job.kind, held, CLAIM_HELD_RETRY.total_seconds())
            self._quietly(lambda: self.jobs.postpone(job.id, until=run.at + CLAIM_HELD_RETRY,
                                                     owner=self.owner), job, "postpone")
            return
        except Exception as exc:
            metrics.JOB_FAILURES.labels(job.kind).inc()
            error = f"{type(exc).__name__}: {exc}"
            again = self._quietly(lambda: self.jobs.retry_later(
                job.id, now=run.at, error=error, owner=self.owner), job, "retry")
            log.exception("job %s (%s) failed; %s", job.id, job.kind,
                          "retrying with backoff" if again else "giving up")
            return
        if self._quietly(lambda: self.jobs.finish(job.id, owner=self.owner), job,
                         "finish") is not _FAILED:
            run.ran = True

    @staticmethod
    def _quietly(call: Callable[[], object], job: Job, what: str) -> object:
        """The job's bookkeeping write; if the database refuses it the row stays 'running'
        and the next leader's takeover re-queues it (as when a serial tick raised)."""
        try:
            return call()
        except Exception:
            log.exception("could not %s job %s (%s)", what, job.id, job.kind)
            return _FAILED

    # ------------------------------------------------------------------ maintenance
    def _maintain(self, at: datetime) -> None:
        """Run maintenance when due; never counted as a job, never fails the tick."""
        if self.maintenance is None or (self._maintain_at is not None
                                        and at < self._maintain_at):
            return
        try:
            self.maintenance.run()
        except Exception:
            log.exception("maintenance failed; trying again in %s", MAINTENANCE_RETRY)
            self._maintain_at = at + min(MAINTENANCE_RETRY, self.maintenance.interval)
            return
        self._maintain_at = at + self.maintenance.interval

    # ------------------------------------------------------------------ the loop
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        leading, checked, stepped = False, float("-inf"), float("-inf")
        while not self._stopping.is_set():
            # At most one claim per quantum, however often jobs finish or fall due.
            rest = QUANTUM_SECONDS - (time.monotonic() - stepped)
            if rest > 0 and self._stopping.wait(rest):
                break
            self._wake.clear()
            stepped, wait = time.monotonic(), self.interval
            try:
                if stepped - checked >= self.interval:
                    leading, checked = self.try_lead(), time.monotonic()
                if leading:
                    wait = self._step()
            except Exception:
                log.exception("scheduler step failed")
            self._wake.wait(wait)

    def _step(self) -> float:
        """Claim what is due into the free pool threads; returns how long to sleep."""
        now = self.clock()
        with self._state:
            free = self.workers - self._outstanding
        claimed = self.jobs.claim_due(now, owner=self.owner, limit=free) if free > 0 else []
        self._dispatch(claimed, now)
        self._maintain(now)
        if len(claimed) == free:
            with self._state:  # full: the next finishing job wakes the loop
                self._starved = True
                if self._outstanding < self.workers:
                    return 0.0
            return self.interval
        due = self.jobs.next_due()
        if due is None:
            return self.interval
        return min(self.interval, max(0.0, (due - self.clock()).total_seconds()))

    def stop(self) -> None:
        """Stop claiming, give queued jobs back, and wait (at most ``stop_timeout``) for the
        jobs in flight; then let go of the leader lock."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.stop_timeout)
            self._thread = None
        with self._state:
            if not self._state.wait_for(lambda: self._outstanding == 0,
                                        timeout=self.stop_timeout):
                log.warning("scheduler stopped with %d jobs still running; the next "
                            "leader re-queues them", self._outstanding)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        with self._lock:
            if self._conn is not None:
                self._conn.close()
            self._is_leader = False


_FAILED = object()  # ``_quietly``'s answer when the bookkeeping write raised
