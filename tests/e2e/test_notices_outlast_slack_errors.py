"""A decoration never holds a transition (issue 16, part C).

Slack refusing the verification notice (``internal_error``, a 5xx, a rate limit) used to
raise out of aftercare: the rollback stayed ``verifying`` and the executor re-ran the
checks until Slack answered. The notice is now queued behind the executor's thread lines
(``Progress.notice``): the rollback moves on at once, and the notice is posted once when
Slack is back.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from handlers import ids
from sandbox.demo import DemoService
from tests.e2e.conftest import CHANNEL, Harness
from tests.support.demo import health_monitored
from tests.support.slack_outage import requested_then_slack_refuses

REQUEST = "hotel-voice-bot --severity P0 --reason notice-refused"
SLACK_DOWN = 100_000  # more refusals than the test can use up: Slack is down until recover()



def _count(h: Harness, msg: dict[str, Any], needle: str) -> int:
    return sum(1 for m in h.emulator.thread(CHANNEL, msg["ts"])[1:]
               if needle in str(m.get("text", "")))


def _outbox_status(h: Harness, key: str) -> str | None:
    with h.bot.store.pool.connection() as conn:
        row = conn.execute("SELECT status FROM outbox WHERE key = %s", (key,)).fetchone()
    return str(row[0]) if row else None


@pytest.mark.parametrize("healthy", [True, False], ids=["passed", "failed"])
def test_a_refused_verification_notice_does_not_hold_the_rollback(
        make_harness: Callable[..., Harness], demo: DemoService, tmp_path: Path,
        healthy: bool) -> None:
    h = make_harness(config_overrides=health_monitored(demo.url, tmp_path))
    next_state = "monitoring" if healthy else "verification_failed"
    # The notice posted after the verification one: monitoring's start, or none.
    then = "Monitoring hotel-voice-bot" if healthy else None
    store = h.bot.store
    rid, msg = requested_then_slack_refuses(h, REQUEST, refusals=SLACK_DOWN)
    if not healthy:
        demo.break_()  # health answers 503: verification fails
    h.click(msg, ids.APPROVE, "bob")

    # Slack refuses every post, the notice included: the rollback still moves on.
    h.wait_state(rid, next_state, timeout=20)
    assert _outbox_status(h, f"verify:{rid}:1") == "sending"  # queued, durable, not posted
    assert _count(h, msg, "Verification of") == 0

    assert h.emulator.recover("chat.postMessage") > 0  # Slack was still refusing until now
    h.emulator.wait_for(lambda: _count(h, msg, "Verification of") == 1, 20,
                        description="the verification notice once Slack is back")
    if then:
        h.emulator.wait_for(lambda: _count(h, msg, then) == 1, 20,
                            description="the monitoring notice, queued behind it")
    h.emulator.wait_idle()
    assert _count(h, msg, "Verification of") == 1  # exactly once: not doubled by the retries
    notice = next(str(m.get("text", "")) for m in h.emulator.thread(CHANNEL, msg["ts"])
                  if "Verification of" in str(m.get("text", "")))
    assert ("passed" if healthy else "failed") in notice
    if then:
        assert _count(h, msg, then) == 1
    assert _outbox_status(h, f"verify:{rid}:1") == "sent"
    texts = [str(m.get("text", "")) for m in h.emulator.thread(CHANNEL, msg["ts"])]
    verification = next(i for i, t in enumerate(texts) if "Verification of" in t)
    assert any(f"Executing RB-{rid}:" in t for t in texts[:verification])  # still in order
    assert store.get(rid).state.value == next_state
