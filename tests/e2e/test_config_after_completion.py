"""A config-scope rollback requested the moment the previous rollback is completed.

A completed rollback records the service's known-good configuration; a later
``--scope config`` plan pins that record and ``restore_config`` refuses to restore
anything else. The record must therefore exist by the time anyone can see the rollback
completed, or the next plan pins the record before it and is refused at execution
("the known-good configuration changed since the plan was made").

Slack's chat.update is rate limited (Tier 3, ~50/min, and bursts per channel are
throttled: https://api.slack.com/methods/chat.update, https://api.slack.com/docs/rate-limits);
the bot's WebClient then waits out ``Retry-After`` and retries once
(``RateLimitErrorRetryHandler`` in ``bot/runtime/app.py``). The test rate-limits exactly
the refresh that shows the completion, so the bot sits in that retry while the rollback
is already completed for everyone reading its state (``/rollback status``, the store), and
the next request is planned in that window.
"""

from __future__ import annotations

from typing import Any

from handlers import ids
from platforms.base import Target
from sandbox.slack.state import Event
from tests.e2e.conftest import CHANNEL, Harness
from tests.support.waiting import wait_until

SERVICE = "hotel-voice-bot"
TARGET = Target("fake", "production", SERVICE)
MONITORING = ":eyes: Monitoring stability"  # the message's state line (handlers/views.py)
RETRY_AFTER = 3  # seconds the bot waits before retrying the completion refresh


def _config(mode: str) -> dict[str, Any]:
    return {"configmap/app-config": {"data": {"MODE": mode}}}


def _request(h: Harness, text: str) -> tuple[int, dict[str, Any]]:
    before = len(h.bot.store.history(SERVICE))
    h.request(f"{SERVICE} {text}", user="bob")
    wait_until(lambda: len(h.bot.store.history(SERVICE)) > before, timeout=15,
               message="the request stored")
    rid = h.bot.store.history(SERVICE)[0].id
    return rid, h.rollback_message(rid)


def _approved_p0(h: Harness, scope: str) -> int:
    """bob requests a P0 rollback of ``scope`` and approves it himself (break glass)."""
    rid, msg = _request(h, f"--severity P0 --scope {scope}")
    h.click(msg, ids.APPROVE, "bob")
    return rid


def _rate_limit_completion_refresh(h: Harness, msg_ts: str) -> None:
    """Answer 429 to the chat.update after the one that shows the rollback monitoring:
    the refresh that follows the transition to completed."""
    armed: list[bool] = []

    def on_event(event: Event) -> None:
        if armed or event.kind != "message.updated" or event.data.get("ts") != msg_ts:
            return
        if MONITORING in str(h.emulator.message(CHANNEL, msg_ts) or {}):
            armed.append(True)  # runs inside that chat.update, before the bot's next call
            h.emulator.fail_next("chat.update", "ratelimited", retry_after=RETRY_AFTER)

    h.emulator.subscribe(on_event)


def test_config_rollback_requested_the_moment_the_previous_one_completes(
        harness: Harness) -> None:
    h = harness
    store = h.bot.store
    # RB-1 records the first known-good configuration.
    h.platform.set_config(TARGET, _config("v1"))
    first = _approved_p0(h, "app")
    h.wait_state(first, "completed")
    wait_until(lambda: (store.known_good_config(SERVICE, "fake") or (0, 0, None))[2] == first,
               message="RB-1's known-good configuration recorded")

    # A good configuration change, then a bad release: RB-2 rolls the app back and its
    # completion records v2 as the known-good configuration.
    h.platform.set_config(TARGET, _config("v2"))
    h.platform.deploy(TARGET, "registry.example/app:bad-1", change_cause="bad release")
    second, msg = _request(h, "--severity P0 --scope app")
    _rate_limit_completion_refresh(h, msg["ts"])
    h.click(msg, ids.APPROVE, "bob")

    # The moment RB-2 reads completed: the configuration breaks, someone asks to restore it.
    wait_until(lambda: store.get(second).state.value == "completed", timeout=30, interval=0.01,
               message="RB-2 completed")
    h.platform.deploy(TARGET, "registry.example/app:bad-2", change_cause="bad config push")
    third, plan_msg = _request(h, "--severity P0 --scope config")
    plan = {s.kind: s for s in store.steps(third)}
    assert f"by RB-{second}" in plan["restore_config"].description, plan["restore_config"]
    h.platform.set_config(TARGET, _config("broken"))
    h.click(plan_msg, ids.APPROVE, "bob")

    rb = h.wait_state(third, "completed", "failed", "needs_attention", timeout=30)
    texts = " ".join(h.thread_texts(plan_msg))
    assert "known-good configuration changed" not in texts + str(rb.last_error)
    assert rb.state.value == "completed", rb.last_error
    step = {s.kind: s for s in store.steps(third)}["restore_config"]
    assert step.status == "done" and step.result.get("changed") is True, step
    assert h.platform.snapshot_config(TARGET).to_dict()["items"] == _config("v2")
    # RB-2 went through the rate-limited refresh (the window this test is about).
    assert any(c.error == "ratelimited" for c in h.emulator.calls("chat.update"))
