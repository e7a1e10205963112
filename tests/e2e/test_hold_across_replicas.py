"""The hold between an approval and the first platform write holds in every replica.

``ThreadDelivery.hold`` keeps a rollback off Slack from its approval until its executor's
first platform write, so the approval path makes no Slack call before the platform moves
(tests/e2e/test_approval_slack_calls.py counts them in one process). The hold used to be
a note in the approving process only: the executor that claims the rollback may run in
another replica, whose deliverer posted its lines at once, and the approving replica kept
the request message's re-render waiting until its own note lapsed, although the platform
had long moved. The hold is now a row (migration 022) every replica reads.

Two replicas are two pools on one database (``application_name`` differs, so each is its
own claim owner, as two processes are), each with its own outbox and deliverer, talking to
the Slack emulator through the real adapter; the deliverers run by hand, round by round.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg_pool import ConnectionPool
from slack_sdk import WebClient

from bot.domain.messages import StepNote
from bot.persistence.db import migrate, open_pool
from bot.persistence.outbox import Outbox
from bot.persistence.store import Store
from bot.usecases.latest_state_chat import LatestStateChat
from bot.usecases.thread_delivery import ThreadDelivery
from handlers.gateway import SlackChat
from sandbox.slack import DEFAULT_BOT_TOKEN, SlackEmulator
from tests.integration.pg_fixtures import fresh_db, pg_url  # noqa: F401
from tests.support.history_seed import seed_active
from tests.support.waiting import wait_until

CHANNEL = "C0INCHVB01"  # the emulator's seeded channel (history is read by id, as in Slack)


@dataclass
class Replica:
    pool: ConnectionPool
    store: Store
    delivery: ThreadDelivery


@pytest.fixture
def slack() -> Iterator[SlackEmulator]:
    with SlackEmulator() as emu:
        yield emu


@pytest.fixture
def world(fresh_db: str, slack: SlackEmulator) -> Iterator[tuple[str, int, str]]:  # noqa: F811
    """The database, a rollback whose request message is a real message, that message."""
    migrate(fresh_db)
    client = WebClient(token=DEFAULT_BOT_TOKEN, base_url=slack.base_url)
    parent = str(client.chat_postMessage(channel=CHANNEL, text="request")["ts"])
    rid = seed_active(fresh_db, "hotel-voice-bot", state="executing")
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("UPDATE rollbacks SET channel_id = %s, message_ts = %s",
                     (CHANNEL, parent))
    yield fresh_db, rid, parent


@pytest.fixture
def replicas(world: tuple[str, int, str], slack: SlackEmulator
             ) -> Iterator[tuple[Replica, Replica]]:
    url = world[0]
    made: list[Replica] = []
    for name in ("replica-a", "replica-b"):
        pool = open_pool(f"{url} application_name={name}", min_size=1, max_size=4)
        store = Store(pool)
        chat = LatestStateChat(SlackChat(WebClient(token=DEFAULT_BOT_TOKEN,
                                                   base_url=slack.base_url)), store)
        # A hold far longer than the test: only a platform write (or its lapse, where the
        # test shortens it) can end it.
        delivery = ThreadDelivery(outbox=Outbox(pool, chat), store=store, chat=chat,
                                  hold_seconds=600)
        delivery.stop()  # no background rounds: the test runs each deliverer by hand
        chat.defer, chat.defer_line = delivery.defer_refresh, delivery.defer_line
        made.append(Replica(pool, store, delivery))
    try:
        yield made[0], made[1]
    finally:
        for replica in made:
            replica.pool.close()


def _lines(slack: SlackEmulator, parent: str, key: str) -> int:
    return sum(1 for m in slack.thread(CHANNEL, parent)
               if (m.get("metadata") or {}).get("event_payload", {}).get("key") == key)


def _updates(slack: SlackEmulator, parent: str) -> int:
    return sum(1 for c in slack.calls() if c.method == "chat.update"
               and str(c.params.get("ts")) == parent)


def test_the_executing_replica_holds_lines_until_its_first_write(
        world: tuple[str, int, str], replicas: tuple[Replica, Replica],
        slack: SlackEmulator) -> None:
    _, rid, parent = world
    a, b = replicas
    a.delivery.hold(rid)  # the approval, in replica A
    assert a.delivery.defer_refresh(rid)  # A's re-render of the request message waits
    rb = b.store.get(rid)
    key = f"line:{rid}:started"
    b.delivery.say(rb, StepNote("Executing"), key=key)  # B's executor, before writing

    # Neither deliverer posts it: B did not approve it, yet the hold is B's as well.
    assert b.delivery.deliver() == 0
    assert a.delivery.deliver() == 0
    assert _lines(slack, parent, key) == 0
    assert _updates(slack, parent) == 0

    b.delivery.written(rid)  # B's first platform write ends the hold for everyone
    assert b.delivery.deliver() == 1
    assert _lines(slack, parent, key) == 1
    # A's note of its hold goes with it: the deferred re-render happens at A's next round,
    # not when A's own note would have lapsed (ten minutes here).
    a.delivery.deliver()
    assert _updates(slack, parent) == 1
    assert a.delivery.deliver() == 0 and b.delivery.deliver() == 0  # posted once
    assert _lines(slack, parent, key) == 1


def test_a_hold_no_write_ends_lapses_for_every_replica(
        world: tuple[str, int, str], replicas: tuple[Replica, Replica],
        slack: SlackEmulator) -> None:
    """A plan whose first step writes nothing, or no executor free: Slack is told late,
    never not at all, whichever replica delivers."""
    _, rid, parent = world
    a, b = replicas
    a.delivery.hold_seconds = 1.0
    a.delivery.hold(rid)
    key = f"line:{rid}:late"
    b.delivery.say(b.store.get(rid), StepNote("Executing"), key=key)
    assert b.delivery.deliver() == 0  # held
    wait_until(lambda: b.delivery.deliver() == 1, timeout=10,
               message="the line once the hold lapsed")
    assert _lines(slack, parent, key) == 1
