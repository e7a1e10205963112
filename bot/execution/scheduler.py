"""Timed work on exactly one replica: the leader holds a PostgreSQL advisory lock.

APScheduler 3 (in-memory job store, never shared) ticks on every replica, but only the
one holding the lock on its dedicated connection runs due rows from ``scheduled_jobs``.
On takeover the new leader re-queues rows a dead leader left ``running``. The clock is
injected, so tests drive timers with ``tick(now=...)`` instead of sleeping. The leader also
runs periodic maintenance (``bot.persistence.housekeeping``: retention) at its first tick and then
every ``maintenance.interval``.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

import psycopg
from apscheduler.schedulers.background import BackgroundScheduler

from bot.domain.ports import Clock, utcnow
from bot.observability import metrics
from bot.persistence.jobs import Job, JobStore

log = logging.getLogger(__name__)

LEADER_LOCK_KEY = 0x6C656164  # "lead"
MAINTENANCE_RETRY = timedelta(minutes=5)  # after a failed maintenance run


class Maintenance(Protocol):
    """Idempotent upkeep the leader runs every ``interval`` (``bot.persistence.housekeeping``)."""

    @property
    def interval(self) -> timedelta: ...

    def run(self) -> object: ...


class LeaderScheduler:
    def __init__(
        self, *, database_url: str, jobs: JobStore, run_job: Callable[[Job], None],
        clock: Clock = utcnow, interval_seconds: float = 1.0, owner: str | None = None,
        maintenance: Maintenance | None = None,
    ) -> None:
        self.database_url = database_url
        self.jobs = jobs
        self.run_job = run_job
        self.clock = clock
        self.interval = interval_seconds
        self.owner = owner or f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._is_leader = False
        self._lock = threading.Lock()
        self._aps: BackgroundScheduler | None = None
        self.maintenance = maintenance
        self._maintain_at: datetime | None = None  # None: at the next tick as leader

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
                recovered = self.jobs.recover_running(older_than_seconds=0)
                log.info("became scheduler leader (%s); re-queued %d jobs", self.owner,
                         recovered)
            return self._is_leader

    def tick(self, *, now: object | None = None) -> int:
        """Run every due job once (leader only); returns how many ran."""
        if not self.try_lead():
            return 0
        at = now or self.clock()
        ran = 0
        for job in self.jobs.due(at):  # type: ignore[arg-type]
            if not self.jobs.claim(job.id, owner=self.owner):
                continue
            try:
                self.run_job(job)
            except Exception as exc:
                metrics.JOB_FAILURES.labels(job.kind).inc()
                again = self.jobs.retry_later(job.id, now=at,  # type: ignore[arg-type]
                                              error=f"{type(exc).__name__}: {exc}")
                log.exception("job %s (%s) failed; %s", job.id, job.kind,
                              "retrying with backoff" if again else "giving up")
                continue
            self.jobs.finish(job.id)
            ran += 1
        self._maintain(at)  # type: ignore[arg-type]
        return ran

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

    def start(self) -> None:
        self._aps = BackgroundScheduler(timezone="UTC")
        self._aps.add_job(self._safe_tick, "interval", seconds=self.interval, id="tick",
                          max_instances=1, coalesce=True)
        self._aps.start()

    def _safe_tick(self) -> None:
        try:
            self.tick()
        except Exception:
            log.exception("scheduler tick failed")

    def stop(self) -> None:
        if self._aps is not None and self._aps.running:
            self._aps.shutdown(wait=False)
        with self._lock:
            if self._conn is not None:
                self._conn.close()
            self._is_leader = False
