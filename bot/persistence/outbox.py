"""Slack posts that happen once: keyed, recorded in ``outbox``, reconciled after a crash.

Notices are posted by their caller through ``notice``; the executor's thread lines are
queued (``queue_line``: the message as JSON in ``line``, ordered by ``line_order``) and
posted later by ``bot.usecases.thread_delivery`` through ``post_line``, the same once-only
path. A queued notice (``{"notice": ...}`` in ``line``) is posted by ``post_queued_notice``
as it reads when the deliverer claims it, so an ``edit`` made while it waited is what Slack
shows."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from bot.domain.message_codec import decode_message, encode
from bot.domain.models import Rollback
from bot.domain.ports import NO_CRASH_POINTS, Chat, CrashPoints, Notice, scrubbed_facts
from bot.persistence import claims
from bot.persistence.claims import ClaimHeld

log = logging.getLogger(__name__)

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
    """A key is claimed (``bot.persistence.claims``: two replicas never post it at once)
    with its attempt counted, committed *before* the Slack call, and no database
    connection is held during the call; it is marked sent after, fenced on the claim. A
    second poster of a claimed key waits for the post and returns its ts. A run that
    finds an attempt but no mark (its poster died mid-call, which frees its claim) first
    looks the message up in Slack by the key it carries, so no post is lost or doubled."""

    def __init__(self, pool: ConnectionPool, chat: Chat, *,
                 crash_points: CrashPoints = NO_CRASH_POINTS,
                 claim_seconds: float = claims.SLACK_CLAIM_SECONDS) -> None:
        self.pool = pool
        self.chat = chat
        self.crash_points = crash_points
        self.claim_seconds = claim_seconds  # how long a poster's claim outlives no answer

    def notice(self, rb: Rollback, notice: Notice, *, channel: str | None = None,
               wait: bool = True) -> str:
        """Post ``notice`` unless its key was already posted; returns the message ts.
        ``wait=False``: raise ``ClaimHeld`` instead of waiting for another poster."""
        return self._once(
            notice.key, rb, channel,
            send=lambda: self.chat.notice(rb, notice, channel=channel),
            lookup=lambda: self.chat.find_notice(rb, notice.key, channel=channel),
            wait=wait,
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
        when nothing is left to do: ``key`` was queued before (a resumed executor saying it
        again), or it was posted already. A row under ``key`` that is no line and not sent
        (a direct post that failed, or is under way: its claim keeps the two apart) takes
        the line, so the deliverer sends it once, looking in Slack first if an attempt was
        made; left as it was, nothing would ever post it. E-mail rows are never lines."""
        with self.pool.connection() as conn:
            row = conn.execute(
                "INSERT INTO outbox (key, rollback_id, line, line_order)"
                " VALUES (%s, %s, %s, nextval('outbox_line_order'))"
                " ON CONFLICT (key) DO UPDATE SET line = EXCLUDED.line,"
                " line_order = EXCLUDED.line_order, status = 'sending',"
                " rollback_id = COALESCE(outbox.rollback_id, EXCLUDED.rollback_id)"
                " WHERE outbox.line IS NULL AND outbox.mail IS NULL"
                " AND outbox.status <> 'sent'"
                " RETURNING key",
                (key, rollback_id, Jsonb(line))).fetchone()
        return row is not None

    def queued_lines(self, rollback_id: int | None = None, *, limit: int = 200
                     ) -> list[QueuedLine]:
        """Lines not yet posted, oldest first (one rollback's, or everyone's), but those of
        a rollback held off Slack (``hold``) by any replica."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT key, rollback_id, line, attempts FROM outbox"
                " WHERE line IS NOT NULL AND status = 'sending'"
                " AND (%s::bigint IS NULL OR rollback_id = %s)"
                " AND NOT EXISTS (SELECT 1 FROM slack_holds h"
                " WHERE h.rollback_id = outbox.rollback_id AND h.until > now())"
                " ORDER BY line_order LIMIT %s",
                (rollback_id, rollback_id, limit)).fetchall()
        return [QueuedLine(str(k), int(r), dict(line), int(a)) for k, r, line, a in rows]

    # ------------------------------------------------------------------ holds
    def hold(self, rollback_id: int, seconds: float) -> None:
        """Keep the rollback's lines off Slack for every replica's deliverer, at most
        ``seconds`` (the database's clock: replicas' clocks never compare)."""
        with self.pool.connection() as conn:
            conn.execute("DELETE FROM slack_holds WHERE until <= now()")  # lapsed ones
            conn.execute(
                "INSERT INTO slack_holds (rollback_id, until)"
                " VALUES (%s, now() + make_interval(secs => %s))"
                " ON CONFLICT (rollback_id) DO UPDATE SET until = EXCLUDED.until",
                (rollback_id, seconds))

    def release_hold(self, rollback_id: int) -> bool:
        """End the rollback's hold for every replica; False when there was none."""
        with self.pool.connection() as conn:
            cur = conn.execute("DELETE FROM slack_holds WHERE rollback_id = %s",
                               (rollback_id,))
        return cur.rowcount > 0

    def held(self) -> set[int]:
        """The rollbacks held off Slack now, by any replica (lapsed holds are not)."""
        with self.pool.connection() as conn:
            rows = conn.execute("SELECT rollback_id FROM slack_holds"
                                " WHERE until > now()").fetchall()
        return {int(r[0]) for r in rows}

    def post_line(self, rb: Rollback, key: str, *, send: Callable[[], None],
                  wait: bool = True) -> None:
        """Post a queued line once: ``send`` posts it tagged with ``key``, and a run that
        finds an interrupted attempt looks the line up in the thread first. ``wait=False``:
        raise ``ClaimHeld`` instead of waiting for another poster of the same line."""
        def attempt() -> str:
            self.crash_points.sending(key)  # a crash test may die here: queued, not posted
            send()
            return ""

        self._once(key, rb, None, send=attempt,
                   lookup=lambda: self.chat.find_notice(rb, key), wait=wait)

    def post_queued_notice(self, rb: Rollback, key: str, *, wait: bool = True) -> str:
        """Post the notice queued under ``key`` once, as it reads now: its content is read
        under the claim, which an ``edit`` waits for, so the post carries every edit made
        before it and an edit after it finds the ts. A run that finds the post of an
        interrupted attempt re-renders it: an edit may have come after that attempt."""
        def current() -> Notice:
            with self.pool.connection() as conn:
                row = conn.execute("SELECT line FROM outbox WHERE key = %s",
                                   (key,)).fetchone()
            if row is None or not row[0] or "notice" not in row[0]:
                raise LookupError(f"outbox {key}: no queued notice")
            return Notice(key, decode_message(row[0]["notice"]))

        def lookup() -> str | None:
            found = self.chat.find_notice(rb, key)
            if found is not None:
                self.chat.edit_notice(rb, found, current())
            return found

        return self._once(key, rb, None, send=lambda: self.chat.notice(rb, current()),
                          lookup=lookup, wait=wait)

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
        """Re-render a notice (same key) in place; False if there is nothing to edit.

        Posted: edited in Slack. Queued for the deliverer and not posted yet: the queued
        content is rewritten, so the post shows the edit. Being posted right now (claimed,
        queued or direct): wait for that post, then edit it in Slack, or rewrite the queue
        if it failed. A direct post that failed and is not queued: nothing to edit. The
        rewrite is fenced on the claim (``claimable``) in one statement, so it never lands
        between the deliverer reading the content and marking it sent."""
        stored = Jsonb({"notice": encode(scrubbed_facts(notice.message))})

        def settle() -> str | bool | None:
            """The ts when posted; True when the queue was rewritten; False when there is
            nothing to edit; None while a poster holds the key."""
            with self.pool.connection() as conn:
                if conn.execute(
                        "UPDATE outbox SET line = %s WHERE key = %s AND status = 'sending'"
                        " AND line ? 'notice'"
                        f" AND {claims.claimable('outbox')} RETURNING key",
                        (stored, notice.key)).fetchone() is not None:
                    return True
                row = conn.execute(
                    "SELECT status, ts, line ? 'notice',"
                    f" {claims.claimable('outbox')} FROM outbox WHERE key = %s",
                    (notice.key,)).fetchone()
            if row is None:
                return False
            status, ts, queued, free = row
            if status == "sent":
                return str(ts) if ts else False
            # Claimed (a post under way, queued or direct): its ts comes with its mark.
            # A queued one found free here was freed since the rewrite: look again.
            return None if status == "sending" and (queued or not free) else False

        # (mypy solves wait_for's T over a union with None as object: say it)
        got = cast("str | bool", claims.wait_for(settle, timeout=self.claim_seconds + 30,
                                                 what=f"outbox {notice.key} (edit)"))
        if isinstance(got, bool):
            if got:
                log.info("outbox %s: edited while queued", notice.key)
            return got
        self.chat.edit_notice(rb, got, notice, channel=channel)
        return True

    def _once(self, key: str, rb: Rollback | None, channel: str | None, *,
              send: Callable[[], str], lookup: Callable[[], str | None],
              wait: bool = True) -> str:
        token = claims.owner_for(self.pool).claim_token()
        if wait:
            # Someone else's live claim: wait for it to be sent (its ts is ours) or released.
            got = claims.wait_for(lambda: self._claim(key, rb, channel, token),
                                  timeout=self.claim_seconds + 30, what=f"outbox {key}")
        else:
            # The deliverer: one look. A claim whose holder could not release it (a database
            # blip) stands until it expires, and a deliverer waiting on it would hold every
            # other rollback's lines that long.
            maybe = self._claim(key, rb, channel, token)
            if maybe is None:
                raise ClaimHeld(key)
            got = maybe
        if isinstance(got, str):
            return got
        try:
            if got:  # an earlier attempt may have reached Slack: look before posting
                found = lookup()
                if found is not None:
                    log.info("outbox %s: found the post of an interrupted attempt", key)
                    self._mark_sent(key, token, found)
                    return found
            ts = send()
            self.crash_points.posted(key)  # a crash test may die here
            self._mark_sent(key, token, ts)
            return str(ts)
        except BaseException:
            self._release(key, token)
            raise

    def _claim(self, key: str, rb: Rollback | None, channel: str | None, token: str
               ) -> str | int | None:
        """Claim ``key`` and count the attempt, committed before the call: the attempts
        before this one (int); or the ts when it was sent (str); None while another live
        claim holds it."""
        with self.pool.connection() as conn:
            row = conn.execute(
                "INSERT INTO outbox (key, rollback_id, channel, attempts, claimed_by,"
                " claim_expires_at) VALUES (%s, %s, %s, 1, %s,"
                " now() + make_interval(secs => %s))"
                " ON CONFLICT (key) DO UPDATE SET attempts = outbox.attempts + 1,"
                " claimed_by = EXCLUDED.claimed_by,"
                " claim_expires_at = EXCLUDED.claim_expires_at"
                f" WHERE outbox.status <> 'sent' AND {claims.claimable('outbox')}"
                " RETURNING attempts",
                (key, rb.id if rb is not None else None, channel, token,
                 self.claim_seconds)).fetchone()
            if row is not None:
                return int(row[0]) - 1
            row = conn.execute("SELECT status, ts FROM outbox WHERE key = %s",
                               (key,)).fetchone()
        if row is not None and row[0] == "sent":
            return str(row[1] or "")
        return None

    def _mark_sent(self, key: str, token: str, ts: str) -> None:
        with self.pool.connection() as conn:
            cur = conn.execute(
                "UPDATE outbox SET status = 'sent', ts = %s, sent_at = now(),"
                " claimed_by = NULL, claim_expires_at = NULL"
                " WHERE key = %s AND claimed_by = %s", (ts, key, token))
        if cur.rowcount != 1:  # outlived its claim: the taker looks the post up first
            log.warning("outbox %s: posted after its claim was taken over", key)
        claims.released()

    def _release(self, key: str, token: str) -> None:
        """The call failed: the row stays 'sending', its attempt counted, free to retry."""
        try:
            with self.pool.connection() as conn:
                conn.execute("UPDATE outbox SET claimed_by = NULL, claim_expires_at = NULL"
                             " WHERE key = %s AND claimed_by = %s", (key, token))
        except Exception:  # the claim expires on its own; the call's error matters more
            log.exception("outbox %s: could not release the claim", key)
        claims.released()
