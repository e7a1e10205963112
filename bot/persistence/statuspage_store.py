"""Persistence of the status page's progress per rollback (``statuspage_incidents``).

A rollback's status page incident is brought up to date from its audit trail: the row says
which incident, which audit event was the last one applied, and which event's call may have
gone out unanswered. One holder at a time per rollback (a claim on the row,
``bot.persistence.claims``: no connection is held during the page's HTTP calls), so two
runs can never post the same update twice or out of order.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from bot.persistence import claims

log = logging.getLogger(__name__)

# Each page call is timed out at the client's 10 s (bot/aftercare/statuspage.py) and the
# claim is renewed before every update sent (``sending``): two minutes outlast the look-ups
# and the call between two renewals, so a slow page is never updated twice.
STATUSPAGE_CLAIM_SECONDS = 120.0


class ClaimLost(RuntimeError):
    """This run's claim on the rollback's page was taken over: it must not call the page."""


@dataclass(frozen=True)
class PageProgress:
    rollback_id: int
    incident_id: str | None
    applied_through: int  # audit event id; 0 = nothing yet
    sending_event: int | None  # the event whose call was sent and not yet recorded


class StatuspageStore:
    def __init__(self, pool: ConnectionPool, *,
                 claim_seconds: float = STATUSPAGE_CLAIM_SECONDS) -> None:
        self.pool = pool
        self.claim_seconds = claim_seconds
        # Per thread: rollback id -> the claim token this run holds. Per thread, not per
        # process: two sync jobs of one rollback may run in one leader (the first stalled
        # past its claim, the second took it over), and each must be fenced on its own
        # token -- a shared entry let the stalled one write with the new holder's.
        self._local = threading.local()

    @contextlib.contextmanager
    def holding(self, rollback_id: int) -> Iterator[bool]:
        """Yield whether this caller holds the rollback's page claim (False: another run is
        bringing the page up to date right now). The claim is committed on entry and
        cleared on exit; no connection is held in between."""
        token = claims.owner_for(self.pool).claim_token()
        with self.pool.connection() as conn:
            conn.execute("INSERT INTO statuspage_incidents (rollback_id) VALUES (%s)"
                         " ON CONFLICT DO NOTHING", (rollback_id,))
            got = conn.execute(
                "UPDATE statuspage_incidents SET claimed_by = %s,"
                " claim_expires_at = now() + make_interval(secs => %s)"
                f" WHERE rollback_id = %s AND {claims.claimable('statuspage_incidents')}"
                " RETURNING rollback_id", (token, self.claim_seconds, rollback_id)
            ).fetchone() is not None
        if not got:
            yield False
            return
        self._held()[rollback_id] = token
        try:
            yield True
        finally:
            self._held().pop(rollback_id, None)
            self._exec("UPDATE statuspage_incidents SET claimed_by = NULL,"
                       " claim_expires_at = NULL WHERE rollback_id = %s AND claimed_by = %s",
                       (rollback_id, token))
            claims.released()

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
        (None: the call was answered with a refusal, so nothing is in doubt). Under a claim
        it renews the claim too, and raises ClaimLost (before the call) if it was taken."""
        token = self._token(rollback_id)
        if not self._exec(
                "UPDATE statuspage_incidents SET sending_event = %s, claim_expires_at ="
                " CASE WHEN %s::text IS NULL THEN claim_expires_at"
                " ELSE now() + make_interval(secs => %s) END"
                " WHERE rollback_id = %s AND (%s::text IS NULL OR claimed_by = %s)",
                (event_id, token, self.claim_seconds, rollback_id, token, token)
        ) and token is not None:
            raise ClaimLost(f"the status page claim of rollback {rollback_id} was taken over")

    def applied(self, rollback_id: int, event_id: int, *, incident_id: str | None) -> None:
        """The event is done with (sent, found sent, or given up): the cursor moves past it."""
        token = self._token(rollback_id)
        if not self._exec(
                "UPDATE statuspage_incidents SET applied_through = GREATEST(applied_through,"
                " %s), sending_event = NULL, incident_id = COALESCE(%s, incident_id)"
                " WHERE rollback_id = %s AND (%s::text IS NULL OR claimed_by = %s)",
                (event_id, incident_id, rollback_id, token, token)
        ) and token is not None:
            log.warning("status page of rollback %s: event %s applied after the claim was"
                        " taken over (the next holder looks at the page first)",
                        rollback_id, event_id)

    def _held(self) -> dict[int, str]:
        held: dict[int, str] | None = getattr(self._local, "held", None)
        if held is None:
            held = self._local.held = {}
        return held

    def _token(self, rollback_id: int) -> str | None:
        return self._held().get(rollback_id)

    def _exec(self, sql: str, params: tuple[object, ...]) -> bool:
        """Whether a row was changed."""
        with self.pool.connection() as conn:
            return conn.execute(sql, params).rowcount > 0
