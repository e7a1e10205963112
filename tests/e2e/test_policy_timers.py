"""Decision-matrix timers driven by an injected clock: P1 hotfix window, P2 evaluation."""

from __future__ import annotations

from handlers import ids
from tests.e2e.conftest import Harness


def test_p1_hotfix_window_escalates_after_15_minutes(harness: Harness) -> None:
    h = harness
    h.request("hotel-voice-bot --severity P1")
    msg = h.rollback_message()
    rb = h.bot.store.history("hotel-voice-bot")[0]
    h.click(msg, ids.HOTFIX, "carol")
    h.emulator.wait_for(lambda: any("hotfix in progress" in t for t in h.thread_texts(msg)))
    h.click(msg, ids.HOTFIX, "carol")  # a second click does not start a second window
    h.wait_ephemeral("carol", "already running")

    h.clock.advance(minutes=14, seconds=59)
    assert h.tick() == 0
    assert not any("hotfix window" in t for t in h.thread_texts(msg))
    h.clock.advance(seconds=2)
    assert h.tick() == 1
    h.emulator.wait_for(lambda: any("hotfix window for" in t.lower() for t in
                                    h.thread_texts(msg)))
    escalation = next(t for t in h.thread_texts(msg) if "hotfix window for" in t.lower())
    assert f"<@{h.emulator.user_id('alice')}>" in escalation  # requester (no IC yet)
    assert h.tick() == 0  # ran once, never again
    events = [e.event for e in h.bot.store.audit_events(rb.id)]
    assert events.count("hotfix_window_elapsed") == 1


def test_p2_evaluation_reminder_after_an_hour(harness: Harness) -> None:
    h = harness
    h.request("hotel-voice-bot --severity P2")
    h.rollback_message()
    h.clock.advance(minutes=29)
    assert h.tick() == 0
    # approval expiry (30 min) fires before the 60-minute evaluation reminder
    h.clock.advance(minutes=2)
    assert h.tick() == 1
    rb = h.bot.store.history("hotel-voice-bot")[0]
    assert rb.state.value == "expired"
    h.clock.advance(minutes=40)
    assert h.tick() == 0  # the reminder was cancelled with the request


def test_p2_reminder_fires_when_expiry_is_longer(make_harness) -> None:
    h: Harness = make_harness(config_overrides=lambda d: d["policy"].update(
        approval_expiry_minutes=120))
    h.request("hotel-voice-bot --severity P2")
    msg = h.rollback_message()
    h.clock.advance(minutes=60, seconds=1)
    assert h.tick() == 1
    h.emulator.wait_for(lambda: any("Evaluation window" in t for t in h.thread_texts(msg)))
    assert h.bot.store.history("hotel-voice-bot")[0].state.value == "pending_approval"


def test_timers_survive_a_restart(make_harness) -> None:
    """Timers are rows: a new process (new scheduler) finds and runs them."""
    first: Harness = make_harness()
    first.request("hotel-voice-bot --severity P1")
    msg = first.rollback_message()
    first.click(msg, ids.HOTFIX, "carol")
    first.emulator.wait_for(lambda: first.bot.service.jobs.pending(kinds=["hotfix_escalation"]))
    first.stack.owns_emulator = False  # Slack outlives the bot process
    first.stack.stop()
    second: Harness = make_harness(emulator=first.emulator)  # same database and workspace
    first.stack.owns_emulator = True  # so the fixture stops it at the end
    second.clock.advance(minutes=16)
    assert second.tick() == 1
    assert second.bot.service.jobs.pending(kinds=["hotfix_escalation"]) == []
