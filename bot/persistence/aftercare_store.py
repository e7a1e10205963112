"""Persistence after the steps: per-rollback facts, monitors, samples, reminders.

Writes are idempotent (``ON CONFLICT``) or compare-and-set: the jobs calling them may re-run.
Measurement notes and results (which echo Prometheus and health-check errors) are scrubbed
of secrets (``bot.observability.scrub``) before they are stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from bot.observability.scrub import scrub, scrub_data


@dataclass(frozen=True)
class Facts:
    rollback_id: int
    steps_completed_at: datetime
    restored_at: datetime | None
    # Columns of 002, read by migration 014 into ``statuspage_incidents`` (where the status
    # page's progress lives since); no longer written.
    statuspage_incident_id: str | None
    statuspage_creating: bool


@dataclass(frozen=True)
class Monitor:
    id: int
    rollback_id: int
    key: str
    started_at: datetime
    ends_at: datetime
    interval_seconds: float
    status: str
    finished_at: datetime | None
    result: dict[str, Any]
    samples_pruned_at: datetime | None = None  # retention deleted its samples (016)

    @property
    def total_ticks(self) -> int:
        span = (self.ends_at - self.started_at).total_seconds()
        return max(1, -int(-span // self.interval_seconds))  # ceil, at least one check


@dataclass(frozen=True)
class Sample:
    seq: int
    at: datetime
    error_rate: float | None
    health_ok: bool | None
    health_detail: str
    latency_ms: float | None
    notes: str = ""
    due_at: datetime | None = None  # the check's slot; set by ``add_sample`` (019)

    @property
    def late_seconds(self) -> float | None:
        """How long after its slot the check ran (None: taken before 019 recorded it)."""
        return None if self.due_at is None else (self.at - self.due_at).total_seconds()


@dataclass(frozen=True)
class Reminder:
    id: int
    rollback_id: int
    kind: str
    due_at: datetime
    status: str
    seq: int
    next_at: datetime
    document: str | None
    created_at: datetime
    closed_by: str | None
    closed_at: datetime | None


class AftercareStore:
    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    # ------------------------------------------------------------------ facts
    def begin(self, rollback_id: int, *, steps_completed_at: datetime) -> Facts:
        """The first call records when the steps finished; later calls keep that time."""
        self._exec("INSERT INTO aftercare (rollback_id, steps_completed_at) VALUES (%s, %s)"
                   " ON CONFLICT DO NOTHING", (rollback_id, steps_completed_at))
        facts = self.facts(rollback_id)
        assert facts is not None
        return facts

    def facts(self, rollback_id: int) -> Facts | None:
        row = self._one("SELECT * FROM aftercare WHERE rollback_id = %s", (rollback_id,))
        return Facts(**row) if row else None

    def set_restored(self, rollback_id: int, at: datetime) -> None:
        """"Service restored at" is the first passing verification: a later pass (after a
        regression and a retry) keeps it, so downtime is never recounted."""
        self._exec("UPDATE aftercare SET restored_at = COALESCE(restored_at, %s)"
                   " WHERE rollback_id = %s", (at, rollback_id))

    # ------------------------------------------------------------------ monitors
    def open_monitor(self, *, rollback_id: int, key: str, started_at: datetime,
                     ends_at: datetime, interval_seconds: float) -> Monitor:
        """Open (or find) the window ``key``; older running windows are superseded."""
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            with conn.transaction():
                cur.execute(
                    "INSERT INTO monitors (rollback_id, key, started_at, ends_at,"
                    " interval_seconds) VALUES (%s, %s, %s, %s, %s)"
                    " ON CONFLICT (key) DO NOTHING", (rollback_id, key, started_at, ends_at,
                                                      interval_seconds))
                cur.execute("UPDATE monitors SET status = 'superseded' WHERE rollback_id = %s"
                            " AND key <> %s AND status = 'running'", (rollback_id, key))
                cur.execute("SELECT * FROM monitors WHERE key = %s", (key,))
                row = cur.fetchone()
        assert row is not None
        return _monitor(row)

    def monitor(self, monitor_id: int) -> Monitor:
        row = self._one("SELECT * FROM monitors WHERE id = %s", (monitor_id,))
        assert row is not None, f"no monitor {monitor_id}"
        return _monitor(row)

    def monitors(self, rollback_id: int) -> list[Monitor]:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute("SELECT * FROM monitors WHERE rollback_id = %s ORDER BY id",
                        (rollback_id,))
            return [_monitor(r) for r in cur.fetchall()]

    def finish_monitor(self, monitor_id: int, *, status: str, at: datetime,
                       result: dict[str, Any]) -> bool:
        """running -> ``status``; False when another run finished it first."""
        return self._exec(
            "UPDATE monitors SET status = %s, finished_at = %s, result = %s"
            " WHERE id = %s AND status = 'running'",
            (status, at, Jsonb(scrub_data(result)), monitor_id)) == 1

    def add_sample(self, monitor_id: int, sample: Sample) -> Sample:
        """Store the tick's measurement once; a re-run gets the first measurement back. The
        check's due time is its slot in the monitor's window (start + seq x interval, as
        the coordinator schedules it), so lateness is kept with the sample."""
        row = self._one(
            "INSERT INTO monitor_samples (monitor_id, seq, at, error_rate, health_ok,"
            " health_detail, latency_ms, notes, due_at)"
            " SELECT %s,%s,%s,%s,%s,%s,%s,%s,"
            " m.started_at + make_interval(secs => m.interval_seconds * %s)"
            " FROM monitors m WHERE m.id = %s ON CONFLICT DO NOTHING RETURNING *",
            (monitor_id, sample.seq, sample.at, sample.error_rate, sample.health_ok,
             scrub(sample.health_detail), sample.latency_ms, scrub(sample.notes),
             sample.seq, monitor_id))
        stored = _sample(row) if row else self.sample(monitor_id, sample.seq)  # a re-run's
        assert stored is not None
        return stored

    def sample(self, monitor_id: int, seq: int) -> Sample | None:
        row = self._one("SELECT * FROM monitor_samples WHERE monitor_id = %s AND seq = %s",
                        (monitor_id, seq))
        return _sample(row) if row else None

    def recent_samples(self, monitor_id: int, *, up_to: int, count: int) -> list[Sample]:
        """The last ``count`` samples with ``seq <= up_to``, oldest first: what a check's
        regression rule reads (a whole 2 h window at 5 s is 1,440 rows per check)."""
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute("SELECT * FROM monitor_samples WHERE monitor_id = %s AND seq <= %s"
                        " ORDER BY seq DESC LIMIT %s", (monitor_id, up_to, max(1, count)))
            return [_sample(r) for r in reversed(cur.fetchall())]

    def samples(self, monitor_id: int) -> list[Sample]:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute("SELECT * FROM monitor_samples WHERE monitor_id = %s ORDER BY seq",
                        (monitor_id,))
            return [_sample(r) for r in cur.fetchall()]

    # ------------------------------------------------------------------ reminders
    def add_reminder(self, *, rollback_id: int, kind: str, due_at: datetime,
                     created_at: datetime) -> Reminder | None:
        """Insert the rollback's ``kind`` reminder; None if it already exists."""
        row = self._one(
            "INSERT INTO reminders (rollback_id, kind, due_at, next_at, created_at)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (rollback_id, kind) DO NOTHING"
            " RETURNING *", (rollback_id, kind, due_at, created_at, created_at))
        return Reminder(**row) if row else None

    def reminder(self, reminder_id: int) -> Reminder:
        row = self._one("SELECT * FROM reminders WHERE id = %s", (reminder_id,))
        if row is None:
            from bot.domain.errors import NotFound

            raise NotFound(f"No reminder {reminder_id}.")
        return Reminder(**row)

    def reminders(self, rollback_id: int) -> list[Reminder]:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute("SELECT * FROM reminders WHERE rollback_id = %s ORDER BY id",
                        (rollback_id,))
            return [Reminder(**r) for r in cur.fetchall()]

    def installation_id(self) -> str:
        """This database's short random id (migration 004): rollback numbers restart in
        every database, so files kept outside it are named with this id too."""
        row = self._one("SELECT id FROM installation", ())
        if row is None:  # the migration inserts the row; only a hand-edited table lacks it
            raise RuntimeError("the installation table is empty; restore its row")
        return str(row["id"])

    def set_document(self, reminder_id: int, path: str) -> None:
        self._exec("UPDATE reminders SET document = %s WHERE id = %s", (path, reminder_id))

    def advance_reminder(self, reminder_id: int, *, from_seq: int, next_at: datetime
                         ) -> Reminder | None:
        """Move an open reminder to its next posting (seq+1) unless something else did."""
        row = self._one(
            "UPDATE reminders SET seq = seq + 1, next_at = %s WHERE id = %s AND seq = %s"
            " AND status = 'open' RETURNING *", (next_at, reminder_id, from_seq))
        return Reminder(**row) if row else None

    def snooze_reminder(self, reminder_id: int, *, next_at: datetime) -> Reminder | None:
        row = self._one(
            "UPDATE reminders SET seq = seq + 1, next_at = %s WHERE id = %s"
            " AND status = 'open' RETURNING *", (next_at, reminder_id))
        return Reminder(**row) if row else None

    def close_reminder(self, reminder_id: int, *, status: str, by: str, at: datetime
                       ) -> Reminder | None:
        row = self._one(
            "UPDATE reminders SET status = %s, closed_by = %s, closed_at = %s"
            " WHERE id = %s AND status = 'open' RETURNING *", (status, by, at, reminder_id))
        return Reminder(**row) if row else None

    # ------------------------------------------------------------------ helpers
    def _one(self, sql: str, params: tuple[Any, ...]) -> dict[str, Any] | None:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(sql, params)
            return cur.fetchone()

    def _exec(self, sql: str, params: tuple[Any, ...]) -> int:
        with self.pool.connection() as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.rowcount


def _monitor(row: dict[str, Any]) -> Monitor:
    return Monitor(**{**row, "result": dict(row["result"] or {})})


def _sample(row: dict[str, Any]) -> Sample:
    row = dict(row)
    row.pop("monitor_id", None)
    return Sample(**row)
