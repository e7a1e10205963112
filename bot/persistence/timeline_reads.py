"""Read-only queries for a rollback's timeline: its outbox rows and its scheduled jobs.

The other sources of the timeline already have readers (``Store.audit_events``,
``Store.steps``, ``AftercareStore.monitors``/``samples``/``reminders``); these two tables
had none that returns every row of one rollback. Nothing here writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool


@dataclass(frozen=True)
class OutboxRow:
    """One keyed post (a notice, a file) of the rollback, as ``bot.persistence.outbox``
    recorded it: claimed (``sending``) before the Slack call, ``sent`` after."""

    key: str
    channel: str | None
    status: str
    attempts: int
    created_at: datetime
    sent_at: datetime | None


@dataclass(frozen=True)
class JobRow:
    """One durable timer of the rollback (``scheduled_jobs``), in whatever status it is."""

    id: int
    kind: str
    due_at: datetime
    status: str
    attempts: int
    finished_at: datetime | None
    last_error: str | None
    result: dict[str, Any]


class TimelineReads:
    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def outbox(self, rollback_id: int) -> list[OutboxRow]:
        """Every outbox row of the rollback still kept (retention purges sent rows of
        rollbacks that finished long ago: ``Store.purge_outbox``)."""
        rows = self._rows(
            "SELECT key, channel, status, attempts, created_at, sent_at FROM outbox"
            " WHERE rollback_id = %s ORDER BY created_at, key", (rollback_id,))
        return [OutboxRow(**r) for r in rows]

    def jobs(self, rollback_id: int) -> list[JobRow]:
        """Every scheduled job of the rollback still kept (retention purges finished jobs of
        rollbacks that finished long ago: ``JobStore.purge_finished``)."""
        rows = self._rows(
            "SELECT id, kind, due_at, status, attempts, finished_at, last_error, result"
            " FROM scheduled_jobs WHERE rollback_id = %s ORDER BY id", (rollback_id,))
        return [JobRow(**{**r, "result": dict(r["result"] or {})}) for r in rows]

    def _rows(self, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())
