"""Persistence of forward-fix tracking: one row per completed rollback (migration 015).

Writes are idempotent (``ON CONFLICT``) or compare-and-set on ``status``/``seq``: the jobs
calling them may re-run, and two people may answer at once (the first one wins). A decision
and its audit event are written in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from bot.observability.scrub import scrub_data


@dataclass(frozen=True)
class ForwardFixRecord:
    rollback_id: int
    status: str  # open | given | waived | expired
    seq: int
    next_at: datetime
    give_up_at: datetime
    link: str | None
    root_cause: str | None
    reason: str | None
    decided_by: str | None
    decided_at: datetime | None
    created_at: datetime


class ForwardFixStore:
    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def add(self, *, rollback_id: int, next_at: datetime, give_up_at: datetime,
            created_at: datetime) -> ForwardFixRecord | None:
        """The rollback's row; None if it existed already (a re-run of the completion)."""
        row = self._one(
            "INSERT INTO forward_fixes (rollback_id, next_at, give_up_at, created_at)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (rollback_id) DO NOTHING RETURNING *",
            (rollback_id, next_at, give_up_at, created_at))
        return ForwardFixRecord(**row) if row else None

    def get(self, rollback_id: int) -> ForwardFixRecord | None:
        row = self._one("SELECT * FROM forward_fixes WHERE rollback_id = %s", (rollback_id,))
        return ForwardFixRecord(**row) if row else None

    def for_rollbacks(self, rollback_ids: Iterable[int]) -> dict[int, ForwardFixRecord]:
        ids = [int(i) for i in rollback_ids if i is not None]
        if not ids:
            return {}
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute("SELECT * FROM forward_fixes WHERE rollback_id = ANY(%s)", (ids,))
            return {r["rollback_id"]: ForwardFixRecord(**r) for r in cur.fetchall()}

    def advance(self, rollback_id: int, *, from_seq: int, next_at: datetime
                ) -> ForwardFixRecord | None:
        row = self._one(
            "UPDATE forward_fixes SET seq = seq + 1, next_at = %s WHERE rollback_id = %s"
            " AND seq = %s AND status = 'open' RETURNING *", (next_at, rollback_id, from_seq))
        return ForwardFixRecord(**row) if row else None

    def decide(self, rollback_id: int, *, status: str, by: str, at: datetime,
               link: str | None = None, root_cause: str | None = None,
               reason: str | None = None, reopen_expired: bool = False
               ) -> ForwardFixRecord | None:
        """Close an open row (given, waived or expired) and audit it in one transaction;
        None when it was not open any more (someone else answered first). An answer after
        the bot stopped asking (``reopen_expired``) is still recorded."""
        states = ["open", "expired"] if reopen_expired else ["open"]
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            with conn.transaction():
                cur.execute(
                    "UPDATE forward_fixes SET status = %s, link = %s, root_cause = %s,"
                    " reason = %s, decided_by = %s, decided_at = %s"
                    " WHERE rollback_id = %s AND status = ANY(%s) RETURNING *",
                    (status, link, root_cause, reason, by, at, rollback_id, states))
                row = cur.fetchone()
                if row is None:
                    return None
                detail: dict[str, Any] = {"link": link, "root_cause": root_cause,
                                          "reason": reason}
                cur.execute(
                    "INSERT INTO audit_events (rollback_id, actor, event, detail)"
                    " VALUES (%s, %s, %s, %s)",
                    (rollback_id, by, f"forward_fix_{status}",
                     Jsonb(scrub_data({k: v for k, v in detail.items() if v is not None}))))
        return ForwardFixRecord(**row)

    def _one(self, sql: str, params: tuple[Any, ...]) -> dict[str, Any] | None:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(sql, params)
            return cur.fetchone()
