"""No Slack round trip between the decision and the platform (issue 16).

Between bob's Approve click and the platform's first mutation the bot may call Slack once:
the fresh read of the approvers group (an authority decision, never cached). The channel
rule compares the click's channel id with the request's, the executor's "started" and
"known-bad" lines and the request message's re-render wait until the platform was written
to, and then all of them still reach Slack, in order.

The Slack emulator records every Web API call in arrival order; the fake platform calls
``after_mutation`` inside its first write, so the number of calls recorded at that moment
is exactly what happened before the mutation.
"""

from __future__ import annotations

import threading

from handlers import ids
from tests.e2e.conftest import Harness, action_ids
from tests.support.waiting import wait_until

REQUEST = "hotel-voice-bot --severity P0 --reason slack-calls"


def _approve_counting(h: Harness, *, requester: str = "alice"
                      ) -> tuple[int, list[str], dict]:
    """``requester`` requests, bob approves; (rollback id, Slack methods called between the
    click and the first mutation, request message)."""
    store = h.bot.store
    earlier = len(store.history("hotel-voice-bot"))
    reply = h.request(REQUEST, user=requester)
    assert reply.status == 200, reply.body
    rid = wait_until(lambda: len(store.history("hotel-voice-bot")) > earlier
                     and store.history("hotel-voice-bot")[0].id, message="the request stored")
    msg = h.rollback_message(rid)
    h.emulator.wait_idle()  # the request flow (assessment, log file) is over
    seen: list[int] = []
    mutated = threading.Event()

    def first_mutation(_method: str) -> None:
        if not mutated.is_set():
            seen.append(len(h.emulator.calls()))
            mutated.set()

    h.platform.after_mutation = first_mutation
    before = len(h.emulator.calls())
    click = h.click(msg, ids.APPROVE, "bob")
    assert click.status == 200, click.body
    assert mutated.wait(15), "no platform mutation after the approval"
    between = [c.method for c in h.emulator.calls()[before:seen[0]]]
    return rid, between, msg


def test_at_most_one_slack_call_between_approve_and_first_mutation(harness: Harness) -> None:
    h = harness
    rid, between, msg = _approve_counting(h)
    # The one allowed: approver group membership, read fresh for this decision. No
    # conversations.info (the channel is compared by id), no chat.update, no thread post.
    assert between in ([], ["usergroups.users.list"]), between

    # Nothing was lost by waiting: the message re-renders and the thread tells the story
    # in order once the platform moved.
    h.wait_state(rid, "completed")
    total = len(h.bot.store.steps(rid))

    def ticks(texts: list[str]) -> list[int]:
        return [i for i, t in enumerate(texts) if t.startswith(":white_check_mark: Step ")]

    texts = h.emulator.wait_for(
        lambda: (t := h.thread_texts(msg)) and len(ticks(t)) >= total and t,
        timeout=15, description="every step's line in the thread")
    started = next(i for i, t in enumerate(texts) if t.startswith(":arrow_forward: Executing"))
    lines = [texts[i] for i in ticks(texts)]
    assert started < ticks(texts)[0], texts
    assert [line.split()[2] for line in lines] == [f"{n}/{total}" for n in
                                                   range(1, total + 1)], texts
    assert ids.APPROVE not in action_ids(h.message_now(msg["ts"]))


def test_a_second_approval_makes_no_more_calls_than_the_first(harness: Harness) -> None:
    """Caches warm or cold, the approval path stays at one call: a second incident on the
    same service, approved the same way."""
    h = harness
    rid, between, _msg = _approve_counting(h)
    assert len(between) <= 1, between
    wait_until(lambda: h.bot.store.get(rid).state.value == "completed", timeout=30,
               message="the first rollback to complete")
    h.platform.deploy(h.bot.store.get(rid).target, "registry.example/app:bad-2",
                      change_cause="another bad release")
    _rid2, between2, _ = _approve_counting(h)
    assert between2 in ([], ["usergroups.users.list"]), between2


def test_break_glass_line_waits_for_the_platform_too(harness: Harness) -> None:
    """bob approves his own P0 request (break glass): the line saying so is queued with the
    executor's and posted after the platform moved, not between."""
    h = harness
    rid, between, msg = _approve_counting(h, requester="bob")
    assert between in ([], ["usergroups.users.list"]), between
    texts = h.emulator.wait_for(
        lambda: (t := h.thread_texts(msg)) and any("break glass" in x.lower() for x in t)
        and t, timeout=15, description="the break-glass line")
    assert sum("break glass" in t.lower() for t in texts) == 1, texts
    h.wait_state(rid, "completed")
