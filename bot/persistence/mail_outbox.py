"""E-mails that are sent once: rendered into an ``outbox`` row when queued, sent from it.

The row is the outbox's (``bot.persistence.outbox``: one key, one row, ``attempts`` and a
claim committed before the call, ``sent`` after it, no connection held in between), with
the message itself in ``mail``: what is sent, Message-ID and Date included, is fixed when
the row is created, never re-rendered.

What this can promise, SMTP being what it is (no way to ask a relay "did you take the
message with this id?", unlike Slack's look-up by key):

* a row is marked ``sent`` only after the relay answered 250 to the end of DATA
  (RFC 5321 4.1.1.4: the relay has then taken responsibility for delivering it);
* a crash after the row was rendered and before the SMTP session leaves ``attempts``
  counted and the row ``sending``: the next run sends it, once;
* a crash after the relay's 250 and before the row is marked sends the message again on
  the next run, with the same Message-ID (RFC 5322 3.6.4), which lets receiving systems
  recognise the duplicate (some, Gmail among them, drop it). This window is one database
  UPDATE wide; it cannot be closed from the sending side.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from bot.observability.scrub import scrub
from bot.persistence import claims
from bot.persistence.claims import ClaimHeld

MAIL_CHANNEL = "email"  # the ``channel`` of an e-mail row (a Slack row names a channel)


@dataclass(frozen=True)
class Mail:
    """A rendered message, exactly as it goes out."""

    message_id: str  # "<...@domain>", made when the row is created
    date: str  # RFC 5322 date, made with it
    sender: str  # the From header
    envelope_from: str  # MAIL FROM
    recipients: tuple[str, ...]
    subject: str
    body: str  # plain text, sent as UTF-8
    # An iCalendar attachment (RFC 5545 text) and its file name; "" for none. Rows written
    # before this field existed read back with the default.
    calendar: str = ""
    calendar_name: str = ""

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "recipients": list(self.recipients)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Mail:
        return cls(**{**data, "recipients": tuple(data["recipients"])})


@dataclass(frozen=True)
class Pending:
    """A row claimed for sending: the mail, which attempt this is (1 = the first), and the
    claim's token (the marks below, given it, change the row only while it is ours)."""

    key: str
    mail: Mail
    attempt: int
    claim: str | None = None


class _Nothing:
    """Nothing to send under the key: sent, failed, or no such e-mail."""


# An SMTP session is a dozen commands (EHLO, STARTTLS, AUTH, MAIL, RCPT per recipient,
# DATA...), each timed out at up to 120 s (``smtp.timeout_seconds``,
# bot/domain/mail_config.py): a claim outlasts them all, so a slow relay's message is not
# sent a second time by another runner meanwhile.
MAIL_CLAIM_SECONDS = 1800.0
# A mark given the claim's token changes the row only while the claim is still ours.
_FENCE = " AND (%s::text IS NULL OR claimed_by = %s)"


class MailOutbox:
    def __init__(self, pool: ConnectionPool, *,
                 claim_seconds: float = MAIL_CLAIM_SECONDS) -> None:
        self.pool = pool
        self.claim_seconds = claim_seconds

    def add(self, key: str, *, rollback_id: int | None, mail: Mail) -> Mail:
        """Queue ``mail`` under ``key`` unless a row exists; returns the stored mail (the
        first rendering wins: a re-run keeps its Message-ID)."""
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO outbox (key, rollback_id, channel, mail) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (key) DO NOTHING",
                (key, rollback_id, MAIL_CHANNEL, Jsonb(mail.to_json())))
            row = conn.execute("SELECT mail FROM outbox WHERE key = %s", (key,)).fetchone()
        if row is None or row[0] is None:
            raise ValueError(f"outbox row {key} is not an e-mail")
        return Mail.from_json(dict(row[0]))

    @contextlib.contextmanager
    def sending(self, key: str, *, wait: bool = True) -> Iterator[Pending | None]:
        """Claim ``key`` for one attempt: None when it is sent, failed or unknown. The
        attempt and the claim (``bot.persistence.claims``) are committed before the caller
        talks to the relay, and no connection is held while it does; a second runner waits
        for the first to finish, then claims what is left (a transient failure's retry).
        ``wait=False``: raise ``ClaimHeld`` instead of waiting (a scheduler job, whose
        worker would otherwise be held for as long as the other runner's SMTP session)."""
        token = claims.owner_for(self.pool).claim_token()
        def claim() -> Pending | _Nothing | None:
            return self._claim(key, token)

        if wait:
            got = claims.wait_for(claim, timeout=self.claim_seconds + 30,
                                  what=f"e-mail {key}")
        else:
            maybe = claim()
            if maybe is None:
                raise ClaimHeld(key)
            got = maybe
        if not isinstance(got, Pending):
            yield None
            return
        try:
            yield got
        finally:
            self._exec("UPDATE outbox SET claimed_by = NULL, claim_expires_at = NULL"
                       " WHERE key = %s AND claimed_by = %s", (key, token))
            claims.released()

    def _claim(self, key: str, token: str) -> Pending | _Nothing | None:
        with self.pool.connection() as conn:
            row = conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, claimed_by = %s,"
                " claim_expires_at = now() + make_interval(secs => %s)"
                " WHERE key = %s AND status = 'sending' AND mail IS NOT NULL"
                f" AND {claims.claimable('outbox')} RETURNING attempts, mail",
                (token, self.claim_seconds, key)).fetchone()
            if row is not None:
                return Pending(key, Mail.from_json(dict(row[1])), int(row[0]), token)
            row = conn.execute("SELECT 1 FROM outbox WHERE key = %s AND status = 'sending'"
                               " AND mail IS NOT NULL", (key,)).fetchone()
        return None if row is not None else _Nothing()  # None: claimed by a live runner

    def mark_sent(self, key: str, *, message_id: str, claim: str | None = None) -> None:
        self._exec("UPDATE outbox SET status = 'sent', ts = %s, sent_at = now(),"
                   " last_error = NULL WHERE key = %s" + _FENCE,
                   (message_id, key, claim, claim))

    def mark_failed(self, key: str, *, error: str, claim: str | None = None) -> None:
        """A permanent refusal: the row is never tried again."""
        self._exec("UPDATE outbox SET status = 'failed', last_error = %s WHERE key = %s"
                   + _FENCE, (scrub(error)[:500], key, claim, claim))

    def note_error(self, key: str, *, error: str, claim: str | None = None) -> None:
        """A transient failure: the row stays ``sending`` for the next attempt."""
        self._exec("UPDATE outbox SET last_error = %s WHERE key = %s" + _FENCE,
                   (scrub(error)[:500], key, claim, claim))

    def status(self, key: str) -> tuple[str, int, str | None] | None:
        """(status, attempts, last error) of ``key``."""
        with self.pool.connection() as conn:
            row = conn.execute("SELECT status, attempts, last_error FROM outbox"
                               " WHERE key = %s", (key,)).fetchone()
        return (str(row[0]), int(row[1]), row[2]) if row else None

    def mail(self, key: str) -> Mail | None:
        with self.pool.connection() as conn:
            row = conn.execute("SELECT mail FROM outbox WHERE key = %s", (key,)).fetchone()
        return Mail.from_json(dict(row[0])) if row and row[0] else None

    def _exec(self, sql: str, params: tuple[Any, ...]) -> None:
        with self.pool.connection() as conn:
            conn.execute(sql, params)
