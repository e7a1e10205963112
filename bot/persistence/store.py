"""Persistence with psycopg 3: rollbacks, steps, audit trail, request dedupe, leases.

Every state change is a compare-and-set on the current state plus an audit row in the
same transaction; executor claims use ``FOR UPDATE SKIP LOCKED`` with a lease so any
replica can execute and a dead one's work is picked up when its lease runs out.
Timed work lives in ``bot.persistence.jobs`` (same pool, separate concern).

Refusals are ``bot.persistence.errors`` (``StaleState``, ``ActiveRollbackExists``).

Nothing secret is written: every error, result and audit detail passes
``bot.observability.scrub`` here, and the Secret items of a known-good configuration are
sealed (``bot.persistence.sealing``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from bot.domain.errors import NotFound
from bot.domain.lifecycle import ACTIVE, TERMINAL, Event, State, advance
from bot.domain.models import AuditEvent, KnownBad, PlannedStep, Rollback, Step
from bot.observability import metrics
from bot.observability.scrub import scrub, scrub_data
from bot.persistence import claims, sealing
from bot.persistence.errors import ActiveRollbackExists, DatabaseUnavailable, StaleState
from bot.persistence.store_rows import rollback_from_row, target_to_json
from platforms.base import Revision, Target

log = logging.getLogger(__name__)

__all__ = ["Store"]

log = logging.getLogger(__name__)


_UPDATABLE = {
    "approver",
    "approved_at",
    "break_glass",
    "finished_at",
    "last_error",
    "incident_commander",
    "expires_at",
    "lease_owner",
    "lease_expires_at",
    "policy_mode",
    "severity",
    "cancel_requested_by",
}


# claim_next's two orders (literal SQL: a prepared statement each).
_NEW_FIRST = (" ORDER BY (cancel_requested_by IS NOT NULL) DESC, (state = 'approved') DESC,"
              " next_check_at NULLS FIRST, id")
_LOOKS_FIRST = (" ORDER BY (cancel_requested_by IS NOT NULL) DESC, next_check_at NULLS LAST,"
                " (state = 'approved') DESC, id")


class Store:
    def __init__(self, pool: ConnectionPool, lease_pool: ConnectionPool | None = None) -> None:
        self.pool = pool
        claims.retain_owner(pool)  # its claim owner lives until the last store closes
        self._closed = False
        self._close_lock = threading.Lock()
        # The executor's lease writes (heartbeat, park, release) borrow from their own
        # small pool when given one (``db.open_lease_pool``): a fence never waits behind
        # work that holds the main pool's connections.
        self.lease_pool = lease_pool or pool
        self._transition_listeners: list[Callable[[Rollback, Event], None]] = []

    def when_transitioned(self, listener: Callable[[Rollback, Event], None]) -> None:
        """Call ``listener`` with the new row and its event after every committed
        transition (escalation acknowledges and resolves its page there); a listener's
        error is logged, never the transition's."""
        self._transition_listeners.append(listener)

    # ------------------------------------------------------------------ rollbacks
    def create_rollback(
        self,
        *,
        service: str,
        platform: str,
        severity: str,
        policy_mode: str,
        scope: Sequence[str],
        reason: str,
        requester: str,
        channel_id: str,
        channel_name: str,
        current_revision: Revision | None,
        target_revision: Revision,
        target: Target,
        steps: Sequence[PlannedStep],
        checklist: dict[str, Any],
        assessment: dict[str, Any],
        expires_at: datetime | None,
        created_at: datetime,
        incident_started_at: datetime | None = None,
        plan_facts: dict[str, Any] | None = None,
        decision_due_at: datetime | None = None,
        incident_start_source: str | None = None,
    ) -> Rollback:
        """Insert the rollback with its pinned plan; ``ActiveRollbackExists`` if one is live."""
        import psycopg.errors

        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            try:
                with conn.transaction():
                    cur.execute(
                        "INSERT INTO rollbacks (service, platform, severity, policy_mode, scope,"
                        " reason, state, requester, channel_id, channel_name, current_revision,"
                        " target_revision, target, checklist, assessment, expires_at,"
                        " created_at, updated_at, incident_started_at, plan_facts,"
                        " decision_due_at, incident_start_source)"
                        " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,"
                        " %s, %s)"
                        " RETURNING *",
                        (
                            service,
                            platform,
                            severity,
                            policy_mode,
                            list(scope),
                            scrub(reason),
                            State.PENDING_APPROVAL.value,
                            requester,
                            channel_id,
                            channel_name,
                            Jsonb(current_revision.to_dict()) if current_revision else None,
                            Jsonb(target_revision.to_dict()),
                            Jsonb(target_to_json(target)),
                            Jsonb(checklist),
                            Jsonb(assessment),
                            expires_at,
                            created_at,
                            created_at,
                            incident_started_at,
                            Jsonb(plan_facts or {}),
                            decision_due_at,
                            incident_start_source,
                        ),
                    )
                    row = cur.fetchone()
                    assert row is not None
                    for seq, step in enumerate(steps, start=1):
                        cur.execute(
                            "INSERT INTO rollback_steps (rollback_id, seq, kind, description,"
                            " destructive, params) VALUES (%s,%s,%s,%s,%s,%s)",
                            (row["id"], seq, step.kind, step.description, step.destructive,
                             Jsonb(step.params)),
                        )
                    self._audit(cur, row["id"], requester, "requested", None,
                                State.PENDING_APPROVAL.value,
                                {"severity": severity, "target": target_revision.to_dict(),
                                 "reason": reason, "scope": list(scope),
                                 **({"incident_started_at": incident_started_at.isoformat(),
                                     "incident_start_source": incident_start_source}
                                    if incident_started_at else {}),
                                 **({"decision_due_at": decision_due_at.isoformat()}
                                    if decision_due_at else {})})
            except psycopg.errors.UniqueViolation:
                existing = self.active_for_service(service)
                if existing is None:  # finished between our insert and this read
                    raise
                raise ActiveRollbackExists(existing) from None
        return rollback_from_row(row)

    def get(self, rollback_id: int) -> Rollback:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute("SELECT * FROM rollbacks WHERE id = %s", (rollback_id,))
            row = cur.fetchone()
        if row is None:
            raise NotFound(f"No rollback RB-{rollback_id}.")
        return rollback_from_row(row)

    def active_for_service(self, service: str) -> Rollback | None:
        # The states are literals, not a parameter: a prepared statement's generic plan can
        # then use the partial index ``rollbacks_one_active_per_service`` (migration 016).
        rows = self._select(
            "SELECT * FROM rollbacks WHERE service = %s AND state IN ("
            + _state_literals(ACTIVE) + ") ORDER BY id DESC LIMIT 1",
            (service,),
        )
        return rows[0] if rows else None

    def history(self, service: str, *, limit: int = 10) -> list[Rollback]:
        return self._select(
            "SELECT * FROM rollbacks WHERE service = %s ORDER BY id DESC LIMIT %s",
            (service, limit),
        )

    def in_states(self, states: Iterable[State], *, newest: int | None = None
                  ) -> list[Rollback]:
        """Rollbacks in ``states`` by id; ``newest``: only the last that many (``status``
        with a thousand active rollbacks reads twenty rows, not a thousand)."""
        # Literals for the same reason as ``active_for_service`` (``status`` lists ACTIVE).
        where = "SELECT * FROM rollbacks WHERE state IN (" + _state_literals(states) + ")"
        if newest is None:
            return self._select(where + " ORDER BY id", ())
        return self._select("SELECT * FROM (" + where + " ORDER BY id DESC LIMIT %s)"
                            " AS newest ORDER BY id", (newest,))

    def count_in_states(self, states: Iterable[State]) -> int:
        with self.pool.connection() as conn:
            row = conn.execute("SELECT count(*) FROM rollbacks WHERE state IN ("
                               + _state_literals(states) + ")").fetchone()
        return int(row[0]) if row else 0

    def _select(self, sql: str, params: Sequence[Any]) -> list[Rollback]:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(sql, params)
            return [rollback_from_row(r) for r in cur.fetchall()]

    def transition(
        self,
        rollback_id: int,
        event: Event,
        *,
        actor: str,
        expected: State | None = None,
        detail: dict[str, Any] | None = None,
        updates: dict[str, Any] | None = None,
        known_good: dict[str, Any] | None = None,
    ) -> Rollback:
        """Compare-and-set ``expected`` (default: the current state) -> ``advance(...)``.

        ``known_good`` (a config snapshot) is recorded as the service's known-good
        configuration in the same transaction, only if the transition happens: whoever
        sees the new state reads the new record, and a crash leaves neither.

        Raises ``InvalidTransition`` when the event does not apply, ``StaleState`` when
        another actor moved the rollback first.
        """
        from_state = expected or self.get(rollback_id).state
        to_state = advance(from_state, event)
        sets = ["state = %s", "updated_at = now()"]
        params: list[Any] = [to_state.value]
        for key, value in (updates or {}).items():
            if key not in _UPDATABLE:
                raise ValueError(f"column {key} is not updatable through a transition")
            sets.append(f"{key} = %s")
            params.append(_scrubbed_column(key, value))
        if to_state in TERMINAL:
            sets.append("finished_at = COALESCE(finished_at, now())")
            sets.append("lease_owner = NULL, lease_expires_at = NULL")
        sealed = sealing.seal(known_good) if known_good is not None else None  # CPU, not in tx
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            with conn.transaction():
                cur.execute(
                    f"UPDATE rollbacks SET {', '.join(sets)} WHERE id = %s AND state = %s"
                    " RETURNING *",
                    (*params, rollback_id, from_state.value),
                )
                row = cur.fetchone()
                if row is not None:
                    self._audit(cur, rollback_id, actor, event.value, from_state.value,
                                to_state.value, detail or {})
                if row is not None and sealed is not None:
                    self._upsert_known_good(cur, row["service"], row["platform"], sealed,
                                            rollback_id)
        if row is None:
            metrics.STALE_TRANSITIONS.labels(event.value).inc()
            raise StaleState(self.get(rollback_id))
        metrics.TRANSITIONS.labels(event.value, to_state.value).inc()
        new = rollback_from_row(row)
        for listener in self._transition_listeners:
            try:
                listener(new, event)
            except Exception:  # the transition happened; a listener cannot undo it
                log.exception("transition listener failed for RB-%s", rollback_id)
        return new

    def set_message(self, rollback_id: int, *, message_ts: str, thread_ts: str,
                    channel_id: str | None = None) -> None:
        """Where the request message landed; ``channel_id`` (Slack's id for the channel it
        was posted to) replaces a channel given by name."""
        self._exec(
            "UPDATE rollbacks SET message_ts = %s, thread_ts = %s,"
            " channel_id = COALESCE(%s, channel_id) WHERE id = %s",
            (message_ts, thread_ts, channel_id, rollback_id),
        )

    def set_watch_reading(self, rollback_id: int, reading: dict[str, Any]) -> None:
        """The release watcher's latest figures for a pending request (its message shows
        them)."""
        self._exec("UPDATE rollbacks SET watch_reading = %s WHERE id = %s",
                   (Jsonb(reading), rollback_id))

    def set_assessment(self, rollback_id: int, assessment: dict[str, Any]) -> None:
        self._exec("UPDATE rollbacks SET assessment = %s WHERE id = %s",
                   (Jsonb(assessment), rollback_id))

    def set_checklist_item(
        self, rollback_id: int, item: str, value: dict[str, Any], *, actor: str,
        expected_state: State | None = None, expected_done: bool | None = None,
    ) -> Rollback:
        """Write one checklist item, audited. With ``expected_state``/``expected_done`` the
        write is conditional on what the caller decided on (a click checked against the
        pending state must not land after approval; two toggles must not cancel out):
        ``StaleState`` when the row moved meanwhile."""
        conditions: list[str] = ["id = %s"]
        params: list[Any] = [rollback_id]
        if expected_state is not None:
            conditions.append("state = %s")
            params.append(expected_state.value)
        if expected_done is not None:
            conditions.append("coalesce((checklist -> %s ->> 'done')::boolean, false) = %s")
            params += [item, expected_done]
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            with conn.transaction():
                cur.execute(
                    "UPDATE rollbacks SET checklist = jsonb_set(checklist, %s, %s, true),"
                    f" updated_at = now() WHERE {' AND '.join(conditions)} RETURNING *",
                    ([item], Jsonb(value), *params),
                )
                row = cur.fetchone()
                if row is not None:
                    self._audit(cur, rollback_id, actor, "checklist", None, None,
                                {"item": item, **value})
        if row is None:
            raise StaleState(self.get(rollback_id))  # NotFound when it does not exist
        return rollback_from_row(row)

    def claim_incident_commander(self, rollback_id: int, *, user: str,
                                 expected_state: State) -> Rollback:
        """``user`` becomes incident commander only if nobody is and the state is still the
        one the click was checked against: two first claims racing cannot both win."""
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            with conn.transaction():
                cur.execute(
                    "UPDATE rollbacks SET incident_commander = %s,"
                    " checklist = jsonb_set(checklist, '{incident_commander}', %s, true),"
                    " updated_at = now()"
                    " WHERE id = %s AND incident_commander IS NULL AND state = %s"
                    " RETURNING *",
                    (user, Jsonb({"done": True, "by": user}), rollback_id,
                     expected_state.value),
                )
                row = cur.fetchone()
                if row is not None:
                    self._audit(cur, rollback_id, user, "updated", None, None,
                                {"incident_commander": user})
                    self._audit(cur, rollback_id, user, "checklist", None, None,
                                {"item": "incident_commander", "done": True, "by": user})
        if row is None:
            raise StaleState(self.get(rollback_id))
        return rollback_from_row(row)

    def report_hotfix(self, rollback_id: int, *, user: str, decision_due_at: datetime,
                      expires_at: datetime) -> Rollback:
        """``user`` reports a hotfix in progress: the decision deadline moves to
        ``decision_due_at`` and the expiry to no earlier than ``expires_at``, audited, only
        while the rollback is pending and once per rollback (a second click, a retried
        delivery or a racing approval loses: ``StaleState`` with the current row)."""
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            with conn.transaction():
                cur.execute(
                    "SELECT decision_due_at, expires_at FROM rollbacks WHERE id = %s"
                    " FOR UPDATE", (rollback_id,))
                before = cur.fetchone()
                cur.execute(
                    "UPDATE rollbacks SET decision_due_at = %s, hotfix_reported_by = %s,"
                    " expires_at = GREATEST(expires_at, %s), updated_at = now()"
                    " WHERE id = %s AND state = %s AND hotfix_reported_by IS NULL"
                    " RETURNING *",
                    (decision_due_at, user, expires_at, rollback_id,
                     State.PENDING_APPROVAL.value))
                row = cur.fetchone()
                if row is not None and before is not None:
                    was = before["decision_due_at"]
                    self._audit(cur, rollback_id, user, "hotfix_in_progress", None, None, {
                        "decision_due_at": decision_due_at.isoformat(),
                        "previous_due_at": was.isoformat() if was else None,
                        "expires_at": row["expires_at"].isoformat()})
        if row is None:
            raise StaleState(self.get(rollback_id))  # NotFound when it does not exist
        return rollback_from_row(row)

    def update_fields(self, rollback_id: int, *, actor: str, **fields: Any) -> Rollback:
        """Change non-state columns (e.g. incident commander), audited."""
        sets, params = [], []
        for key, value in fields.items():
            if key not in _UPDATABLE:
                raise ValueError(f"column {key} is not updatable")
            sets.append(f"{key} = %s")
            params.append(_scrubbed_column(key, value))
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            with conn.transaction():
                cur.execute(
                    f"UPDATE rollbacks SET {', '.join(sets)}, updated_at = now()"
                    " WHERE id = %s RETURNING *",
                    (*params, rollback_id),
                )
                row = cur.fetchone()
                if row is None:
                    raise NotFound(f"No rollback RB-{rollback_id}.")
                self._audit(cur, rollback_id, actor, "updated", None, None,
                            {k: str(_scrubbed_column(k, v)) for k, v in fields.items()})
        return rollback_from_row(row)

    def record_data_loss(self, rollback_id: int, *, since: datetime, until: datetime) -> None:
        """The window a database restore loses (backup timestamp to restore), audited; the
        first record stands (a resumed restore step finds it set)."""
        with self.pool.connection() as conn, conn.cursor() as cur:
            with conn.transaction():
                cur.execute("UPDATE rollbacks SET data_loss_from = %s, data_loss_to = %s"
                            " WHERE id = %s AND data_loss_from IS NULL",
                            (since, until, rollback_id))
                if cur.rowcount == 1:
                    self._audit(cur, rollback_id, "bot", "data_loss", None, None,
                                {"since": since.isoformat(), "until": until.isoformat()})

    # ------------------------------------------------------------------ executor lease
    def claim_next(self, *, owner: str, lease_seconds: float,
                   rollback_id: int | None = None, looks_first: bool = False
                   ) -> Rollback | None:
        """Claim one approved (or orphaned executing) rollback; other replicas skip it.
        ``rollback_id``: that one only (``rollback-bot auto`` runs its own request only).
        A parked rollback (``park``) is claimable once its next check is due, or at once
        when someone asked to cancel it. Order: a requested cancel first; then new
        approvals, unparked work (verifying, orphaned) and parked looks by how long they
        are due -- or, with ``looks_first``, the parked looks before the rest. The executor
        alternates the two, so neither a burst of approvals nor a thousand due looks
        starves the other."""
        only = " AND id = %s" if rollback_id is not None else ""
        order = (_LOOKS_FIRST if looks_first else _NEW_FIRST)
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            with conn.transaction():
                cur.execute(
                    "SELECT id FROM rollbacks WHERE state IN ('approved', 'executing', 'verifying')"
                    " AND (lease_expires_at IS NULL OR lease_expires_at < now())"
                    " AND (next_check_at IS NULL OR next_check_at <= now()"
                    "      OR cancel_requested_by IS NOT NULL)" + only + order +
                    " LIMIT 1 FOR UPDATE SKIP LOCKED",
                    (rollback_id,) if rollback_id is not None else None,
                )
                found = cur.fetchone()
                if found is None:
                    return None
                # The next check is only a wake-up time: cleared with the claim, so a
                # rollback whose executor dies after this look is claimed as an orphan,
                # not ordered as a look (``park`` sets it again when it waits on).
                cur.execute(
                    "UPDATE rollbacks SET lease_owner = %s,"
                    " lease_expires_at = now() + make_interval(secs => %s),"
                    " next_check_at = NULL WHERE id = %s RETURNING *",
                    (owner, lease_seconds, found["id"]),
                )
                row = cur.fetchone()
        assert row is not None
        return rollback_from_row(row)

    def heartbeat(self, rollback_id: int, *, owner: str, lease_seconds: float) -> bool:
        """Renew the lease; False: another executor owns it now. ``DatabaseUnavailable``
        when the lease pool cannot reach PostgreSQL in time (nothing is known then)."""
        with self._lease_connection() as conn, conn.cursor() as cur:
            cur.execute(
                "UPDATE rollbacks SET lease_expires_at = now() + make_interval(secs => %s)"
                " WHERE id = %s AND lease_owner = %s",
                (lease_seconds, rollback_id, owner),
            )
            return cur.rowcount == 1

    def release(self, rollback_id: int, *, owner: str) -> None:
        with self._lease_connection() as conn, conn.cursor() as cur:
            cur.execute(
                "UPDATE rollbacks SET lease_owner = NULL, lease_expires_at = NULL"
                " WHERE id = %s AND lease_owner = %s",
                (rollback_id, owner),
            )

    def park(self, rollback_id: int, *, owner: str, check_in: float) -> bool:
        """The running step waits on the platform: journal it ``waiting``, set the
        rollback's next check ``check_in`` seconds from now and give the lease up, in one
        transaction fenced on the lease (False: another executor owns it now, nothing was
        written). Steps run one at a time, so the running step is the ``started`` one."""
        with self._lease_connection() as conn, conn.cursor() as cur:
            with conn.transaction():
                cur.execute(
                    "UPDATE rollbacks SET next_check_at = now() + make_interval(secs => %s),"
                    " lease_owner = NULL, lease_expires_at = NULL"
                    " WHERE id = %s AND lease_owner = %s AND state = 'executing'",
                    (check_in, rollback_id, owner))
                if cur.rowcount != 1:
                    return False
                cur.execute(
                    "UPDATE rollback_steps SET status = 'waiting'"
                    " WHERE rollback_id = %s AND status = 'started'", (rollback_id,))
        return True

    # ------------------------------------------------------------------ steps
    def steps(self, rollback_id: int) -> list[Step]:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                "SELECT * FROM rollback_steps WHERE rollback_id = %s ORDER BY seq", (rollback_id,)
            )
            return [Step(**r) for r in cur.fetchall()]

    def step_started(self, rollback_id: int, seq: int) -> None:
        """Journal *before* acting, so a crash leaves evidence that the step began. The next
        check of a ``waiting`` step (``park``) continues its attempt instead of counting a new
        one: polling a rollout is not a retry and spends none of the retry budget."""
        self._exec(
            "UPDATE rollback_steps SET attempts = attempts"
            " + CASE WHEN status = 'waiting' THEN 0 ELSE 1 END, status = 'started',"
            " started_at = COALESCE(started_at, now()), error = NULL"
            " WHERE rollback_id = %s AND seq = %s",
            (rollback_id, seq),
        )

    def step_progress(self, rollback_id: int, seq: int, result: dict[str, Any]) -> None:
        """Merge facts learned mid-step (e.g. replicas before scale-down) into its result."""
        self._exec(
            "UPDATE rollback_steps SET result = result || %s WHERE rollback_id = %s AND seq = %s",
            (Jsonb(scrub_data(result)), rollback_id, seq),
        )

    def step_finished(
        self, rollback_id: int, seq: int, *, status: str, result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        self._exec(
            "UPDATE rollback_steps SET status = %s, result = result || %s, error = %s,"
            " finished_at = now() WHERE rollback_id = %s AND seq = %s",
            (status, Jsonb(scrub_data(result or {})), None if error is None else scrub(error),
             rollback_id, seq),
        )

    # ------------------------------------------------------------------ audit, dedupe
    def audit(
        self, rollback_id: int | None, *, actor: str, event: str, detail: dict[str, Any]
    ) -> None:
        with self.pool.connection() as conn, conn.cursor() as cur:
            self._audit(cur, rollback_id, actor, event, None, None, detail)

    def audit_events(self, rollback_id: int) -> list[AuditEvent]:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                "SELECT * FROM audit_events WHERE rollback_id = %s ORDER BY id", (rollback_id,)
            )
            return [AuditEvent(**r) for r in cur.fetchall()]

    # Audit events of no rollback (``rollback_id`` NULL), e.g. a ``/rollback diagnose`` run:
    # the same append-only trail, found by event and detail instead of by rollback.
    def record_event(self, *, actor: str, event: str, detail: dict[str, Any]) -> int:
        """Append an audit event of no rollback; returns its id."""
        with self.pool.connection() as conn:
            row = conn.execute(
                "INSERT INTO audit_events (rollback_id, actor, event, detail)"
                " VALUES (NULL, %s, %s, %s) RETURNING id",
                (actor, event, Jsonb(scrub_data(detail)))).fetchone()
        assert row is not None
        return int(row[0])

    def recorded_events(self, event: str, *, detail: dict[str, Any] | None = None,
                        event_id: int | None = None) -> list[AuditEvent]:
        """Audit events of no rollback named ``event``, oldest first; only those whose
        detail contains ``detail`` (JSON containment), or only the one ``event_id``."""
        sql = "SELECT * FROM audit_events WHERE rollback_id IS NULL AND event = %s"
        params: list[Any] = [event]
        if detail is not None:
            sql += " AND detail @> %s"
            params.append(Jsonb(detail))
        if event_id is not None:
            sql += " AND id = %s"
            params.append(event_id)
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(sql + " ORDER BY id", params)
            return [AuditEvent(**r) for r in cur.fetchall()]

    def first_delivery(self, key: str) -> bool:
        """True exactly once per key: Slack retries and double clicks see False."""
        return self._exec(
            "INSERT INTO processed_requests (key) VALUES (%s) ON CONFLICT DO NOTHING", (key,)
        ) == 1

    def known_good_config(self, service: str, platform: str
                          ) -> tuple[dict[str, Any], datetime, int | None] | None:
        """(snapshot, recorded_at, recording rollback id) of the service's known-good config.
        Secret items come back sealed; ``restore_config`` opens them
        (``bot.persistence.sealing``)."""
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT snapshot, recorded_at, rollback_id FROM known_good_config"
                " WHERE service = %s AND platform = %s", (service, platform)).fetchone()
        return (dict(row[0]), row[1], row[2]) if row else None

    def record_known_good_config(self, service: str, platform: str, snapshot: dict[str, Any],
                                 *, rollback_id: int | None) -> None:
        """Record the snapshot with its Secret items sealed: encrypted under the key from
        the environment, or reduced to digests without one. (A completing rollback records
        through ``transition(known_good=...)`` instead, atomically with its completion.)"""
        sealed = sealing.seal(snapshot)
        with self.pool.connection() as conn, conn.cursor() as cur:
            self._upsert_known_good(cur, service, platform, sealed, rollback_id)

    @staticmethod
    def _upsert_known_good(cur: Any, service: str, platform: str, sealed: dict[str, Any],
                           rollback_id: int | None) -> None:
        cur.execute(
            "INSERT INTO known_good_config (service, platform, snapshot, rollback_id)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (service, platform) DO UPDATE SET"
            " snapshot = EXCLUDED.snapshot, rollback_id = EXCLUDED.rollback_id,"
            " recorded_at = now()",
            (service, platform, Jsonb(sealed), rollback_id))

    def reseal_known_good_configs(self, keys: sealing.Keys | None = None) -> int:
        """Seal rows recorded in plain form and move rows to the first key (rotation),
        keeping ``recorded_at`` (plans pin it); returns how many rows were rewritten."""
        keys = keys or sealing.load_keys()
        with self.pool.connection() as conn:
            rows = conn.execute("SELECT service, platform, snapshot, recorded_at"
                                " FROM known_good_config").fetchall()
        changed = 0
        for service, platform, snapshot, recorded_at in rows:
            if not sealing.needs_sealing(snapshot, keys):
                continue
            # Compare-and-set on recorded_at: a snapshot recorded meanwhile is left alone.
            changed += self._exec(
                "UPDATE known_good_config SET snapshot = %s WHERE service = %s"
                " AND platform = %s AND recorded_at = %s",
                (Jsonb(sealing.seal(snapshot, keys)), service, platform, recorded_at))
        return changed

    # ------------------------------------------------------------------ retention
    def purge_processed_requests(self, *, older_than_seconds: float) -> int:
        """Forget Slack delivery ids older than the retry horizon (Slack retries within
        minutes; the default keeps a day)."""
        return self._exec(
            "DELETE FROM processed_requests"
            " WHERE created_at < now() - make_interval(secs => %s)", (older_than_seconds,))

    def purge_outbox(self, *, older_than_seconds: float) -> int:
        """Forget sent posts of rollbacks that finished long ago: nothing re-runs their
        jobs any more, so the keys that stop a double post have no work left."""
        return self._exec(
            "DELETE FROM outbox o WHERE o.status = 'sent'"
            " AND o.sent_at < now() - make_interval(secs => %s)"
            " AND (o.rollback_id IS NULL OR EXISTS (SELECT 1 FROM rollbacks r"
            "      WHERE r.id = o.rollback_id AND r.state = ANY(%s)"
            "      AND r.finished_at < now() - make_interval(secs => %s)))",
            (older_than_seconds, [s.value for s in TERMINAL], older_than_seconds))

    def request_cancel(self, rollback_id: int, *, actor: str) -> Rollback | None:
        """Ask the executor of an *executing* rollback to stop (audited); None when it is no
        longer executing (its steps finished first)."""
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            with conn.transaction():
                cur.execute(
                    "UPDATE rollbacks SET cancel_requested_by = %s, updated_at = now()"
                    " WHERE id = %s AND state = %s AND cancel_requested_by IS NULL"
                    " RETURNING *", (actor, rollback_id, State.EXECUTING.value))
                row = cur.fetchone()
                if row is None:
                    return None
                self._audit(cur, rollback_id, actor, "cancel_requested", None, None, {})
        return rollback_from_row(row)

    # ------------------------------------------------------------------ known-bad revisions
    def mark_known_bad(self, rb: Rollback, *, actor: str) -> bool:
        """Record the revision ``rb`` moves away from as known-bad (idempotent; a cleared
        mark is set again). Returns whether a new mark was made."""
        if rb.current_revision is None or rb.current_revision.id == rb.target_revision.id:
            return False
        rev = rb.current_revision
        with self.pool.connection() as conn, conn.cursor() as cur:
            with conn.transaction():
                cur.execute(
                    "INSERT INTO known_bad_revisions (service, platform, revision_id, revision,"
                    " rollback_id) VALUES (%s, %s, %s, %s, %s)"
                    " ON CONFLICT (service, platform, revision_id) DO UPDATE SET"
                    " rollback_id = EXCLUDED.rollback_id, marked_at = now(),"
                    " cleared_at = NULL, cleared_by = NULL"
                    " WHERE known_bad_revisions.cleared_at IS NOT NULL",
                    (rb.service, rb.platform, rev.id, Jsonb(rev.to_dict()), rb.id))
                marked = cur.rowcount == 1
                if marked:
                    self._audit(cur, rb.id, actor, "marked_known_bad", None, None,
                                {"revision": rev.to_dict()})
        return marked

    def known_bad(self, service: str, platform: str) -> dict[str, KnownBad]:
        """Active known-bad marks of a service on a platform, by revision id, each with the
        forward fix recorded for the rollback that made it (migration 015)."""
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                "SELECT k.service, k.platform, k.revision_id, k.revision, k.rollback_id,"
                " k.marked_at, f.link AS forward_fix FROM known_bad_revisions k"
                " LEFT JOIN forward_fixes f ON f.rollback_id = k.rollback_id"
                " AND f.status = 'given'"
                " WHERE k.service = %s AND k.platform = %s"
                " AND k.cleared_at IS NULL ORDER BY k.marked_at", (service, platform))
            return {r["revision_id"]: KnownBad(**r) for r in cur.fetchall()}

    def clear_known_bad(self, service: str, platform: str, revision_id: str, *,
                        actor: str, reason: str) -> KnownBad | None:
        """Clear one mark (audited with who and why); None when there was no active mark."""
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            with conn.transaction():
                cur.execute(
                    "UPDATE known_bad_revisions SET cleared_at = now(), cleared_by = %s"
                    " WHERE service = %s AND platform = %s AND revision_id = %s"
                    " AND cleared_at IS NULL RETURNING service, platform, revision_id,"
                    " revision, rollback_id, marked_at", (actor, service, platform, revision_id))
                row = cur.fetchone()
                if row is None:
                    return None
                self._audit(cur, row["rollback_id"], actor, "cleared_known_bad", None, None,
                            {"service": service, "platform": platform,
                             "revision": row["revision"], "reason": reason})
        return KnownBad(**row)

    def last_completed_to(self, service: str, platform: str, revision_id: str
                          ) -> Rollback | None:
        """The newest completed rollback of ``service`` that pinned ``revision_id``."""
        rows = self._select(
            "SELECT * FROM rollbacks WHERE service = %s AND platform = %s AND state = %s"
            " AND target_revision->>'id' = %s ORDER BY id DESC LIMIT 1",
            (service, platform, State.COMPLETED.value, revision_id))
        return rows[0] if rows else None

    def last_decided_from(self, service: str, platform: str, revision_id: str,
                          states: Iterable[State], *, withdrawn_by: str) -> Rollback | None:
        """The newest rollback of ``service`` that moved away from ``revision_id`` and ended
        in one of ``states``; a request ``withdrawn_by`` cancelled itself is not a decision."""
        rows = self._select(
            "SELECT * FROM rollbacks r WHERE service = %s AND platform = %s"
            " AND state = ANY(%s) AND current_revision->>'id' = %s"
            " AND NOT (state = 'cancelled' AND EXISTS (SELECT 1 FROM audit_events a"
            "  WHERE a.rollback_id = r.id AND a.event = 'cancel' AND a.actor = %s))"
            " ORDER BY id DESC LIMIT 1",
            (service, platform, [s.value for s in states], revision_id, withdrawn_by))
        return rows[0] if rows else None

    @contextmanager
    def _lease_connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection of the lease pool; the driver's "cannot reach the database" (a
        ``PoolTimeout`` included) becomes ``DatabaseUnavailable``, which the executor
        answers by refusing to write rather than writing unfenced."""
        try:
            with self.lease_pool.connection() as conn:
                yield conn
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        """Close the pools (the lease pool too when it is its own) and the process's claim
        owner on this database when no other store uses it (``claims.release_owner``: its
        liveness connection is not pooled, so closing the pools alone left it open).
        Idempotent: a second close must not release another store's use of the owner."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        claims.release_owner(self.pool)
        if self.lease_pool is not self.pool:
            self.lease_pool.close()
        self.pool.close()

    def ping(self) -> bool:
        with self.pool.connection(timeout=2) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)

    @staticmethod
    def _audit(cur: Any, rollback_id: int | None, actor: str, event: str,
               from_state: str | None, to_state: str | None, detail: dict[str, Any]) -> None:
        cur.execute(
            "INSERT INTO audit_events (rollback_id, actor, event, from_state, to_state, detail)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (rollback_id, actor, event, from_state, to_state, Jsonb(scrub_data(detail))),
        )

    def _exec(self, sql: str, params: Sequence[Any]) -> int:
        with self.pool.connection() as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.rowcount



def _state_literals(states: Iterable[State | str]) -> str:
    """``'a', 'b'`` for an IN list. Safe as SQL text: every value is a ``State`` member's
    (``State(...)`` refuses anything else), never user input."""
    values = sorted({State(s).value for s in states})
    if not values:
        return "NULL"  # ``state IN (NULL)``: no row, like ``= ANY('{}')``
    return ", ".join(f"'{v}'" for v in values)


def _scrubbed_column(key: str, value: Any) -> Any:
    return scrub(value) if key == "last_error" and isinstance(value, str) else value
