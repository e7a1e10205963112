"""Persistence of the status page's progress per rollback (``statuspage_incidents``).

A rollback's status page incident is brought up to date from its audit trail: the row says
which incident, which audit event was the last one applied, and which event's call may have
gone out unanswered. One holder at a time per rollback (a session advisory lock), so two
runs can never post the same update twice or out of order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

STATUSPAGE_LOCK_NAMESPACE = 0x73747067  # "stpg": first half of the two-int advisory lock key


@dataclass(frozen=True)
class PageProgress:
    rollback_id: int
    incident_id: str | None
    applied_through: int  # audit event id; 0 = nothing yet
    sending_event: int | None  # the event whose call was sent and not yet recorded


class StatuspageStore:
    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    @contextlib.contextmanager
    def holding(self, rollback_id: int) -> Iterator[bool]:
        """Yield whether this caller holds the rollback's page lock (False: another run is
        bringing the page up to date right now)."""
        # A session lock on a pooled connection, which is autocommit (bot.persistence.db):
        # no transaction is held across the HTTP calls.
        with self.pool.connection() as conn:
            row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)",
                               (STATUSPAGE_LOCK_NAMESPACE, rollback_id)).fetchone()
            got = bool(row and row[0])
            try:
                yield got
            finally:
                if got:
                    conn.execute("SELECT pg_advisory_unlock(%s, %s)",
                                 (STATUSPAGE_LOCK_NAMESPACE, rollback_id))

    def progress(self, rollback_id: int) -> PageProgress:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute("INSERT INTO statuspage_incidents (rollback_id) VALUES (%s)"
                        " ON CONFLICT DO NOTHING", (rollback_id,))
            cur.execute("SELECT rollback_id, incident_id, applied_through, sending_event"
                        " FROM statuspage_incidents WHERE rollback_id = %s", (rollback_id,))
            row = cur.fetchone()
        assert row is not None
        return PageProgress(**row)

    def sending(self, rollback_id: int, event_id: int | None) -> None:
        """Committed before the call: a crash after it leaves the mark for the next run
        (None: the call was answered with a refusal, so nothing is in doubt)."""
        self._exec("UPDATE statuspage_incidents SET sending_event = %s WHERE rollback_id = %s",
                   (event_id, rollback_id))

    def applied(self, rollback_id: int, event_id: int, *, incident_id: str | None) -> None:
        """The event is done with (sent, found sent, or given up): the cursor moves past it."""
        self._exec("UPDATE statuspage_incidents SET applied_through = GREATEST(applied_through,"
                   " %s), sending_event = NULL, incident_id = COALESCE(%s, incident_id)"
                   " WHERE rollback_id = %s", (event_id, incident_id, rollback_id))

    def _exec(self, sql: str, params: tuple[object, ...]) -> None:
        with self.pool.connection() as conn:
            conn.execute(sql, params)
