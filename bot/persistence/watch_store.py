"""The release watcher's state per service (``release_watch``): the open episode, its
proposal and the request that answered it, and the snooze.

Only the scheduler leader's watcher job opens and closes episodes; a Snooze click writes
``snoozed_until``; whoever first sees a request answer the proposal records it
(compare-and-set, once per episode). Every write is one statement, so a leader that dies
between checks leaves a row the next leader continues from.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from bot.persistence import claims

# An episode's filing holds its claim over a request (platform reads, Slack calls) and two
# outbox posts, each post bounded by claims.SLACK_CLAIM_SECONDS: fifteen minutes outlast
# them, so a slow filing is never done twice.
WATCH_CLAIM_SECONDS = 900.0


@dataclass(frozen=True)
class WatchState:
    service: str
    episode_started_at: datetime | None = None
    snoozed_until: datetime | None = None
    snoozed_by: str | None = None
    proposal: dict[str, Any] | None = None  # the open episode's posted proposal (facts)
    answered_by: int | None = None  # the rollback that answered it

    def snoozed(self, now: datetime) -> bool:
        """Whether proposals (and ``auto_request``) are held back at ``now``: a snooze ends
        at ``snoozed_until``, exclusive."""
        return self.snoozed_until is not None and self.snoozed_until > now


class WatchStore:
    def __init__(self, pool: ConnectionPool, *,
                 claim_seconds: float = WATCH_CLAIM_SECONDS) -> None:
        self.pool = pool
        self.claim_seconds = claim_seconds

    def get(self, service: str) -> WatchState:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute("SELECT service, episode_started_at, snoozed_until, snoozed_by,"
                        " proposal, answered_by FROM release_watch WHERE service = %s",
                        (service,))
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
            conn.execute("UPDATE release_watch SET episode_started_at = NULL, proposal = NULL,"
                         " answered_by = NULL, updated_at = now() WHERE service = %s",
                         (service,))

    def save_proposal(self, service: str, *, episode: datetime, facts: dict[str, Any]) -> None:
        """The facts of the episode's proposal, kept to re-render it once answered."""
        with self.pool.connection() as conn:
            conn.execute("UPDATE release_watch SET proposal = %s, updated_at = now()"
                         " WHERE service = %s AND episode_started_at = %s",
                         (Jsonb(facts), service, episode))

    def answer(self, service: str, *, episode: datetime, rollback_id: int) -> bool:
        """Record that ``rollback_id`` answered the episode's proposal; False when another
        request already did (or the episode has ended)."""
        with self.pool.connection() as conn:
            cur = conn.execute("UPDATE release_watch SET answered_by = %s, updated_at = now()"
                               " WHERE service = %s AND episode_started_at = %s"
                               " AND answered_by IS NULL", (rollback_id, service, episode))
            return cur.rowcount == 1

    def requested_by_since(self, service: str, *, requester: str, since: datetime
                           ) -> int | None:
        """The first rollback of ``service`` that ``requester`` asked for at or after
        ``since``: the request ``auto_request`` filed in an episode, found again after a
        crash between filing it and recording it."""
        with self.pool.connection() as conn:
            row = conn.execute("SELECT id FROM rollbacks WHERE service = %s AND requester = %s"
                               " AND created_at >= %s ORDER BY id LIMIT 1",
                               (service, requester, since)).fetchone()
        return int(row[0]) if row else None

    @contextmanager
    def exclusive(self, key: str) -> Iterator[bool]:
        """One holder of ``key`` at a time across replicas (a claim in ``claims``, freed at
        once if this process dies: ``bot.persistence.claims``): two leaders' checks never
        both file a request. No connection is held while it is. Yields False at once when
        another holds it: the caller skips this check instead of blocking the leader's
        tick behind Slack and platform calls."""
        token = claims.owner_for(self.pool).claim_token()
        with self.pool.connection() as conn:
            held = conn.execute(
                "INSERT INTO claims (key, claimed_by, claim_expires_at)"
                " VALUES (%s, %s, now() + make_interval(secs => %s))"
                " ON CONFLICT (key) DO UPDATE SET claimed_by = EXCLUDED.claimed_by,"
                " claim_expires_at = EXCLUDED.claim_expires_at"
                f" WHERE {claims.claimable('claims')} RETURNING key",
                (f"watch:{key}", token, self.claim_seconds)).fetchone() is not None
        try:
            yield held
        finally:
            if held:
                with self.pool.connection() as conn:
                    conn.execute("DELETE FROM claims WHERE key = %s AND claimed_by = %s",
                                 (f"watch:{key}", token))
                claims.released()

    def snooze(self, service: str, *, until: datetime, by: str) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO release_watch (service, snoozed_until, snoozed_by)"
                " VALUES (%s, %s, %s) ON CONFLICT (service) DO UPDATE SET"
                " snoozed_until = EXCLUDED.snoozed_until, snoozed_by = EXCLUDED.snoozed_by,"
                " updated_at = now()", (service, until, by))
