"""Queueing a line under a key that already has an outbox row (issue 16).

``Outbox.queue_line`` used ``ON CONFLICT (key) DO NOTHING``: a row left by a direct post of
the same key (``Outbox.notice``) made it answer "queued before" although a row with no
line is never delivered as one. What it does now, per row left behind:

* sent: nothing to do (False), nothing posted again;
* a direct post that Slack refused (``sending``, no claim): the row takes the line and the
  deliverer posts it, once;
* a direct post that reached Slack but was never marked (its poster died): the deliverer
  finds the post by its key instead of posting again;
* a direct post under way (its claim stands): the deliverer leaves it to that poster.

Real PostgreSQL, the real Slack adapter (``handlers.gateway.SlackChat``) against the Slack
emulator, the real deliverer (``ThreadDelivery.deliver``).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.domain.message_codec import encode
from bot.domain.messages import StatuspageNotUpdated
from bot.domain.ports import CrashPoints, Notice
from bot.persistence.db import migrate, open_pool
from bot.persistence.outbox import Outbox
from bot.persistence.store import Store
from bot.usecases.latest_state_chat import LatestStateChat
from bot.usecases.thread_delivery import ThreadDelivery
from handlers.gateway import SlackChat
from sandbox.slack import DEFAULT_BOT_TOKEN, SlackEmulator
from tests.integration.pg_fixtures import fresh_db, pg_url  # noqa: F401
from tests.support.history_seed import seed_active
from tests.support.notice_gate import NoticeGate

CHANNEL = "C0INCHVB01"  # the emulator's seeded channel


class Died(Exception):
    """The poster's process ending right after Slack answered (a crash point)."""


@pytest.fixture
def emulator() -> Iterator[SlackEmulator]:
    with SlackEmulator() as emu:
        yield emu


@pytest.fixture
def world(fresh_db: str, emulator: SlackEmulator  # noqa: F811
          ) -> Iterator[tuple[ConnectionPool, WebClient, int, str]]:
    """A pool, a Slack client, a rollback whose thread is a real message, its ts."""
    migrate(fresh_db)
    client = WebClient(token=DEFAULT_BOT_TOKEN, base_url=emulator.base_url)
    parent = str(client.chat_postMessage(channel=CHANNEL, text="request")["ts"])
    rid = seed_active(fresh_db, "hotel-voice-bot")
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("UPDATE rollbacks SET channel_id = %s, message_ts = %s",
                     (CHANNEL, parent))
    pool = open_pool(fresh_db, min_size=1, max_size=4)
    try:
        yield pool, client, rid, parent
    finally:
        pool.close()


def _notice(rid: int) -> Notice:
    return Notice(f"warn:conflict:{rid}", StatuspageNotUpdated("investigating", "no page"))


def _line(notice: Notice) -> dict[str, Any]:
    return {"notice": encode(notice.message)}  # as ThreadDelivery.notice stores it


def _posts(emulator: SlackEmulator, parent: str, key: str) -> int:
    return sum(1 for m in emulator.thread(CHANNEL, parent)
               if (m.get("metadata") or {}).get("event_payload", {}).get("key") == key)


def _status(pool: ConnectionPool, key: str) -> str:
    with pool.connection() as conn:
        row = conn.execute("SELECT status FROM outbox WHERE key = %s", (key,)).fetchone()
    assert row is not None
    return str(row[0])


def _delivery(pool: ConnectionPool, client: WebClient) -> tuple[Outbox, ThreadDelivery]:
    store = Store(pool)
    chat = LatestStateChat(SlackChat(client), store)
    outbox = Outbox(pool, chat)
    return outbox, ThreadDelivery(outbox=outbox, store=store, chat=chat)


def test_a_key_already_posted_is_not_queued_again(
        world: tuple[ConnectionPool, WebClient, int, str], emulator: SlackEmulator) -> None:
    pool, client, rid, parent = world
    outbox, delivery = _delivery(pool, client)
    rb = Store(pool).get(rid)
    notice = _notice(rid)
    outbox.notice(rb, notice)
    assert outbox.queue_line(rid, notice.key, _line(notice)) is False  # nothing to do
    assert delivery.deliver() == 0
    assert _posts(emulator, parent, notice.key) == 1


def test_a_direct_post_slack_refused_is_delivered_as_the_queued_line(
        world: tuple[ConnectionPool, WebClient, int, str], emulator: SlackEmulator) -> None:
    pool, client, rid, parent = world
    outbox, delivery = _delivery(pool, client)
    rb = Store(pool).get(rid)
    notice = _notice(rid)
    # A refusal no retry inside slack_sdk absorbs (the emulator's fault injection,
    # sandbox/slack/server.py fail_next; "internal_error" is among chat.postMessage's
    # documented errors, docs.slack.dev/reference/methods/chat.postMessage).
    emulator.fail_next("chat.postMessage", "internal_error", times=1)
    with pytest.raises(SlackApiError):
        outbox.notice(rb, notice)
    assert _status(pool, notice.key) == "sending"  # the direct post left its row

    # The row used to swallow the line: "queued before", and nothing ever posted it.
    assert outbox.queue_line(rid, notice.key, _line(notice)) is True
    assert [q.key for q in outbox.queued_lines(rid)] == [notice.key]
    assert delivery.deliver() == 1
    assert _posts(emulator, parent, notice.key) == 1
    assert _status(pool, notice.key) == "sent"
    assert outbox.queue_line(rid, notice.key, _line(notice)) is False  # sent now


def test_a_direct_post_that_reached_slack_unmarked_is_found_not_doubled(
        world: tuple[ConnectionPool, WebClient, int, str], emulator: SlackEmulator) -> None:
    pool, client, rid, parent = world
    _, delivery = _delivery(pool, client)
    rb = Store(pool).get(rid)
    notice = _notice(rid)

    def die(key: str) -> None:
        raise Died(key)

    dying = Outbox(pool, LatestStateChat(SlackChat(client), Store(pool)),
                   crash_points=CrashPoints(posted=die))
    with pytest.raises(Died):
        dying.notice(rb, notice)  # in Slack, not marked
    assert _posts(emulator, parent, notice.key) == 1
    assert delivery.outbox.queue_line(rid, notice.key, _line(notice)) is True
    assert delivery.deliver() == 1  # found by its key, not posted again
    assert _posts(emulator, parent, notice.key) == 1
    assert _status(pool, notice.key) == "sent"


def test_a_direct_post_under_way_is_left_to_its_poster(
        world: tuple[ConnectionPool, WebClient, int, str], emulator: SlackEmulator) -> None:
    pool, client, rid, parent = world
    outbox, delivery = _delivery(pool, client)
    rb = Store(pool).get(rid)
    notice = _notice(rid)
    gate = NoticeGate(WebClient(token=DEFAULT_BOT_TOKEN, base_url=emulator.base_url))
    with ThreadPoolExecutor(1) as ex:
        direct = ex.submit(Outbox(pool, gate).notice, rb, notice)
        assert gate.entered.wait(10)  # its claim stands, its call in flight
        assert outbox.queue_line(rid, notice.key, _line(notice)) is True
        assert delivery.deliver() == 0  # the claim holder's: not posted a second time
        gate.door.set()
        ts = direct.result(10)
    assert delivery.deliver() == 0
    assert outbox.sent_ts(notice.key) == ts
    assert _posts(emulator, parent, notice.key) == 1
