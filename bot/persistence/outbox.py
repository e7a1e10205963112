"""Slack posts that happen once: keyed, recorded in ``outbox``, reconciled after a crash.

Notices are posted by their caller through ``notice``; the executor's thread lines are
queued (``queue_line``: the message as JSON in ``line``, ordered by ``line_order``) and
posted later by ``bot.usecases.thread_delivery`` through ``post_line``, the same once-only
path."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from bot.domain.models import Rollback
from bot.domain.ports import NO_CRASH_POINTS, Chat, CrashPoints, Notice

log = logging.getLogger(__name__)

OUTBOX_LOCK_NAMESPACE = 0x6F757462  # "outb": first half of the two-int advisory lock key
# A thread line Slack keeps refusing (the channel archived, the bot removed) is given up
# after this many attempts, so the lines queued behind it in its thread still go out.
LINE_MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class QueuedLine:
    """A thread line waiting in the outbox: ``line`` is the stored message and mention."""

    key: str
    rollback_id: int
    line: dict[str, Any]
    attempts: int


class Outbox:
    """A key is claimed under a PostgreSQL advisory lock (two replicas never post it at
    once) and its attempt committed *before* the Slack call; it is marked sent after. A run
    that finds an attempt but no mark (its poster died mid-call) first looks the message up
    in Slack by the key it carries, so no post is lost or doubled."""

    def __init__(self, pool: ConnectionPool, chat: Chat, *,
                 crash_points: CrashPoints = NO_CRASH_POINTS) -> None:
        self.pool = pool
        self.chat = chat
        self.crash_points = crash_points

    def notice(self, rb: Rollback, notice: Notice, *, channel: str | None = None) -> str:
        """Post ``notice`` unless its key was already posted; returns the message ts."""
        return self._once(
            notice.key, rb, channel,
            send=lambda: self.chat.notice(rb, notice, channel=channel),
            lookup=lambda: self.chat.find_notice(rb, notice.key, channel=channel),
        )

    def upload(self, rb: Rollback, *, filename: str, content: bytes, title: str) -> None:
        """Attach a file once per rollback; the file name is the key Slack shows back."""
        def send() -> str:
            self.chat.upload(rb, filename=filename, content=content, title=title)
            return ""

        self._once(f"file:{rb.id}:{filename}", rb, None, send=send,
                   lookup=lambda: self.chat.find_notice(rb, filename))

    def channel_notice(self, channel: str, notice: Notice) -> str:
        """Post ``notice`` to ``channel`` (no rollback: e.g. the release watcher's proposal)
        unless its key was already posted; returns the message ts. The row keeps the id
        Slack gave the channel (``sent_where``): editing the post needs it, not a name."""
        posted: list[str] = []

        def send() -> str:
            channel_id, ts = self.chat.post_notice(channel, notice)
            posted.append(channel_id)
            return ts

        ts = self._once(notice.key, None, channel, send=send,
                        lookup=lambda: self.chat.find_channel_notice(channel, notice.key))
        if posted:
            with self.pool.connection() as conn:
                conn.execute("UPDATE outbox SET channel = %s WHERE key = %s",
                             (posted[0], notice.key))
        return ts

    def channel_upload(self, channel: str, thread_ts: str, *, key: str, filename: str,
                       content: bytes, title: str) -> None:
        """Attach a file to a channel thread once per ``key`` (a crash mid-upload may
        attach it twice: thread files are not looked up)."""
        def send() -> str:
            self.chat.upload_to(channel, thread_ts, filename=filename, content=content,
                                title=title)
            return ""

        self._once(key, None, channel, send=send, lookup=lambda: None)

    # ------------------------------------------------------------------ thread lines
    def queue_line(self, rollback_id: int, key: str, line: dict[str, Any]) -> bool:
        """Queue a thread line for the deliverer (``bot.usecases.thread_delivery``); False
        when ``key`` was queued before (a resumed executor saying it again)."""
        with self.pool.connection() as conn:
            row = conn.execute(
                "INSERT INTO outbox (key, rollback_id, line, line_order)"
                " VALUES (%s, %s, %s, nextval('outbox_line_order'))"
                " ON CONFLICT (key) DO NOTHING RETURNING key",
                (key, rollback_id, Jsonb(line))).fetchone()
        return row is not None

    def queued_lines(self, rollback_id: int | None = None, *, limit: int = 200
                     ) -> list[QueuedLine]:
        """Lines not yet posted, oldest first (one rollback's, or everyone's)."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT key, rollback_id, line, attempts FROM outbox"
                " WHERE line IS NOT NULL AND status = 'sending'"
                " AND (%s::bigint IS NULL OR rollback_id = %s)"
                " ORDER BY line_order LIMIT %s",
                (rollback_id, rollback_id, limit)).fetchall()
        return [QueuedLine(str(k), int(r), dict(line), int(a)) for k, r, line, a in rows]

    def post_line(self, rb: Rollback, key: str, *, send: Callable[[], None]) -> None:
        """Post a queued line once: ``send`` posts it tagged with ``key``, and a run that
        finds an interrupted attempt looks the line up in the thread first."""
        def attempt() -> str:
            self.crash_points.sending(key)  # a crash test may die here: queued, not posted
            send()
            return ""

        self._once(key, rb, None, send=attempt,
                   lookup=lambda: self.chat.find_notice(rb, key))

    def give_up_line(self, key: str, error: str) -> None:
        with self.pool.connection() as conn:
            conn.execute("UPDATE outbox SET status = 'failed', last_error = %s WHERE key = %s"
                         " AND status = 'sending'", (error[:1000], key))

    def sent_ts(self, key: str) -> str | None:
        with self.pool.connection() as conn:
            row = conn.execute("SELECT ts FROM outbox WHERE key = %s AND status = 'sent'",
                               (key,)).fetchone()
        return str(row[0]) if row and row[0] else None

    def sent_where(self, key: str) -> tuple[str, str] | None:
        """(channel, ts) of a sent channel notice: the channel's id when this process
        posted it (a post found again after a crash keeps the channel as configured)."""
        with self.pool.connection() as conn:
            row = conn.execute("SELECT channel, ts FROM outbox WHERE key = %s"
                               " AND status = 'sent'", (key,)).fetchone()
        if not row or not row[0] or not row[1]:
            return None
        return str(row[0]), str(row[1])

    def edit(self, rb: Rollback, notice: Notice, *, channel: str | None = None) -> bool:
        """Re-render an already posted notice (same key) in place; False if never posted."""
        ts = self.sent_ts(notice.key)
        if ts is None:
            return False
        self.chat.edit_notice(rb, ts, notice, channel=channel)
        return True

    def _once(self, key: str, rb: Rollback | None, channel: str | None, *,
              send: Callable[[], str], lookup: Callable[[], str | None]) -> str:
        with self.pool.connection() as conn:
            # Session lock on a pooled autocommit connection: released below, or by the
            # server when this process dies and the connection drops.
            conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))",
                         (OUTBOX_LOCK_NAMESPACE, key))
            try:
                row = conn.execute(
                    "INSERT INTO outbox (key, rollback_id, channel) VALUES (%s, %s, %s)"
                    " ON CONFLICT (key) DO UPDATE SET key = EXCLUDED.key"
                    " RETURNING status, attempts, ts",
                    (key, rb.id if rb is not None else None, channel)).fetchone()
                assert row is not None
                status, attempts, ts = row
                if status == "sent":
                    return str(ts or "")
                if attempts:
                    found = lookup()
                    if found is not None:
                        log.info("outbox %s: found the post of an interrupted attempt", key)
                        self._mark_sent(conn, key, found)
                        return found
                conn.execute("UPDATE outbox SET attempts = attempts + 1 WHERE key = %s", (key,))
                ts = send()
                self.crash_points.posted(key)  # a crash test may die here
                self._mark_sent(conn, key, ts)
                return str(ts)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))",
                             (OUTBOX_LOCK_NAMESPACE, key))

    @staticmethod
    def _mark_sent(conn: psycopg.Connection[Any], key: str, ts: str) -> None:
        conn.execute(
            "UPDATE outbox SET status = 'sent', ts = %s, sent_at = now() WHERE key = %s",
            (ts, key))

