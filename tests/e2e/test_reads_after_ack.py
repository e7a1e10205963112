"""``status`` and ``history`` read the database after the ack: the ack is an empty 200 at
once, and the answer arrives later at the command's response_url. Proven by holding the
read back: an ACCESS EXCLUSIVE lock on ``rollbacks`` (taken by another PostgreSQL session)
blocks the bot's SELECT, the ack still comes back, and the answer lands only once the lock
is released. Through the Slack emulator, over signed HTTP.
"""

from __future__ import annotations

import time

import psycopg
import pytest

from tests.e2e.conftest import Harness
from tests.support.waiting import wait_until

ACK_BUDGET = 2.0  # well under Slack's 3 s, while the read is blocked for longer


def _blocked_reads(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                       "AND query ILIKE '%FROM rollbacks%' AND pid <> pg_backend_pid()"
                       ).fetchone()
    return int(row[0]) if row else 0


def _answers(h: Harness, response_url: str) -> list[dict[str, object]]:
    token = response_url.rstrip("/").rsplit("/", 1)[-1]
    return [c.params for c in h.emulator.calls("response_url") if c.params.get("token") == token]


@pytest.mark.parametrize(("text", "title"), [
    ("status", "Rollbacks"),
    ("history hotel-voice-bot", "History of hotel-voice-bot"),
], ids=["status", "history"])
def test_the_read_is_answered_through_respond_after_the_ack(harness: Harness, text: str,
                                                           title: str) -> None:
    h = harness
    h.request('hotel-voice-bot --severity P1 --reason "5xx after v1.3.0"')
    ref = h.rollback_message()["text"].split()[0]  # "RB-1": something to list
    url = h.bot.database_url
    assert url
    with psycopg.connect(url) as locker:
        locker.execute("LOCK TABLE rollbacks IN ACCESS EXCLUSIVE MODE")  # until commit
        started = time.monotonic()
        reply = h.request(text)
        acked_in = time.monotonic() - started
        assert reply.status == 200 and reply.message() is None, reply.body  # empty ack
        assert acked_in < ACK_BUDGET, acked_in
        assert reply.response_url
        # The bot's read is now queued behind the lock; nothing has been answered.
        wait_until(lambda: _blocked_reads(locker) > 0, 10,
                   message="the bot's read to wait on the lock")
        assert _answers(h, reply.response_url) == []
        locker.commit()  # releases the lock: the read goes on
    answers = h.emulator.wait_for(lambda: _answers(h, reply.response_url or ""), timeout=10,
                                  description="the answer at the response_url")
    assert len(answers) == 1
    body = str(answers[0])
    assert title in body and ref in body, body
    assert answers[0].get("response_type") == "ephemeral"
