"""Request -> approve by a second user -> executing -> completed, through Slack's wire protocol.

Every assertion reads what Slack (the emulator) holds: the pinned message, its buttons
at each state, the thread, and the ephemeral refusals people would see.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from handlers import ids
from sandbox.slack import ElementNotFound, Signing
from tests.e2e.conftest import CHANNEL, Harness, action_ids
from tests.support.waiting import wait_until


def _rollback_id(h: Harness) -> int:
    msg = h.rollback_message()
    return int(msg["text"].split()[0].removeprefix("RB-"))


def _ready_p1(h: Harness, *, requester: str = "alice") -> tuple[int, dict]:
    """A P1 request with its incident commander assigned (the P1 checklist gate)."""
    reply = h.request('hotel-voice-bot --severity P1 --reason "5xx after v1.3.0"',
                      user=requester)
    assert reply.status == 200 and "Preparing the rollback plan" in reply.body
    msg = h.rollback_message()
    rid = _rollback_id(h)
    h.emulator.wait_for(lambda: "Assessment" in str(h.message_now(msg["ts"])["blocks"]))
    h.click(msg, ids.ASSIGN_IC, "carol")
    h.emulator.wait_for(lambda: ids.ASSIGN_IC not in action_ids(h.message_now(msg["ts"])))
    return rid, msg


def test_request_approve_execute_complete(harness: Harness) -> None:
    h = harness
    rid, msg = _ready_p1(h)
    pending = h.message_now(msg["ts"])
    text = str(pending["blocks"])
    assert "Pending approval" in text and "rev 2" in text  # pinned target shown
    assert "registry.example/app:v1.2.0" in text
    assert set(action_ids(pending)) >= {ids.APPROVE, ids.REJECT, ids.HOTFIX, ids.CANCEL}
    assert ids.ASSIGN_IC not in action_ids(pending)  # carol took it
    assert h.emulator.pins(CHANNEL), "the request message is pinned"
    # recent logs were attached to the thread as a file
    assert any("logs" in f.get("name", "") for f in h.emulator.files())

    h.click(msg, ids.APPROVE, "bob")
    done = h.wait_state(rid, "completed")
    assert done.approver == h.emulator.user_id("bob")

    h.emulator.wait_for(lambda: any(" completed:" in t for t in h.thread_texts(msg)))
    final = h.message_now(msg["ts"])
    assert "Completed" in str(final["blocks"])
    assert action_ids(final) == [ids.TIMELINE]  # no stale decisions: only the read-only record
    thread = "\n".join(h.thread_texts(msg))
    assert "Executing RB-" in thread and "Step 1/2" in thread and "Step 2/2" in thread
    assert f"RB-{rid} completed: hotel-voice-bot is on rev" in thread
    assert h.platform.mutations()["rollback_to"] == 1
    assert h.platform.current_revision(h.bot.service.store.get(rid).target).id == "rs-2"
    # The message was re-rendered many times, and nothing is kept per rollback for it
    # once the renders are over (a long-lived process kept one lock per rollback). That a
    # render in flight does count is tests/integration/test_latest_state_renders.py's.
    assert len(h.emulator.calls("chat.update")) >= 3
    wait_until(lambda: h.bot.executor.chat.renders_in_progress() == 0, 10,
               message="the renders to finish")
    events = [e.event for e in h.bot.store.audit_events(rid)]
    assert events[0] == "requested" and "approve" in events and events[-1] == "stable"
    stakeholders = h.emulator.messages("hotel-voice-bot-stakeholders")
    assert any("rollback RB-" in m["text"] for m in stakeholders)


def test_self_approval_is_refused_without_break_glass(harness: Harness) -> None:
    h = harness
    rid, msg = _ready_p1(h, requester="bob")  # bob is an approver, but requested it
    h.click(msg, ids.APPROVE, "bob")
    h.wait_ephemeral("bob", "Four-eyes rule")
    assert h.bot.store.get(rid).state.value == "pending_approval"


def test_non_approver_is_refused(harness: Harness) -> None:
    h = harness
    rid, msg = _ready_p1(h)
    h.click(msg, ids.APPROVE, "dave")
    h.wait_ephemeral("dave", "Only approvers")
    assert h.bot.store.get(rid).state.value == "pending_approval"
    assert h.platform.mutations()["rollback_to"] == 0


def test_channel_outside_allowed_patterns_is_refused(harness: Harness) -> None:
    h = harness
    h.emulator.add_channel("general", members=["alice", "bob"])
    h.request("hotel-voice-bot --severity P1", channel="general")
    h.wait_ephemeral("alice", "only be requested and approved in incident channels")
    assert h.bot.store.history("hotel-voice-bot") == []


def test_expired_request_is_refused_then_expires(harness: Harness) -> None:
    h = harness
    rid, msg = _ready_p1(h)
    h.clock.advance(minutes=31)
    h.click(msg, ids.APPROVE, "bob")  # the button is still there until the timer runs
    h.wait_ephemeral("bob", "expired")
    assert h.tick() >= 1
    expired = h.wait_state(rid, "expired")
    assert expired.finished_at is not None
    assert action_ids(h.message_now(msg["ts"])) == [ids.TIMELINE]
    with pytest.raises(ElementNotFound):
        h.click(msg, ids.APPROVE, "bob")


def test_twenty_concurrent_approvals_execute_once(harness: Harness) -> None:
    h = harness
    rid, msg = _ready_p1(h)
    current = h.message_now(msg["ts"])
    with ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(
            lambda i: h.driver.click(CHANNEL, current["ts"], ids.APPROVE,
                                     "bob" if i % 2 else "carol", seen=current), range(20)))
    assert all(r.status == 200 for r in replies)
    h.wait_state(rid, "completed")
    assert h.platform.mutations()["rollback_to"] == 1
    assert [e.event for e in h.bot.store.audit_events(rid)].count("approve") == 1
    h.emulator.wait_for(lambda: len(h.ephemeral_texts("bob") + h.ephemeral_texts("carol"))
                        >= 19)
    refusals = h.ephemeral_texts("bob") + h.ephemeral_texts("carol")
    assert all("already" in t for t in refusals)


def test_slash_command_retries_create_one_rollback(harness: Harness) -> None:
    h = harness
    first = h.request("hotel-voice-bot --severity P2")
    retries = [h.driver.resend(first, retry_num=n) for n in (1, 2)]
    assert all(r.status == 200 for r in retries)
    h.rollback_message()
    h.emulator.wait_idle(0.3, 10)
    assert len(h.bot.store.history("hotel-voice-bot")) == 1
    headers = [m for m in h.emulator.messages(CHANNEL)
               if any(b.get("type") == "header" for b in m.get("blocks") or [])]
    assert len(headers) == 1


def test_second_request_links_to_the_active_one(harness: Harness) -> None:
    h = harness
    rid, _ = _ready_p1(h)
    h.request("hotel-voice-bot --severity P1", user="dave")
    text = h.wait_ephemeral("dave", f"RB-{rid} is already pending approval")
    assert "slack.com/archives/" in text


def test_p0_break_glass_self_approval_is_loud(harness: Harness) -> None:
    h = harness
    h.request("hotel-voice-bot --severity P0 --reason outage", user="bob")
    msg = h.rollback_message()
    rid = _rollback_id(h)
    h.click(msg, ids.APPROVE, "bob")
    rb = h.wait_state(rid, "completed")
    assert rb.break_glass is True
    assert any("BREAK GLASS" in t for t in h.thread_texts(msg))
    approve = next(e for e in h.bot.store.audit_events(rid) if e.event == "approve")
    assert approve.detail["break_glass"] is True


def test_p3_needs_an_override(harness: Harness) -> None:
    h = harness
    h.request("hotel-voice-bot --severity P3")
    msg = h.rollback_message()
    rid = _rollback_id(h)
    assert ids.APPROVE not in action_ids(h.message_now(msg["ts"]))
    h.click(msg, ids.APPROVE_OVERRIDE, "bob")
    h.wait_state(rid, "completed")
    assert any("overrode" in t for t in h.thread_texts(msg))


def test_reject_with_reason_through_the_modal(harness: Harness) -> None:
    h = harness
    rid, msg = _ready_p1(h)
    h.click(msg, ids.REJECT, "bob")
    h.emulator.wait_for(lambda: h.emulator.open_views("bob"))
    empty = h.driver.submit_view("bob", {"reason": " "})
    assert empty.view_result == "errors"
    h.driver.submit_view("bob", {"reason": "hotfix is faster"})
    rb = h.wait_state(rid, "rejected")
    assert rb.state.value == "rejected"
    # the thread line follows the state change: wait for it, do not race it
    assert h.emulator.wait_for(lambda: any("hotfix is faster" in t for t in h.thread_texts(msg)))
    assert h.platform.mutations()["rollback_to"] == 0


def test_cancel_rules(harness: Harness) -> None:
    h = harness
    rid, msg = _ready_p1(h)
    h.request(f"cancel RB-{rid}", user="dave")
    h.wait_ephemeral("dave", "Only the requester, the incident commander or an approver")
    assert h.bot.store.get(rid).state.value == "pending_approval"  # the refusal changed nothing
    h.click(msg, ids.CANCEL, "alice")
    h.wait_state(rid, "cancelled")
    assert [e.actor for e in h.bot.store.audit_events(rid) if e.event == "cancel"] == [
        h.emulator.user_id("alice")]


def test_modal_request_uses_the_chosen_revision(harness: Harness) -> None:
    h = harness
    h.request("hotel-voice-bot")
    view = h.emulator.wait_for(
        lambda: next((v for v in h.emulator.open_views("alice")
                      if v.get("callback_id") == ids.REQUEST_MODAL
                      and any(b.get("block_id") == "target_revision" for b in v["blocks"])),
                     None))
    options = next(b for b in view["blocks"] if b.get("block_id") == "target_revision")
    assert [o["value"] for o in options["element"]["options"]] == ["2", "1"]
    h.driver.submit_view("alice", {"target_revision": "1", "severity": "P2",
                                   "scope": ["app"], "reason": "modal"})
    h.rollback_message()
    rb = h.bot.store.history("hotel-voice-bot")[0]
    assert (rb.target_revision.number, rb.severity, rb.reason) == (1, "P2", "modal")


def test_bad_input_changes_nothing(harness: Harness) -> None:
    h = harness
    h.request("no-such-service --severity P1")
    h.wait_ephemeral("alice", "Unknown service `no-such-service`. Known services: "
                              "`hotel-voice-bot`")
    h.request("hotel-voice-bot --to 99")
    h.wait_ephemeral("alice", "Revision 99 is not in the history")
    reply = h.request("hotel-voice-bot --severity P7")
    assert "P7" in reply.body
    assert h.bot.store.history("hotel-voice-bot") == []
    assert h.platform.mutations() == {}


def test_forged_and_stale_requests_get_401_and_run_nothing(harness: Harness) -> None:
    h = harness
    forged = h.driver.slash_command("/rollback", "hotel-voice-bot --severity P1",
                                    signing=Signing(forge=True))
    stale = h.driver.slash_command("/rollback", "hotel-voice-bot --severity P1",
                                   signing=Signing.stale())
    assert (forged.status, stale.status) == (401, 401)
    assert h.bot.store.history("hotel-voice-bot") == []
    assert h.emulator.calls("chat.postMessage") == []
