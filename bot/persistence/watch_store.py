"""The release watcher's state per service (``release_watch``): the open episode and the snooze.

Only the scheduler leader's watcher job writes the episode columns; a Snooze click writes
``snoozed_until``. Every write is one statement, so a leader that dies between checks leaves
a row the next leader continues from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool


@dataclass(frozen=True)
class WatchState:
    service: str
    episode_started_at: datetime | None = None
    snoozed_until: datetime | None = None
    snoozed_by: str | None = None


class WatchStore:
    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def get(self, service: str) -> WatchState:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute("SELECT service, episode_started_at, snoozed_until,"
                        " snoozed_by FROM release_watch WHERE service = %s", (service,))
            row = cur.fetchone()
        return WatchState(**row) if row else WatchState(service)

    def open_episode(self, service: str, at: datetime) -> datetime:
        """Open an episode at ``at`` unless one is open; returns the open episode's start
        (the proposal's key), whichever run opened it."""
        with self.pool.connection() as conn:
            row = conn.execute(
                "INSERT INTO release_watch (service, episode_started_at) VALUES (%s, %s)"
                " ON CONFLICT (service) DO UPDATE SET"
                " episode_started_at = COALESCE(release_watch.episode_started_at,"
                "                               EXCLUDED.episode_started_at),"
                " updated_at = now() RETURNING episode_started_at", (service, at)).fetchone()
        assert row is not None
        started: datetime = row[0]
        return started

    def close_episode(self, service: str) -> None:
        with self.pool.connection() as conn:
            conn.execute("UPDATE release_watch SET episode_started_at = NULL,"
                         " updated_at = now() WHERE service = %s",
                         (service,))

    def snooze(self, service: str, *, until: datetime, by: str) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO release_watch (service, snoozed_until, snoozed_by)"
                " VALUES (%s, %s, %s) ON CONFLICT (service) DO UPDATE SET"
                " snoozed_until = EXCLUDED.snoozed_until, snoozed_by = EXCLUDED.snoozed_by,"
                " updated_at = now()", (service, until, by))
