"""The decision matrix keeps time (issue 12), driven by the injected clock, under the default
configuration (``rollback.example.yml``: P0 immediate, P1 15 min, P2 1 h, P3 4 h, requests
expire 30 minutes after they are made but never sooner than 15 minutes after their
deadline). Timers run only through ``tick()``: time jumps, never sleeps."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from bot.usecases.timers import DECISION_JOB, EXPIRE_JOB, HOTFIX_JOB, decision_key
from handlers import ids
from sandbox.config import USERGROUP
from tests.e2e.conftest import Harness

DEADLINES = {"P0": timedelta(0), "P1": timedelta(minutes=15), "P2": timedelta(hours=1),
             "P3": timedelta(hours=4)}
GRACE = timedelta(minutes=15)  # expiry_grace_minutes
EXPIRY = timedelta(minutes=30)  # approval_expiry_minutes


def _request(h: Harness, severity: str) -> tuple[Any, dict[str, Any]]:
    h.request(f'hotel-voice-bot --severity {severity} --reason "5xx after v1.3.0"')
    msg = h.rollback_message()
    return h.bot.store.history("hotel-voice-bot")[0], msg


def _blocks(h: Harness, msg: dict[str, Any]) -> str:
    return str(h.message_now(msg["ts"]).get("blocks"))


def _said(h: Harness, msg: dict[str, Any], needle: str) -> str:
    """The thread line containing ``needle``, waited for."""
    found = h.emulator.wait_for(
        lambda: next((t for t in h.thread_texts(msg) if needle in t), None), timeout=10)
    assert found, f"no thread line with {needle!r}: {h.thread_texts(msg)}"
    return str(found)


def _until(h: Harness, at: Any) -> None:
    """Move the clock to ``at`` (never back)."""
    delta = at - h.clock()
    assert delta >= timedelta(0), (at, h.clock())
    h.clock.advance(seconds=delta.total_seconds())


def _events(h: Harness, rid: int) -> list[str]:
    return [e.event for e in h.bot.store.audit_events(rid)]


def _approvers(h: Harness) -> str:
    return f"<!subteam^{h.emulator.usergroup_id(USERGROUP)}>"


def test_p1_escalates_at_15_minutes_without_any_click(harness: Harness) -> None:
    h = harness
    rb, msg = _request(h, "P1")
    start = rb.created_at
    assert rb.decision_due_at == start + DEADLINES["P1"]
    assert "P1 decision due 03:15 UTC." in _blocks(h, msg)

    _until(h, start + timedelta(minutes=14, seconds=59))
    assert h.tick() == 0
    h.clock.advance(seconds=2)
    assert h.tick() == 1
    line = _said(h, msg, "no hotfix reported: roll back now?")
    assert f"*RB-{rb.id} (P1): no hotfix reported: roll back now?*" in line
    assert _approvers(h) in line  # the approvers' group
    assert f"<@{h.emulator.user_id('alice')}>" in line  # the requester (no IC yet)
    assert "Unapproved, RB-" in line and "expires at 03:30 UTC" in line
    assert h.tick() == 0  # ran once, never again
    assert _events(h, rb.id).count("decision_due") == 1
    assert h.bot.store.get(rb.id).state.value == "pending_approval"

    # The expiry the escalation announced comes, and says so in the thread.
    _until(h, start + EXPIRY - timedelta(seconds=1))
    assert h.tick() == 0
    h.clock.advance(seconds=2)
    assert h.tick() == 1
    assert h.bot.store.get(rb.id).state.value == "expired"
    assert "its decision was due 03:15 UTC" in _said(h, msg, "expired without approval")


def test_the_incident_commander_is_asked_at_the_deadline(harness: Harness) -> None:
    h = harness
    rb, msg = _request(h, "P1")
    h.click(msg, ids.ASSIGN_IC, "carol")
    h.emulator.wait_for(lambda: h.bot.store.get(rb.id).incident_commander)
    _until(h, rb.decision_due_at)
    assert h.tick() == 1
    line = _said(h, msg, "roll back now?")
    assert f"<@{h.emulator.user_id('carol')}>" in line
    assert f"<@{h.emulator.user_id('alice')}>" not in line


def test_hotfix_in_progress_extends_p1_once_and_the_message_shows_it(harness: Harness) -> None:
    h = harness
    rb, msg = _request(h, "P1")
    start = rb.created_at
    h.clock.advance(minutes=5)
    h.click(msg, ids.HOTFIX, "carol")
    said = _said(h, msg, "reports a hotfix in progress")
    assert (f"its decision deadline moves from 03:15 UTC to 03:30 UTC (15 min more for the "
            f"hotfix; the deadline moves once per rollback). If no hotfix has landed by 03:30 "
            f"UTC, I will ask the approvers to roll back. Unapproved, RB-{rb.id} expires at "
            "03:45 UTC.") in said
    h.emulator.wait_for(lambda: "decision due 03:30 UTC" in _blocks(h, msg))
    shown = _blocks(h, msg)
    assert (f"P1 decision due 03:30 UTC (extended: <@{h.emulator.user_id('carol')}> reported "
            "a hotfix in progress).") in shown
    assert "expires at 2026-11-29 03:45 UTC" in shown
    assert ids.HOTFIX not in str(h.message_now(msg["ts"]).get("blocks"))  # once: gone
    moved = h.bot.store.get(rb.id)
    assert moved.decision_due_at == start + timedelta(minutes=30)
    assert moved.expires_at == start + timedelta(minutes=45)
    jobs = h.bot.service.jobs.pending(rollback_id=rb.id)
    assert sorted((j.kind, j.due_at) for j in jobs) == [
        (DECISION_JOB, start + timedelta(minutes=30)),
        (EXPIRE_JOB, start + timedelta(minutes=45))]  # the superseded ones are cancelled

    # The same button, still on bob's screen: idempotent, says why, changes nothing.
    before = (h.bot.store.get(rb.id), _events(h, rb.id), jobs)
    h.driver.click("inc-hotel-voice-bot", msg["ts"], ids.HOTFIX, "bob", seen=msg)
    h.wait_ephemeral("bob", "already reported a hotfix in progress")
    assert (h.bot.store.get(rb.id), _events(h, rb.id),
            h.bot.service.jobs.pending(rollback_id=rb.id)) == before

    _until(h, start + timedelta(minutes=29, seconds=59))
    assert h.tick() == 0  # neither the old deadline (03:15) nor the old expiry (03:30)
    assert h.bot.store.get(rb.id).state.value == "pending_approval"
    h.clock.advance(seconds=2)
    assert h.tick() == 1
    line = _said(h, msg, "roll back now?")
    assert (f"the hotfix <@{h.emulator.user_id('carol')}> reported is not confirmed by its "
            "extended deadline (03:30 UTC): roll back now?") in line
    assert _approvers(h) in line
    _until(h, start + timedelta(minutes=45, seconds=1))
    assert h.tick() == 1
    assert h.bot.store.get(rb.id).state.value == "expired"
    assert _events(h, rb.id).count("hotfix_in_progress") == 1


def test_hotfix_after_the_deadline_gives_a_new_window_from_the_click(harness: Harness) -> None:
    h = harness
    rb, msg = _request(h, "P1")
    _until(h, rb.decision_due_at + timedelta(minutes=5))  # 03:20: escalated already
    assert h.tick() == 1
    h.click(msg, ids.HOTFIX, "bob")
    _said(h, msg, "moves from 03:15 UTC to 03:35 UTC")
    assert h.bot.store.get(rb.id).expires_at == rb.created_at + timedelta(minutes=50)
    _until(h, rb.created_at + timedelta(minutes=35, seconds=1))
    assert h.tick() == 1
    assert len([t for t in h.thread_texts(msg) if "roll back now?" in t]) == 2


def test_a_deadline_moved_without_its_job_still_escalates(harness: Harness) -> None:
    """A crash between moving the deadline (the row) and scheduling its job: the job of the
    old deadline finds it moved, schedules the current one and says nothing itself."""
    h = harness
    rb, msg = _request(h, "P1")
    start = rb.created_at
    h.bot.store.report_hotfix(rb.id, user=h.emulator.user_id("carol"),
                              decision_due_at=start + timedelta(minutes=30),
                              expires_at=start + timedelta(minutes=45))
    _until(h, start + timedelta(minutes=15, seconds=1))
    assert h.tick() == 1  # the stale deadline job: silent
    assert not any("roll back now?" in t for t in h.thread_texts(msg))
    assert "decision_due" not in _events(h, rb.id)
    _until(h, start + timedelta(minutes=30, seconds=1))
    assert h.tick() == 2  # the old expiry (stale, silent) and the new deadline
    _said(h, msg, "roll back now?")
    assert h.bot.store.get(rb.id).state.value == "pending_approval"
    _until(h, start + timedelta(minutes=45, seconds=1))
    assert h.tick() == 1
    assert h.bot.store.get(rb.id).state.value == "expired"


def _escalations(h: Harness, msg: dict[str, Any]) -> list[str]:
    return [t for t in h.thread_texts(msg) if "roll back now?" in t]


def test_the_escalation_is_posted_once_per_deadline_whatever_runs_it(
        make_harness: Callable[..., Harness]) -> None:
    """Two job rows for one deadline (one of the kind an earlier version scheduled), then a
    leader that died after Slack accepted the escalation but before it marked anything done:
    the thread has one escalation, and the audit trail one ``decision_due``."""
    first: Harness = make_harness()
    rb, msg = _request(first, "P1")
    due = rb.decision_due_at
    first.bot.service.jobs.schedule(kind=HOTFIX_JOB, due_at=due, rollback_id=rb.id,
                                    dedupe_key=f"{HOTFIX_JOB}:{rb.id}")  # an older row
    _until(first, due)
    assert first.tick() == 2  # both rows ran
    assert len(_escalations(first, msg)) == 1
    assert _events(first, rb.id).count("decision_due") == 1

    # What a leader SIGKILLed right after Slack accepted the post leaves behind: the
    # outbox attempt counted but not marked sent, the job still claimed ('running').
    key = decision_key(rb.id, due)
    with psycopg.connect(first.bot.database_url, autocommit=True) as conn:
        assert conn.execute("UPDATE outbox SET status = 'pending', ts = NULL, sent_at = NULL"
                            " WHERE key = %s AND attempts = 1", (key,)).rowcount == 1
        assert conn.execute("UPDATE scheduled_jobs SET status = 'running', finished_at = NULL"
                            " WHERE dedupe_key = %s", (key,)).rowcount == 1
    first.stack.owns_emulator = False  # Slack outlives the bot process
    first.stack.stop()  # its leader connection closes: the lock is free
    second: Harness = make_harness(emulator=first.emulator)  # same database and workspace
    first.stack.owns_emulator = True  # so the fixture stops it at the end
    _until(second, due)
    assert second.tick() == 1  # the new leader re-queued the claimed row and ran it
    assert len(_escalations(second, msg)) == 1  # found in Slack by its key, not reposted
    assert _events(second, rb.id).count("decision_due") == 1
    assert second.bot.service.jobs.pending(kinds=[DECISION_JOB, HOTFIX_JOB]) == []


def test_an_approver_group_slack_does_not_know_is_named_not_mentioned(
        make_harness: Callable[..., Harness]) -> None:
    """The escalation still goes out; the group it cannot mention is named as text that says
    nobody in it was notified, never as a broken ``<!subteam^…>``."""
    def config(data: dict[str, Any]) -> None:
        data["slack"]["approvers"] = {"usergroup": "sre-oncall-typo", "users": []}

    h: Harness = make_harness(config_overrides=config)
    rb, msg = _request(h, "P1")
    _until(h, rb.decision_due_at)
    assert h.tick() == 1
    line = _said(h, msg, "roll back now?")
    assert ("@sre-oncall-typo (a Slack group I could not resolve: nobody in it was notified), "
            f"<@{h.emulator.user_id('alice')}>: approve the rollback") in line
    assert "subteam" not in line


def test_p2_escalates_after_an_hour_under_the_default_configuration(harness: Harness) -> None:
    h = harness
    rb, msg = _request(h, "P2")
    start = rb.created_at
    assert "P2 decision due 04:00 UTC." in _blocks(h, msg)
    _until(h, start + timedelta(minutes=31))
    assert h.tick() == 0  # no expiry at 30 minutes any more
    assert h.bot.store.get(rb.id).state.value == "pending_approval"
    _until(h, start + timedelta(minutes=60, seconds=1))
    assert h.tick() == 1
    line = _said(h, msg, "Evaluation window")
    assert f"Evaluation window for RB-{rb.id} (P2) has ended" in line
    assert _approvers(h) in line and f"<@{h.emulator.user_id('alice')}>" in line
    assert "expires at 04:15 UTC" in line
    assert h.bot.store.get(rb.id).state.value == "pending_approval"
    _until(h, start + timedelta(minutes=75, seconds=1))
    assert h.tick() == 1
    assert h.bot.store.get(rb.id).state.value == "expired"
    _said(h, msg, "expired without approval (its decision was due 04:00 UTC)")


def test_p2_reminder_fires_when_expiry_is_longer(make_harness: Callable[..., Harness]) -> None:
    """A longer ``approval_expiry_minutes`` still holds: expiry is the later of the two."""
    h: Harness = make_harness(config_overrides=lambda d: d["policy"].update(
        approval_expiry_minutes=120))
    rb, msg = _request(h, "P2")
    h.clock.advance(minutes=60, seconds=1)
    assert h.tick() == 1
    _said(h, msg, "Evaluation window")
    assert rb.expires_at == rb.created_at + timedelta(minutes=120)
    assert h.bot.store.get(rb.id).state.value == "pending_approval"


def test_p3_plans_the_pinned_revision_for_the_next_deployment_at_4_hours(
        harness: Harness) -> None:
    h = harness
    rb, msg = _request(h, "P3")
    start = rb.created_at
    assert "P3 decision due 07:00 UTC." in _blocks(h, msg)
    _until(h, start + timedelta(hours=3, minutes=59, seconds=59))
    assert h.tick() == 0
    assert h.bot.store.get(rb.id).state.value == "pending_approval"  # not expired at 30 min
    h.clock.advance(seconds=2)
    assert h.tick() == 1
    line = _said(h, msg, "plan for the next deployment")
    assert f"ship the pinned revision {rb.target_revision.label()} with the next deployment" \
        in line
    assert _approvers(h) in line and "*Override and approve*" in line
    _until(h, start + timedelta(hours=4, minutes=15, seconds=1))
    assert h.tick() == 1
    assert h.bot.store.get(rb.id).state.value == "expired"


@pytest.mark.parametrize("severity", list(DEADLINES))
def test_no_request_expires_before_its_deadline(harness: Harness, severity: str) -> None:
    h = harness
    rb, msg = _request(h, severity)
    start = rb.created_at
    assert rb.decision_due_at == start + DEADLINES[severity]
    assert rb.expires_at == max(start + EXPIRY, rb.decision_due_at + GRACE)
    assert f"{severity} decision due {rb.decision_due_at:%H:%M} UTC." in _blocks(h, msg)
    if DEADLINES[severity]:
        _until(h, rb.decision_due_at - timedelta(seconds=1))
        assert h.tick() == 0
    _until(h, rb.decision_due_at)
    assert h.tick() == 1  # the escalation, and the request is still pending
    assert h.bot.store.get(rb.id).state.value == "pending_approval"
    _until(h, rb.expires_at - timedelta(seconds=1))
    assert h.tick() == 0
    assert h.bot.store.get(rb.id).state.value == "pending_approval"
    h.clock.advance(seconds=1)
    assert h.tick() == 1
    assert h.bot.store.get(rb.id).state.value == "expired"
    events = _events(h, rb.id)
    assert events.index("decision_due") < events.index("expire")


def test_a_decision_makes_the_deadline_inert(make_harness: Callable[..., Harness]) -> None:
    h: Harness = make_harness(background=False)  # approved, not executed
    rid, msg = h.request_and_approve_p1()
    h.wait_state(rid, "approved")
    assert h.emulator.wait_for(lambda: h.bot.service.jobs.pending(
        rollback_id=rid, kinds=[DECISION_JOB, EXPIRE_JOB]) == [])
    h.clock.advance(minutes=16)
    h.tick()
    assert not any("roll back now?" in t for t in h.thread_texts(msg))
    assert "decision_due" not in _events(h, rid)


def test_timers_survive_a_restart(make_harness: Callable[..., Harness]) -> None:
    """Timers are rows: a new process (new scheduler) finds and runs them."""
    first: Harness = make_harness()
    rb, _ = _request(first, "P1")
    assert first.bot.service.jobs.pending(rollback_id=rb.id, kinds=[DECISION_JOB])
    first.stack.owns_emulator = False  # Slack outlives the bot process
    first.stack.stop()
    second: Harness = make_harness(emulator=first.emulator)  # same database and workspace
    first.stack.owns_emulator = True  # so the fixture stops it at the end
    second.clock.advance(minutes=16)
    assert second.tick() == 1
    assert second.bot.service.jobs.pending(kinds=[DECISION_JOB]) == []
