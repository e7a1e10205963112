"""After the steps with an injected clock: ticks, report, regression alert and its buttons,
stakeholder notices, reminders. The demo service is real HTTP; timers run via ``tick()``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.persistence.aftercare_store import AftercareStore
from handlers import ids
from sandbox.demo import DemoService
from sandbox.slack import ElementNotFound
from tests.e2e.conftest import CHANNEL, Harness, action_ids
from tests.support.demo import health_monitored
from tests.support.waiting import wait_until

STAKEHOLDERS = "hotel-voice-bot-stakeholders"



def _thread(h: Harness, msg: dict[str, Any]) -> list[dict[str, Any]]:
    return h.emulator.thread(CHANNEL, msg["ts"])[1:]


def _find(h: Harness, msg: dict[str, Any], needle: str) -> dict[str, Any]:
    found = h.emulator.wait_for(
        lambda: next((m for m in _thread(h, msg) if needle in m.get("text", "")), None),
        timeout=10, description=f"a thread message containing {needle!r}")
    return dict(found)


def test_window_ticks_then_reports_and_completes(make_harness: Callable[..., Harness],
                                                 demo: DemoService, tmp_path: Path) -> None:
    h = make_harness(config_overrides=health_monitored(demo.url, tmp_path))
    rid, msg = h.request_and_approve_p1()
    h.wait_state(rid, "monitoring")
    verification = _find(h, msg, "Verification of")
    assert "passed" in verification["text"] and "✅ health: HTTP 200" in verification["text"]
    assert "✅ resources:" in verification["text"]
    _find(h, msg, "Monitoring hotel-voice-bot until 03:10 UTC")

    assert h.tick() == 1  # the stakeholder notice; the first check is 5 minutes away
    notice = h.emulator.messages(STAKEHOLDERS)[-1]["text"]
    assert "Hotel Voice Bot Rollback Completed" in notice
    assert "Total downtime: 0 s (since the rollback request at 2026-11-29 03:00:00 UTC)" in notice

    h.clock.advance(minutes=5)
    assert h.tick() == 1
    assert "Check 1/2: health ok: HTTP 200" in _find(h, msg, "Check 1/2")["text"]
    assert h.bot.store.get(rid).state.value == "monitoring"

    h.clock.advance(minutes=5)
    h.tick()
    report = _find(h, msg, "Stability report")
    assert "Health:* 2/2 checks passed" in report["text"]
    assert "Latency:* min" in report["text"]
    chart = next(f for f in h.emulator.files() if f["name"] == f"stability-RB-{rid}-1.png")
    assert h.emulator.file_content(chart["id"]).startswith(b"\x89PNG\r\n\x1a\n")
    assert h.wait_state(rid, "completed")
    _find(h, msg, f"RB-{rid} completed: hotel-voice-bot is on rev 2")
    _wait_reminders_scheduled(h, rid)
    assert h.tick() >= 2  # the "stable" stakeholder update and the reminders
    assert "stable" in h.emulator.messages(STAKEHOLDERS)[-1]["text"]
    assert h.tick() == 0  # nothing runs twice


def test_regression_alerts_the_commander_and_offers_next_actions(
        make_harness: Callable[..., Harness], demo: DemoService, tmp_path: Path) -> None:
    h = make_harness(config_overrides=health_monitored(demo.url, tmp_path))
    rid, msg = h.request_and_approve_p1()
    h.wait_state(rid, "monitoring")
    demo.break_()  # health answers 503 from now on
    h.clock.advance(minutes=5)
    h.tick()
    assert "health FAILED: HTTP 503" in _find(h, msg, "Check 1/2")["text"]
    assert h.bot.store.get(rid).state.value == "monitoring"  # one failure is not a trend
    h.clock.advance(minutes=5)
    h.tick()
    alert = _find(h, msg, "is unstable after the rollback")
    assert alert["text"].startswith(f"<@{h.emulator.user_id('carol')}>")  # the commander
    assert "2 consecutive failed health checks" in alert["text"]
    assert action_ids(alert) == [ids.RESUME_MONITORING, ids.ALERT_RESOLVE]
    assert h.wait_state(rid, "unstable")
    assert "Stability report" not in str(h.thread_texts(msg))

    h.driver.click(CHANNEL, alert["ts"], ids.RESUME_MONITORING, "dave")
    h.wait_ephemeral("dave", "Only an approver or the incident commander")
    demo.heal()
    h.driver.click(CHANNEL, alert["ts"], ids.RESUME_MONITORING, "carol")
    h.wait_state(rid, "monitoring")
    h.emulator.wait_for(lambda: action_ids(h.emulator.message(CHANNEL, alert["ts"])) == [])
    assert "resumed monitoring" in str(h.emulator.message(CHANNEL, alert["ts"])["blocks"])
    with pytest.raises(ElementNotFound):  # no stale buttons
        h.driver.click(CHANNEL, alert["ts"], ids.RESUME_MONITORING, "carol")
    h.clock.advance(minutes=10)
    h.tick()
    h.clock.advance(minutes=1)
    h.tick()  # the resumed window's second check was due at +10 min: caught up now
    h.wait_state(rid, "completed")
    assert [m.status for m in _monitors(h, rid)] == ["unstable", "stable"]


def _wait_reminders_scheduled(h: Harness, rid: int) -> None:
    """Reminders are scheduled just after the completion commits (no Slack call to wait on)."""
    wait_until(lambda: h.bot.service.jobs.pending(rollback_id=rid, kinds=["reminder"]), 10, 0.02,
               "the reminders to be scheduled")


def _monitors(h: Harness, rid: int) -> list[Any]:
    return AftercareStore(h.bot.store.pool).monitors(rid)


def test_reminders_with_post_mortem_skeleton_snooze_and_done(
        make_harness: Callable[..., Harness], demo: DemoService, tmp_path: Path) -> None:
    h = make_harness(config_overrides=health_monitored(demo.url, tmp_path, duration_seconds=0))
    rid, msg = h.request_and_approve_p1()
    h.wait_state(rid, "completed")
    _wait_reminders_scheduled(h, rid)
    h.tick()  # stakeholder notices and both reminders (P1: review and post-mortem)
    review = _find(h, msg, "Post-incident review for")
    pm = _find(h, msg, "Post-mortem for")
    assert "due by 2026-11-30 03:00:00 UTC" in review["text"]
    assert "due by 2026-12-01 03:00:00 UTC" in pm["text"]
    installation = AftercareStore(h.bot.store.pool).installation_id()
    name = f"2026-11-29-{installation}-hotel-voice-bot-rb-{rid}.md"
    path = tmp_path / "post-mortems" / name
    skeleton = path.read_text()
    assert f"attached as `{name}`" in pm["text"] + str(pm["blocks"])
    assert str(tmp_path) not in str(pm)  # the file's name, never the bot's local path
    for expected in ("# Post-mortem: hotel-voice-bot rollback", "| Rollback requested |",
                     "| Approved |", "Step 1 done:", "| Verification passed |",
                     "| Monitoring ended: stable |", "## Root cause", "## Lessons learned"):
        assert expected in skeleton, expected
    attached = next(f for f in h.emulator.files() if f["name"] == name)
    assert h.emulator.file_content(attached["id"]).decode() == skeleton
    assert action_ids(pm) == [ids.REMINDER_SCHEDULED, ids.REMINDER_DONE, ids.REMINDER_SNOOZE]

    h.driver.click(CHANNEL, review["ts"], ids.REMINDER_SNOOZE, "carol")
    h.emulator.wait_for(lambda: action_ids(h.emulator.message(CHANNEL, review["ts"])) == [])
    assert "Snoozed by" in str(h.emulator.message(CHANNEL, review["ts"])["blocks"])
    h.driver.click(CHANNEL, pm["ts"], ids.REMINDER_DONE, "carol")
    h.emulator.wait_for(lambda: "Done" in str(h.emulator.message(CHANNEL, pm["ts"])["blocks"]))

    h.clock.advance(hours=3, minutes=59)
    assert h.tick() == 0
    h.clock.advance(minutes=2)
    assert h.tick() == 1  # the snoozed review reminder
    again = _find(h, msg, "Reminder: Post-incident review")
    h.driver.click(CHANNEL, again["ts"], ids.REMINDER_SCHEDULED, "bob")
    h.emulator.wait_for(lambda: action_ids(h.emulator.message(CHANNEL, again["ts"])) == [])
    h.clock.advance(hours=72)
    h.tick()  # the deadline reminders wake up and find both closed
    texts = h.thread_texts(msg)
    assert sum("Post-incident review for" in t for t in texts) == 2
    assert sum("Post-mortem for" in t for t in texts) == 1
    events = [e.event for e in h.bot.store.audit_events(rid)]
    assert {"review_snoozed", "postmortem_done", "review_scheduled"} <= set(events)


def test_mark_resolved_on_the_alert_closes_it_everywhere(
        make_harness: Callable[..., Harness], demo: DemoService, tmp_path: Path) -> None:
    h = make_harness(config_overrides=health_monitored(demo.url, tmp_path,
                                              consecutive_health_failures=1))
    rid, msg = h.request_and_approve_p1()
    h.wait_state(rid, "monitoring")
    demo.break_()
    h.clock.advance(minutes=5)
    h.tick()
    alert = _find(h, msg, "is unstable after the rollback")
    h.wait_state(rid, "unstable")
    h.driver.click(CHANNEL, alert["ts"], ids.ALERT_RESOLVE, "bob")
    h.wait_state(rid, "completed")
    h.emulator.wait_for(lambda: action_ids(h.emulator.message(CHANNEL, alert["ts"])) == [])
    assert "closed RB-" in str(h.emulator.message(CHANNEL, alert["ts"])["blocks"])
    # the pinned message too: only the read-only Timeline button is left
    assert action_ids(h.message_now(msg["ts"])) == [ids.TIMELINE]
    h.tick()
    updates = [m["text"] for m in h.emulator.messages(STAKEHOLDERS)]
    assert any("unstable after the rollback" in t for t in updates)
    assert "incident closed" in updates[-1]
