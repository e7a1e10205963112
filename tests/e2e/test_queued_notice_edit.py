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
from pathlib import Path
from typing import Any

import pytest

from handlers import ids
from sandbox.demo import DemoService
from tests.e2e.conftest import CHANNEL, Harness
from tests.support.waiting import wait_until

REQUEST = "hotel-voice-bot --severity P0 --reason notice-edited-while-queued"
SLACK_DOWN = 100_000  # more refusals than the test can use up: Slack is down until recover()


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
    # chat.postMessage only (the emulator's fault injection, sandbox/slack/server.py
    # fail_next): Slack answers internal_error, which chat.postMessage documents as a
    # passing error (docs.slack.dev/reference/methods/chat.postMessage, "Errors").
    h.emulator.fail_next("chat.postMessage", "internal_error", times=SLACK_DOWN)
    h.click(msg, ids.APPROVE, "bob")
    h.wait_state(rid, "verification_failed", timeout=20)
    key = f"verify:{rid}:1"
    assert _outbox_status(h, key) == "sending"  # queued, not posted
    wait_until(lambda: "Mark resolved" in str(h.message_now(msg["ts"]).get("blocks")),
               message="the request message offers Mark resolved")

    # Closed while its card waits: the edit must reach the card Slack will show.
    h.click(msg, ids.RESOLVE, "bob")
    closed = wait_until(lambda: store.get(rid).state.value != "verification_failed"
                        and store.get(rid).state.value, message="the rollback closed")

    assert h.emulator.recover("chat.postMessage") > 0  # Slack was refusing until now
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
