"""E-mails that are sent once: rendered into an ``outbox`` row when queued, sent from it.

The row is the outbox's (``bot.persistence.outbox``: one key, one row, ``attempts``
committed before the call, ``sent`` after it), with the message itself in ``mail``: what
is sent, Message-ID and Date included, is fixed when the row is created, never re-rendered.

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
from bot.persistence.outbox import OUTBOX_LOCK_NAMESPACE

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
    """A row claimed for sending: the mail and which attempt this is (1 = the first)."""

    key: str
    mail: Mail
    attempt: int


class MailOutbox:
    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

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
    def sending(self, key: str) -> Iterator[Pending | None]:
        """Claim ``key`` for one attempt: None when it is sent, failed or unknown. The
        attempt is committed before the caller talks to the relay, and the advisory lock
        (the Slack outbox's namespace) keeps a second runner off the row meanwhile."""
        with self.pool.connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))",
                         (OUTBOX_LOCK_NAMESPACE, key))
            try:
                row = conn.execute(
                    "UPDATE outbox SET attempts = attempts + 1 WHERE key = %s"
                    " AND status = 'sending' AND mail IS NOT NULL RETURNING attempts, mail",
                    (key,)).fetchone()
                yield (Pending(key, Mail.from_json(dict(row[1])), int(row[0]))
                       if row is not None else None)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))",
                             (OUTBOX_LOCK_NAMESPACE, key))

    def mark_sent(self, key: str, *, message_id: str) -> None:
        self._exec("UPDATE outbox SET status = 'sent', ts = %s, sent_at = now(),"
                   " last_error = NULL WHERE key = %s", (message_id, key))

    def mark_failed(self, key: str, *, error: str) -> None:
        """A permanent refusal: the row is never tried again."""
        self._exec("UPDATE outbox SET status = 'failed', last_error = %s WHERE key = %s",
                   (scrub(error)[:500], key))

    def note_error(self, key: str, *, error: str) -> None:
        """A transient failure: the row stays ``sending`` for the next attempt."""
        self._exec("UPDATE outbox SET last_error = %s WHERE key = %s",
                   (scrub(error)[:500], key))

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
