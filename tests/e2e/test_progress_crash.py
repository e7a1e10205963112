"""A thread line survives the process that queued it (issue 16: progress through the outbox).

The executor journals a step done and queues its line in the outbox; a deliverer posts it
after the platform call. Process A (``rollback-bot serve``, a real process) is parked by a
crash point at step 1's line and SIGKILLed there, either before the line reached Slack
(``ROLLBACK_FAULT_SEND``: attempt committed, no post) or after Slack accepted it but before
it was marked sent (``ROLLBACK_FAULT_POST``). Process B, started on the same database,
must post that line exactly once (looking it up in the thread by its key first), and the
thread must show every step's line once, in order.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.crash_support import CrashRig, crash_rig
from tests.support.waiting import wait_until

REQUEST = "hotel-voice-bot --severity P0 --scope app --reason line-crash"
TICK = ":white_check_mark: Step "


@pytest.fixture
def rig(tmp_path: Path, db: str, fresh_db: str) -> Iterator[CrashRig]:
    with crash_rig(tmp_path, db, fresh_db) as r:
        r.seed()
        yield r


@pytest.mark.parametrize("fault, posted_before_kill", [
    ("ROLLBACK_FAULT_SEND", False),  # queued and attempted, not posted
    ("ROLLBACK_FAULT_POST", True),  # posted, not marked sent
])
def test_a_step_line_pending_when_the_process_dies_is_posted_once_after_restart(
        rig: CrashRig, fault: str, posted_before_kill: bool) -> None:
    fault_file = rig.tmp / "fault-hold"
    a = rig.start_bot("bot-A", env={fault: "line:*:step:1:done",
                                    "ROLLBACK_FAULT_FILE": str(fault_file)})
    rollback_id, msg = rig.request_and_approve(a, REQUEST)
    announced = rig.wait_fault(a, fault_file)
    assert f"line:{rollback_id}:step:1:done" in announced, announced

    steps = rig.store.steps(rollback_id)
    total = len(steps)
    # The step is journaled done: only its line is in flight.
    assert steps[0].status == "done", rig.diagnostics(rollback_id)
    step_one = [t for t in rig.thread_texts(msg) if t.startswith(f"{TICK}1/{total} ")]
    assert len(step_one) == (1 if posted_before_kill else 0), rig.thread_texts(msg)

    a.kill()
    rig.start_bot("bot-B")
    rb = rig.wait_state(rollback_id, {"completed", "failed", "needs_attention",
                                      "verification_failed", "unstable"})
    assert rb.state.value == "completed", rig.diagnostics(rollback_id)

    def every_tick() -> list[str] | None:
        texts = rig.thread_texts(msg)
        ticks = [t.split()[2] for t in texts if t.startswith(TICK)]
        return ticks if len(ticks) >= total else None

    ticks = wait_until(every_tick, timeout=20, message="every step's line in the thread",
                       diagnostics=lambda: "\n".join(rig.thread_texts(msg)))
    # Once each, in order: the line A left behind came first, and was not doubled.
    assert ticks == [f"{n}/{total}" for n in range(1, total + 1)], rig.thread_texts(msg)


@pytest.mark.parametrize(("fault", "parked", "state"), [
    ("ROLLBACK_FAULT_VERIFIED", "verified", "monitoring"),
    ("ROLLBACK_FAULT_COMPLETED", "completed", "completed"),
])
def test_a_rollback_verified_with_no_window_is_completed_after_its_process_dies(
        rig: CrashRig, fault: str, parked: str, state: str) -> None:
    """The rig's services have no monitoring window, so the process that moves a rollback
    into ``monitoring`` completes it at once. Process A is parked between the two commits
    (seen once under load, unforced: RB-1 stayed ``monitoring`` for good, as the executor
    never claims a monitoring rollback and there was no tick to come), or after the move to
    ``completed`` before anything was said about it, and SIGKILLed there. Process B
    finishes the completion: one ``stable`` event and one completion card."""
    fault_file = rig.tmp / "fault-hold"
    a = rig.start_bot("bot-A", env={fault: "1", "ROLLBACK_FAULT_FILE": str(fault_file)})
    rollback_id, msg = rig.request_and_approve(a, REQUEST)
    announced = rig.wait_fault(a, fault_file)
    assert f"{parked} RB-{rollback_id}" in announced, announced
    assert rig.store.get(rollback_id).state.value == state, rig.diagnostics(rollback_id)

    a.kill()
    rig.start_bot("bot-B")
    rb = rig.wait_state(rollback_id, {"completed", "failed", "needs_attention",
                                      "verification_failed", "unstable"})
    assert rb.state.value == "completed", rig.diagnostics(rollback_id)
    events = [e.event for e in rig.store.audit_events(rollback_id)]
    assert events.count("stable") == 1, events
    texts = rig.wait_thread(msg, f"RB-{rollback_id} completed: ")
    assert sum(f"RB-{rollback_id} completed: " in t for t in texts) == 1, texts
