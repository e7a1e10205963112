"""Durable timers in ``scheduled_jobs``: the table is the truth, the scheduler only wakes up.

A job run is claimed with a conditional UPDATE (pending -> running), so a restart or a
leader change can neither lose a due job nor run it twice; ``dedupe_key`` stops the same
timer from being scheduled twice. The scheduler claims due jobs in batches
(``claim_due``: one UPDATE over rows locked with ``FOR UPDATE SKIP LOCKED``), so two
claimers never get the same row and neither waits for the other's locks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from bot.observability.scrub import scrub


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    rollback_id: int | None
    due_at: datetime
    payload: dict[str, Any]
    status: str
    claimed_by: str | None
    attempts: int = 0  # failed runs so far (``retry_later``); a bounded retry reads it


def _job(row: dict[str, Any]) -> Job:
    return Job(row["id"], row["kind"], row["rollback_id"], row["due_at"], dict(row["payload"]),
               row["status"], row["claimed_by"], int(row.get("attempts") or 0))


# A leader's bookkeeping write lands only while the row is still its own running claim:
# after a takeover the new leader re-queued (and may be re-running) it. NULL: unfenced
# (tests and tools that own the table).
_OWNED = " AND (%s::text IS NULL OR (claimed_by = %s AND status = 'running'))"


class JobStore:
    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self._outliving: set[str] = set()

    def outlive_cancel(self, kind: str) -> None:
        """Jobs of ``kind`` survive ``cancel`` without ``kinds`` (a rollback's end cancels
        its timers): they report that end, e.g. the status page update saying a rejected
        rollback was not carried out."""
        self._outliving.add(kind)

    def schedule(
        self, *, kind: str, due_at: datetime, rollback_id: int | None = None,
        payload: dict[str, Any] | None = None, dedupe_key: str | None = None,
    ) -> Job | None:
        """Insert a timer; returns None when ``dedupe_key`` was already scheduled."""
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                "INSERT INTO scheduled_jobs (kind, rollback_id, due_at, payload, dedupe_key)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (dedupe_key) DO NOTHING RETURNING *",
                (kind, rollback_id, due_at, Jsonb(payload or {}), dedupe_key),
            )
            row = cur.fetchone()
        return _job(row) if row else None

    def due(self, now: datetime, *, limit: int = 100) -> list[Job]:
        return self._select(
            "SELECT * FROM scheduled_jobs WHERE status = 'pending' AND due_at <= %s"
            " ORDER BY due_at, id LIMIT %s", (now, limit))

    def pending(self, *, rollback_id: int | None = None, kinds: Sequence[str] = ()) -> list[Job]:
        sql = "SELECT * FROM scheduled_jobs WHERE status = 'pending'"
        params: list[Any] = []
        if rollback_id is not None:
            sql += " AND rollback_id = %s"
            params.append(rollback_id)
        if kinds:
            sql += " AND kind = ANY(%s)"
            params.append(list(kinds))
        return self._select(sql + " ORDER BY due_at, id", params)

    def claim_due(self, now: datetime, *, owner: str, limit: int) -> list[Job]:
        """Claim up to ``limit`` due jobs (oldest due first) in one statement; returns them
        in due order. Rows another claimer holds are skipped, not waited for; a row locked
        is re-checked against ``status = 'pending'`` (READ COMMITTED's re-check), so one
        claimed meanwhile is left out."""
        if limit <= 0:
            return []
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            # A MATERIALIZED CTE, not ``id IN (SELECT ... LIMIT n)``: the planner may rescan
            # such a subquery and claim more than ``n`` rows.
            cur.execute(
                "WITH picked AS MATERIALIZED (SELECT id FROM scheduled_jobs"
                "  WHERE status = 'pending' AND due_at <= %s ORDER BY due_at, id LIMIT %s"
                "  FOR UPDATE SKIP LOCKED)"
                " UPDATE scheduled_jobs j SET status = 'running', claimed_by = %s,"
                " claimed_at = now() FROM picked WHERE j.id = picked.id"
                " AND j.status = 'pending' RETURNING j.*",
                (now, limit, owner))
            rows = cur.fetchall()
        # RETURNING follows no ORDER BY: put the batch back in due order.
        return sorted((_job(r) for r in rows), key=lambda j: (j.due_at, j.id))

    def next_due(self) -> datetime | None:
        """When the earliest pending job is due (the scheduler sleeps until then)."""
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT min(due_at) FROM scheduled_jobs WHERE status = 'pending'").fetchone()
        return row[0] if row else None

    def claim(self, job_id: int, *, owner: str) -> bool:
        with self.pool.connection() as conn:
            cur = conn.execute(
                "UPDATE scheduled_jobs SET status = 'running', claimed_by = %s, claimed_at = now()"
                " WHERE id = %s AND status = 'pending'", (owner, job_id))
            return cur.rowcount == 1

    def finish(self, job_id: int, *, result: dict[str, Any] | None = None,
               owner: str | None = None) -> None:
        """Mark the run done. ``owner``: only while the row is still this leader's claim (a
        leader that lost the lock mid-run must not close the new leader's re-run)."""
        with self.pool.connection() as conn:
            conn.execute(
                "UPDATE scheduled_jobs SET status = 'done', finished_at = now(), result = %s"
                " WHERE id = %s" + _OWNED, (Jsonb(result or {}), job_id, owner, owner))

    def retry_later(self, job_id: int, *, now: datetime, error: str,
                    max_attempts: int = 8, owner: str | None = None) -> bool:
        """A run raised: back off exponentially (2 s .. 5 min); after ``max_attempts`` the job
        is parked as 'failed' for a human. Returns whether it will run again. ``owner``: as
        for ``finish``."""
        with self.pool.connection() as conn:
            row = conn.execute(
                "UPDATE scheduled_jobs SET attempts = attempts + 1, last_error = %s,"
                " claimed_by = NULL,"
                " status = CASE WHEN attempts + 1 >= %s THEN 'failed' ELSE 'pending' END,"
                " due_at = %s + make_interval(secs => LEAST(300, power(2, attempts + 1)))"
                " WHERE id = %s" + _OWNED + " RETURNING status",
                (scrub(error)[:500], max_attempts, now, job_id, owner, owner)).fetchone()
        return bool(row and row[0] == "pending")

    def postpone(self, job_id: int, *, until: datetime, owner: str | None = None) -> None:
        """Not now, and not a failure: the run found its work claimed by another runner that
        is alive (``ClaimHeld``). Back in the queue at ``until``, attempts unchanged, so the
        worker is free meanwhile instead of waiting on someone else's call."""
        with self.pool.connection() as conn:
            conn.execute("UPDATE scheduled_jobs SET status = 'pending', claimed_by = NULL,"
                         " due_at = %s WHERE id = %s AND status = 'running'" + _OWNED,
                         (until, job_id, owner, owner))

    def release(self, job_id: int, *, owner: str | None = None) -> None:
        """Give a claimed job back (the run failed before doing anything visible)."""
        with self.pool.connection() as conn:
            conn.execute("UPDATE scheduled_jobs SET status = 'pending', claimed_by = NULL"
                         " WHERE id = %s AND status = 'running'" + _OWNED,
                         (job_id, owner, owner))

    def recover_running(self, *, older_than_seconds: float, except_owner: str | None = None
                        ) -> int:
        """A leader that died mid-run leaves 'running' rows; put them back in the queue.
        ``except_owner``: the new leader's own rows are in flight in its pool (it may have
        led before and lost the lock for a moment), not left behind."""
        with self.pool.connection() as conn:
            cur = conn.execute(
                "UPDATE scheduled_jobs SET status = 'pending', claimed_by = NULL"
                " WHERE status = 'running'"
                " AND claimed_at < now() - make_interval(secs => %s)"
                " AND claimed_by IS DISTINCT FROM %s", (older_than_seconds, except_owner))
            return cur.rowcount

    def cancel(self, *, rollback_id: int, kinds: Sequence[str] = (),
               dedupe_keys: Sequence[str] = ()) -> int:
        """Cancel the rollback's pending jobs (of ``kinds``, with ``dedupe_keys`` if given)."""
        sql = ("UPDATE scheduled_jobs SET status = 'cancelled', finished_at = now()"
               " WHERE rollback_id = %s AND status = 'pending'")
        params: list[Any] = [rollback_id]
        if kinds:
            sql += " AND kind = ANY(%s)"
            params.append(list(kinds))
        elif self._outliving:
            sql += " AND kind <> ALL(%s)"
            params.append(sorted(self._outliving))
        if dedupe_keys:
            sql += " AND dedupe_key = ANY(%s)"
            params.append(list(dedupe_keys))
        with self.pool.connection() as conn:
            return conn.execute(sql, params).rowcount

    def reschedule(self, job_id: int, *, due_at: datetime) -> None:
        with self.pool.connection() as conn:
            conn.execute("UPDATE scheduled_jobs SET status = 'pending', due_at = %s,"
                         " claimed_by = NULL WHERE id = %s", (due_at, job_id))

    def purge_finished(self, *, older_than_seconds: float) -> int:
        """Delete rows that finished long ago (done, cancelled, or given up) whose rollback
        has ended too, so nothing can schedule their ``dedupe_key`` again."""
        with self.pool.connection() as conn:
            return conn.execute(
                "DELETE FROM scheduled_jobs j WHERE j.status IN ('done', 'cancelled', 'failed')"
                " AND COALESCE(j.finished_at, j.due_at) < now() - make_interval(secs => %s)"
                " AND (j.rollback_id IS NULL OR EXISTS (SELECT 1 FROM rollbacks r"
                "      WHERE r.id = j.rollback_id AND r.finished_at IS NOT NULL"
                "      AND r.state IN ('completed', 'failed', 'rejected', 'cancelled', 'expired')"
                "      AND r.finished_at < now() - make_interval(secs => %s)))",
                (older_than_seconds, older_than_seconds)).rowcount

    def _select(self, sql: str, params: Sequence[Any]) -> list[Job]:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(sql, params)
            return [_job(r) for r in cur.fetchall()]
