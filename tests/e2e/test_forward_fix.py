"""The runbook's "Plan forward fix", end to end: a completed rollback asks for the fix's link
and root cause in its thread, reminders fire on the injected clock until someone records it
(the dialog or ``/rollback forward-fix``) or waives it with a reason, and the known-bad mark
of the rolled-back revision shows the link. Real bot, Slack emulator, PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.aftercare.forward_fix import FORWARD_FIX_JOB
from handlers import ids
from tests.e2e.conftest import CHANNEL, Harness, action_ids
from tests.support.waiting import wait_until

SERVICE = "hotel-voice-bot"
LINK = "https://github.com/acme/hotel-voice-bot/pull/812"


def _asks(h: Harness, msg: dict[str, Any], rid: int) -> list[dict[str, Any]]:
    return [m for m in h.emulator.thread(CHANNEL, msg["ts"])[1:]
            if f"Forward fix for RB-{rid}" in str(m.get("blocks")) + m.get("text", "")]


def _completed(h: Harness) -> tuple[int, dict[str, Any]]:
    """alice requests a P1, carol commands, bob approves; it completes (the sandbox has no
    stability window) and the first ask is scheduled."""
    rid, msg = h.request_and_approve_p1()
    h.wait_state(rid, "completed")
    wait_until(lambda: h.bot.service.jobs.pending(rollback_id=rid, kinds=[FORWARD_FIX_JOB]),
               10, 0.02, "the forward-fix ask to be scheduled")
    return rid, msg


def _status(h: Harness, rid: int) -> str:
    with h.bot.store.pool.connection() as conn:
        row = conn.execute("SELECT status FROM forward_fixes WHERE rollback_id = %s",
                           (rid,)).fetchone()
    return str(row[0]) if row else "none"


def _audited(h: Harness, rid: int, event: str) -> list[Any]:
    return [e for e in h.bot.store.audit_events(rid) if e.event == event]


def test_the_ask_reminds_until_the_link_is_given_and_the_mark_shows_it(
        harness: Harness) -> None:
    h = harness
    rid, msg = _completed(h)
    h.tick()
    asks = h.emulator.wait_for(lambda: _asks(h, msg, rid), timeout=10)
    assert len(asks) == 1
    first = asks[0]
    assert first["text"].startswith(f"<@{h.emulator.user_id('carol')}>")  # the commander
    assert action_ids(first) == [ids.FORWARD_FIX_RECORD, ids.FORWARD_FIX_WAIVE]
    h.tick()
    assert len(_asks(h, msg, rid)) == 1  # nothing before the next one is due

    h.clock.advance(hours=24)
    h.tick()
    h.emulator.wait_for(lambda: len(_asks(h, msg, rid)) == 2, timeout=10)
    assert "Reminder: Forward fix" in str(_asks(h, msg, rid)[1]["blocks"])

    # Nobody in particular: refused at the click, no dialog opens, nothing changes.
    h.driver.click(CHANNEL, first["ts"], ids.FORWARD_FIX_RECORD, "dave")
    h.wait_ephemeral("dave", "can record the forward fix")
    assert h.emulator.open_views("dave") == [] and _status(h, rid) == "open"

    # A link with credentials in it is refused in the dialog, which stays open.
    h.driver.click(CHANNEL, first["ts"], ids.FORWARD_FIX_RECORD, "alice")
    h.emulator.wait_for(lambda: h.emulator.open_views("alice"), timeout=10)
    bad = h.driver.submit_view("alice", {
        "link": "https://alice:hunter2hunter2@github.com/acme/hotel-voice-bot/pull/812"})
    assert bad.view_result == "errors"
    assert "credentials" in bad.body and "hunter2" not in bad.body
    assert _status(h, rid) == "open" and not _audited(h, rid, "forward_fix_given")
    # ... and so is one that is not an http(s) address, typed as a command.
    reply = h.request(f"forward-fix RB-{rid} ftp://files.example/fix")
    assert "not an http(s) URL" in reply.body
    assert _status(h, rid) == "open"

    good = h.driver.submit_view("alice", {"link": LINK,
                                          "root_cause": "a cache key without the tenant"})
    assert good.view_result == "closed"
    wait_until(lambda: _status(h, rid) == "given", 10, 0.02, "the link to be recorded")
    h.emulator.wait_for(lambda: any(LINK in t and "a cache key" in t
                                    for t in h.thread_texts(msg)), timeout=10)
    h.emulator.wait_for(lambda: all(action_ids(h.emulator.message(CHANNEL, a["ts"])) == []
                                    for a in _asks(h, msg, rid)), timeout=10)
    given = _audited(h, rid, "forward_fix_given")
    assert [(e.actor, e.detail["link"]) for e in given] == [(h.emulator.user_id("alice"), LINK)]

    h.clock.advance(hours=48)
    h.tick()
    assert len(_asks(h, msg, rid)) == 2  # answered: no more reminders
    assert not h.bot.service.jobs.pending(rollback_id=rid, kinds=[FORWARD_FIX_JOB])

    # The known-bad mark of the revision rolled back from shows the link.
    h.request(f"history {SERVICE}")
    history = h.wait_ephemeral("alice", f"History of {SERVICE}")
    assert f"forward fix: <{LINK}>" in history and "known-bad rev 3" in history
    h.request(f"known-bad {SERVICE}")
    assert f"fix: <{LINK}>" in h.wait_ephemeral("alice", "Known-bad revisions")

    # A second answer is refused: the first one stands.
    h.request(f"forward-fix RB-{rid} https://example.com/other", user="bob")
    h.wait_ephemeral("bob", "already given")


def test_waiving_needs_an_accountable_person_and_a_reason_and_stops_the_reminders(
        make_harness: Callable[..., Harness]) -> None:
    def short(data: dict[str, Any]) -> None:
        data["aftercare"]["forward_fix_stop_after_days"] = 2
    h = make_harness(config_overrides=short)
    rid, msg = _completed(h)
    h.tick()
    h.emulator.wait_for(lambda: _asks(h, msg, rid), timeout=10)

    # The requester alone may not decide there is nothing to fix.
    h.request(f"forward-fix RB-{rid} --waive config-only change")
    h.wait_ephemeral("alice", "can waive the forward fix")
    reply = h.request(f"forward-fix RB-{rid} --waive", user="bob")
    assert "required" in reply.body
    assert _status(h, rid) == "open"

    h.request(f'forward-fix RB-{rid} --waive "config-only change, nothing to fix"', user="bob")
    h.wait_ephemeral("bob", "waived")
    wait_until(lambda: _status(h, rid) == "waived", 10, 0.02, "the waiver")
    waived = _audited(h, rid, "forward_fix_waived")
    assert [(e.actor, e.detail["reason"]) for e in waived] == [
        (h.emulator.user_id("bob"), "config-only change, nothing to fix")]
    h.emulator.wait_for(lambda: any("waived by" in t for t in h.thread_texts(msg)), timeout=10)
    for _ in range(3):
        h.clock.advance(hours=24)
        h.tick()
    assert len(_asks(h, msg, rid)) == 1


def test_the_chase_stops_after_the_configured_days_with_a_final_note(
        make_harness: Callable[..., Harness]) -> None:
    def short(data: dict[str, Any]) -> None:
        data["aftercare"]["forward_fix_stop_after_days"] = 2
    h = make_harness(config_overrides=short)
    rid, msg = _completed(h)
    for _ in range(5):
        h.tick()
        h.clock.advance(hours=24)
    h.tick()
    asks = _asks(h, msg, rid)
    assert len(asks) == 3  # at once, after 24 h, and the last at 48 h
    assert "Last reminder" in str(asks[-1]["blocks"])
    assert _status(h, rid) == "expired"
    # Recording it later still works and shows on the mark.
    h.request(f"forward-fix RB-{rid} {LINK} late but found", user="carol")
    wait_until(lambda: _status(h, rid) == "given", 10, 0.02, "the late link")


def test_the_reminders_survive_a_restart_and_post_once(
        make_harness: Callable[..., Harness]) -> None:
    h = make_harness()
    rid, msg = _completed(h)
    h.tick()
    h.emulator.wait_for(lambda: len(_asks(h, msg, rid)) == 1, timeout=10)
    # The bot goes away (the emulator and the database stay): the next ask is a row, not a
    # timer in a process.
    stack = h.stack
    assert stack.server is not None and stack.bot is not None
    stack.server.stop()
    stack.bot.stop()
    stack.server = stack.bot = None
    again = make_harness(emulator=h.emulator)  # the same database (this test's)
    again.clock.advance(hours=25)
    again.tick()
    again.tick()
    h.emulator.wait_for(lambda: len(_asks(h, msg, rid)) == 2, timeout=10)
    assert "Reminder: Forward fix" in str(_asks(h, msg, rid)[1]["blocks"])
    again.request(f"forward-fix RB-{rid} {LINK}", user="carol")
    wait_until(lambda: _status(again, rid) == "given", 10, 0.02, "the link after the restart")
