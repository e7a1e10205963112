"""A notice edited while it waits in the outbox goes out as edited, once (issue 16).

The verification notice is queued behind the thread lines (``Progress.notice``). When Slack
refused posts, a human could close the rollback (*Mark resolved* on the request message,
which ``chat.update`` still reaches) before the notice was posted: ``Outbox.edit`` found no
ts, returned False, and the deliverer later posted the old card, with live *Retry
verification* / *Mark resolved* buttons for a rollback already closed. The edit now rewrites
the queued card, so Slack shows it closed, once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from slack_sdk import WebClient

from bot.domain.messages import StatuspageNotUpdated
from bot.domain.ports import Notice
from bot.persistence import claims
from bot.persistence.db import migrate, open_pool
from bot.persistence.outbox import Outbox
from bot.persistence.store import Store
from bot.usecases.latest_state_chat import LatestStateChat
from bot.usecases.thread_delivery import ThreadDelivery
from handlers import ids
from sandbox.demo import DemoService
from sandbox.slack import DEFAULT_BOT_TOKEN, SlackEmulator
from tests.e2e.conftest import CHANNEL, Harness
from tests.integration.pg_fixtures import fresh_db, pg_url  # noqa: F401
from tests.support.history_seed import seed_active
from tests.support.notice_gate import NoticeGate
from tests.support.waiting import wait_until

SEEDED = "C0INCHVB01"  # the emulator's seeded channel (history is read by id, as in Slack)

REQUEST = "hotel-voice-bot --severity P0 --reason notice-edited-while-queued"
SLACK_DOWN = 100_000  # more refusals than the test can use up: Slack is down until recover()


@pytest.fixture
def slack() -> Iterator[SlackEmulator]:
    with SlackEmulator() as emu:
        yield emu


@pytest.fixture
def demo() -> Iterator[DemoService]:
    with DemoService(version_source="1.2.0") as service:
        yield service


def _config(demo_url: str, tmp: Path) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        svc = data["services"]["hotel-voice-bot"]
        svc["health"] = {"url": f"{demo_url}/api/health", "timeout_seconds": 2, "samples": 3}
        svc["monitoring"] = {"duration_seconds": 600, "interval_seconds": 300,
                             "consecutive_health_failures": 2}
        data["aftercare"] = {"postmortem_dir": str(tmp / "post-mortems")}
    return change


def _verification_posts(h: Harness, msg: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in h.emulator.thread(CHANNEL, msg["ts"])[1:]
            if "Verification of" in str(m.get("text", ""))]


def _queued_closed(h: Harness, key: str) -> bool:
    """The queued card carries a closing footer (what ``Outbox.edit`` writes)."""
    with h.bot.store.pool.connection() as conn:
        row = conn.execute("SELECT line FROM outbox WHERE key = %s", (key,)).fetchone()
    return bool(row and row[0] and (row[0].get("notice") or {}).get("closed"))


def _attempts(h: Harness, key: str) -> int:
    with h.bot.store.pool.connection() as conn:
        row = conn.execute("SELECT attempts FROM outbox WHERE key = %s", (key,)).fetchone()
    return int(row[0]) if row else 0


def _outbox_status(h: Harness, key: str) -> str | None:
    with h.bot.store.pool.connection() as conn:
        row = conn.execute("SELECT status FROM outbox WHERE key = %s", (key,)).fetchone()
    return str(row[0]) if row else None


def test_a_notice_closed_while_queued_is_posted_closed_once(
        make_harness: Callable[..., Harness], demo: DemoService, tmp_path: Path) -> None:
    h = make_harness(config_overrides=_config(demo.url, tmp_path))
    store = h.bot.store
    h.request(REQUEST, user="alice")
    rid = wait_until(lambda: store.history("hotel-voice-bot")
                     and store.history("hotel-voice-bot")[0].id, message="the request stored")
    msg = h.rollback_message(rid)
    h.emulator.wait_idle()
    demo.break_()  # health answers 503: verification fails
    # Posts fail (the emulator's fault injection, sandbox/slack/server.py fail_next: Slack
    # answers internal_error, which chat.postMessage documents as a passing error,
    # docs.slack.dev/reference/methods/chat.postMessage, "Errors"), and so do thread reads
    # (conversations.replies lists it too, docs.slack.dev/reference/methods/
    # conversations.replies): a line tried once is looked up before it is posted again
    # (Outbox._once), so while reads fail the rollback's queue stays where it is.
    h.emulator.fail_next("chat.postMessage", "internal_error", times=SLACK_DOWN)
    h.emulator.fail_next("conversations.replies", "internal_error", times=SLACK_DOWN)
    h.click(msg, ids.APPROVE, "bob")
    h.wait_state(rid, "verification_failed", timeout=20)
    key = f"verify:{rid}:1"
    assert _outbox_status(h, key) == "sending"  # queued, not posted
    wait_until(lambda: "Mark resolved" in str(h.message_now(msg["ts"]).get("blocks")),
               message="the request message offers Mark resolved")

    # Resolving posts its own line directly (bot/usecases/service.py): posts go through
    # again, reads still fail. The first queued line was tried twice: its first post is
    # over (claims serialize attempts), and every try now begins with the failing look-up,
    # so it and the lines behind it, the card among them, wait.
    wait_until(lambda: _attempts(h, f"line:{rid}:started") >= 2,
               message="the first line tried twice")
    assert h.emulator.recover("chat.postMessage") > 0  # Slack was refusing until now

    # Closed while its card waits: the edit must reach the card Slack will show.
    h.click(msg, ids.RESOLVE, "bob")
    closed = wait_until(lambda: store.get(rid).state.value != "verification_failed"
                        and store.get(rid).state.value, message="the rollback closed")

    def calls() -> str:
        return "\n".join(str((c.method, c.ok, c.error, str(c.params.get("text", ""))[:50]))
                         for c in h.emulator.calls()[-40:])

    # (the old code's edit found no ts and gave up: the card never changed)
    wait_until(lambda: _queued_closed(h, key), message="the queued card edited",
               diagnostics=calls)
    assert _outbox_status(h, key) == "sending", calls()

    assert h.emulator.recover("conversations.replies") > 0  # Slack is back
    h.emulator.wait_for(lambda: len(_verification_posts(h, msg)) == 1, 20,
                        description="the verification notice once Slack is back")
    h.emulator.wait_idle()
    posts = _verification_posts(h, msg)
    assert len(posts) == 1  # once: neither doubled nor posted old and then new
    card = str(posts[0].get("blocks"))
    assert f"closed RB-{rid} as {closed}" in card  # the edit's footer, not the old card
    assert "Retry verification" not in card  # no live button on a closed rollback
    assert ids.RETRY not in card
    assert _outbox_status(h, key) == "sent"


# ---------------------------------------------------------------------- an edit mid-post
def test_an_edit_while_the_deliverer_posts_lands_after_the_post(
        fresh_db: str, slack: SlackEmulator,  # noqa: F811
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """The deliverer has claimed the queued card and its call is in flight: the edit must
    neither rewrite the row under it (the mark would then hide the edit) nor be dropped.
    It waits for the post and edits it in Slack: the thread shows the edit, once."""
    # The wait is logged after this long (default 5 s): what the test waits on, sooner.
    monkeypatch.setattr(claims, "SLOW_WAIT_SECONDS", 0.2)
    migrate(fresh_db)
    client = WebClient(token=DEFAULT_BOT_TOKEN, base_url=slack.base_url)
    parent = str(client.chat_postMessage(channel=SEEDED, text="request")["ts"])
    rid = seed_active(fresh_db, "hotel-voice-bot")
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("UPDATE rollbacks SET channel_id = %s, message_ts = %s",
                     (SEEDED, parent))
    pool = open_pool(fresh_db, min_size=1, max_size=4)
    try:
        store = Store(pool)
        gate = NoticeGate(WebClient(token=DEFAULT_BOT_TOKEN, base_url=slack.base_url))
        chat = LatestStateChat(gate, store)
        outbox = Outbox(pool, chat)
        delivery = ThreadDelivery(outbox=outbox, store=store, chat=chat)
        rb = store.get(rid)
        key = f"warn:edit-mid-post:{rid}"
        delivery.stop()  # this test delivers by hand: no background round
        delivery.notice(rb, Notice(key, StatuspageNotUpdated("investigating", "first")))
        with ThreadPoolExecutor(2) as ex:
            delivering = ex.submit(delivery.deliver)
            assert gate.entered.wait(10)  # claimed, the old card on its way
            editing = ex.submit(outbox.edit, rb,
                                Notice(key, StatuspageNotUpdated("investigating", "edited")))
            # The edit waits on the claim (it says so once the wait is long): it has not
            # rewritten the row under the post, nor given up.
            wait_until(lambda: any(f"still waiting for outbox {key} (edit)" in r.getMessage()
                                   for r in caplog.records), timeout=5,
                       message="the edit waiting on the deliverer's claim")
            assert not editing.done()
            gate.door.set()
            assert delivering.result(10) == 1
            assert editing.result(10) is True
        posts = [m for m in slack.thread(SEEDED, parent)
                 if (m.get("metadata") or {}).get("event_payload", {}).get("key") == key]
        assert len(posts) == 1
        assert "edited" in str(posts[0].get("blocks")) + str(posts[0].get("text"))
        assert "first" not in str(posts[0].get("blocks")) + str(posts[0].get("text"))
    finally:
        pool.close()
