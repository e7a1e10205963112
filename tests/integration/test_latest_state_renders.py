"""The request message's re-renders (``bot.usecases.latest_state_chat``) keep nothing per
rollback once they are over, and do hold a turn while one runs.

Real PostgreSQL (the store the renders read), the real Slack adapter
(``handlers.gateway.SlackChat``, a real WebClient) against the Slack emulator. ``Held`` is
that adapter with a door in front of ``chat.update``: a render waits there until the test
opens it, so it is observably in flight.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from slack_sdk import WebClient

from bot.domain.models import PlannedStep, Rollback, Step
from bot.persistence.db import open_pool
from bot.persistence.store import Store
from bot.usecases.latest_state_chat import LatestStateChat
from handlers.gateway import SlackChat
from platforms.base import Revision, Target
from sandbox.slack import DEFAULT_BOT_TOKEN, SlackEmulator

CHANNEL = "C0INCHVB01"  # the emulator's seeded channel
NOW = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)


class Held(SlackChat):
    """The real adapter, whose renders wait for ``door`` once they have begun."""

    def __init__(self, client: WebClient) -> None:
        super().__init__(client)
        self.door = threading.Event()
        self.entered = threading.Semaphore(0)  # one release a render that reached the door

    def refresh(self, rollback: Rollback, steps: list[Step] | None = None) -> None:
        self.entered.release()
        assert self.door.wait(30), "the test never opened the door"
        super().refresh(rollback, steps)


@pytest.fixture
def emulator() -> Iterator[SlackEmulator]:
    with SlackEmulator() as emu:
        yield emu


@pytest.fixture
def store(db: str) -> Iterator[Store]:
    s = Store(open_pool(db, max_size=8))
    yield s
    s.pool.close()


def _posted_rollbacks(store: Store, client: WebClient, n: int) -> list[Rollback]:
    """``n`` rollbacks (one a service), each with its request message in Slack."""
    out = []
    for i in range(n):
        rb = store.create_rollback(
            service=f"svc-{i}", platform="fake", severity="P1", policy_mode="hotfix_window",
            scope=["app"], reason="r", requester="U1", channel_id=CHANNEL,
            channel_name="inc-x", current_revision=Revision("rs-3", 3, current=True),
            target_revision=Revision("rs-2", 2), target=Target("fake", "default", f"a{i}"),
            steps=[PlannedStep("app_rollback", "roll")], checklist={}, assessment={},
            expires_at=NOW + timedelta(minutes=30), created_at=NOW)
        ts = str(client.chat_postMessage(channel=CHANNEL, text=f"RB-{rb.id}")["ts"])
        store.set_message(rb.id, message_ts=ts, thread_ts=ts)
        out.append(store.get(rb.id))
    return out


def test_a_render_holds_its_rollbacks_turn_and_many_renders_leave_none_behind(
        store: Store, emulator: SlackEmulator) -> None:
    client = WebClient(token=DEFAULT_BOT_TOKEN, base_url=emulator.base_url)
    inner = Held(client)
    chat = LatestStateChat(inner, store)
    rollbacks = _posted_rollbacks(store, client, 30)
    first, second = rollbacks[0], rollbacks[1]
    assert chat.renders_in_progress() == 0

    with ThreadPoolExecutor(4) as ex:
        try:
            # A render in flight holds its rollback's turn; a second render of the same
            # rollback waits for that turn (not counted twice); another rollback has its own.
            running = [ex.submit(chat.refresh_now, first)]
            assert inner.entered.acquire(timeout=10), "the render never began"
            assert chat.renders_in_progress() == 1
            running.append(ex.submit(chat.refresh_now, first))
            running.append(ex.submit(chat.refresh_now, second))
            assert inner.entered.acquire(timeout=10), "the other rollback's render never began"
            assert chat.renders_in_progress() == 2
            assert not inner.entered.acquire(blocking=False)  # the same rollback's second waits
            inner.door.set()
            for f in running:
                f.result(10)
        finally:
            inner.door.set()  # a failed assertion must not leave renders parked for 30 s
    assert chat.renders_in_progress() == 0

    # Many rollbacks rendered, several at once: nothing is kept for any of them.
    with ThreadPoolExecutor(4) as ex:
        for f in [ex.submit(chat.refresh_now, rb) for rb in rollbacks for _ in range(2)]:
            f.result(10)
    assert len(emulator.calls("chat.update")) == 3 + 60  # every render reached Slack
    assert all(c.ok for c in emulator.calls("chat.update"))
    assert chat.renders_in_progress() == 0
