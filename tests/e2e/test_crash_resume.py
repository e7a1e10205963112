"""Crash and resume: the bot process is SIGKILLed inside each step of a multi-step plan.

For every step of the ``app,db,config`` plan, process A (``rollback-bot serve``, a real
separate process on real PostgreSQL, driven over signed HTTP by the Slack emulator) is
started with the executor's fault hook, parks inside that step and is SIGKILLed there.
Process B starts on the same databases and platform state without the hook, takes over
once A's lease runs out, and must finish the rollback with every platform mutation
applied exactly once, or, when A died inside the destructive ``restore_db``, stop in
``needs_attention`` without touching anything after it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from platforms.base import Revision
from tests.e2e.crash_support import (
    BACKUP_ROWS,
    GOOD_CONFIG,
    ORIGINAL_REPLICAS,
    CrashRig,
    crash_rig,
)

REQUEST = "hotel-voice-bot --severity P0 --scope app,db,config --reason crash-drill"
# The plan the planner builds for that scope, in order (asserted, so it cannot drift).
PLAN = ["snapshot_config", "scale_down", "backup_db", "restore_db", "verify_db",
        "app_rollback", "restore_config", "scale_up", "wait_rollout"]
# Every platform change the rollback makes, in order: the fake starts on rs-3 with 4
# replicas and a "bad" ConfigMap; the previous revision is rs-2.
FULL_LOG = ["scale:0", "rollback_to:rs-2", "restore_config:configmap/app-config",
            f"scale:{ORIGINAL_REPLICAS}"]
# How much of FULL_LOG is applied once a step's action has run (its "after" point).
APPLIED_AFTER = {"snapshot_config": 0, "scale_down": 1, "backup_db": 1, "restore_db": 1,
                 "verify_db": 1, "app_rollback": 2, "restore_config": 3, "scale_up": 4,
                 "wait_rollout": 4}
NON_DESTRUCTIVE = [k for k in PLAN if k != "restore_db"]


@pytest.fixture
def rig(tmp_path: Path, db: str, fresh_db: str) -> Iterator[CrashRig]:
    """``db``: the bot's own (migrated) database; ``fresh_db``: the application database
    the plan backs up and restores. The rig's teardown SIGKILLs any leftover process."""
    with crash_rig(tmp_path, db, fresh_db) as r:
        r.seed()
        yield r


def _crash_inside(rig: CrashRig, kind: str, when: str) -> tuple[int, dict[str, Any], int]:
    """Run the rollback in process A until it parks at ``kind:when``, check the world at
    that instant, SIGKILL A. Returns (rollback id, request message, A's pid)."""
    fault_file = rig.tmp / "fault-hold"
    a = rig.start_bot("bot-A", fault=f"{kind}:{when}", fault_file=fault_file)
    rollback_id, msg = rig.request_and_approve(a, REQUEST)
    announced = rig.wait_fault(a, fault_file)
    assert announced.split() == [str(a.pid), kind, when]

    steps = rig.store.steps(rollback_id)
    assert [s.kind for s in steps] == PLAN
    held = next(s for s in steps if s.kind == kind)
    assert rig.store.get(rollback_id).state.value == "executing"
    # The journal says "started" before the action runs: that is what B will find.
    assert held.status == "started", rig.diagnostics(rollback_id)
    assert all(s.status == "done" for s in steps if s.seq < held.seq)
    assert all(s.status == "pending" for s in steps if s.seq > held.seq)
    # The kill lands exactly where intended: "after" means the step's mutation is already
    # on the platform (so a re-run would double it), "before" means it is not yet.
    assert rig.platform.mutation_log() == FULL_LOG[:_applied(kind, when)]

    a.kill()
    assert a.popen.returncode == -9  # died of SIGKILL: no shutdown hook released anything
    return rollback_id, msg, a.pid


def _applied(kind: str, when: str) -> int:
    """How many of FULL_LOG's mutations are on the platform at ``kind:when``."""
    if when == "after":
        return APPLIED_AFTER[kind]
    index = PLAN.index(kind)
    return APPLIED_AFTER[PLAN[index - 1]] if index else 0


def _owner_pid(actor: str) -> int:
    """Executor owners are ``host:pid:nonce``; the pid tells which process acted."""
    return int(actor.split(":")[1])


def _assert_completed_exactly_once(rig: CrashRig, rollback_id: int, msg: dict[str, Any], kind: str,
                                   a_pid: int, b_pid: int) -> None:
    rb = rig.wait_state(rollback_id, {"completed", "failed", "needs_attention",
                                      "verification_failed", "unstable"})
    assert rb.state.value == "completed", rig.diagnostics(rollback_id)

    # Every platform mutation exactly once, in order, none repeated by the resume.
    assert rig.platform.mutation_log() == FULL_LOG, rig.diagnostics(rollback_id)
    assert rig.platform.mutations() == Counter(scale=2, rollback_to=1, restore_config=1)
    target = rb.target
    assert rig.platform.get_replicas(target) == ORIGINAL_REPLICAS
    assert rig.platform.current_revision(target).id == "rs-2"
    assert rig.platform.snapshot_config(target).to_dict() == GOOD_CONFIG

    steps = {s.kind: s for s in rig.store.steps(rollback_id)}
    assert all(s.status == "done" for s in steps.values()), rig.diagnostics(rollback_id)
    # Only the step A died in was started twice; everything else ran once.
    assert {k: s.attempts for k, s in steps.items()} == {
        k: (2 if k == kind else 1) for k in PLAN}
    # scale_up used the count scale_down journaled before scaling to 0, not a default.
    assert steps["scale_down"].result["before"] == ORIGINAL_REPLICAS
    assert steps["scale_up"].result["replicas"] == ORIGINAL_REPLICAS
    assert Revision.from_dict(steps["app_rollback"].params["revision"]).id == "rs-2"
    # The database came back from the backup pinned at request time (journaled by name).
    assert steps["restore_db"].result["restored_from"] == rig.pinned_backup.name
    assert rig.app_rows() == BACKUP_ROWS
    assert steps["verify_db"].result["queries"][-1]["value"] == str(len(BACKUP_ROWS))

    # The audit trail: A started it, B finished it.
    events = {e.event: e for e in rig.store.audit_events(rollback_id)}
    assert _owner_pid(events["start"].actor) == a_pid
    assert _owner_pid(events["steps_done"].actor) == b_pid
    assert events["stable"].to_state == "completed"

    # What people saw in Slack: one resume notice from B, one tick per step.
    texts = rig.wait_thread(msg, f"RB-{rollback_id} completed:")
    resumes = [t for t in texts if t.startswith(":recycle: Resuming")]
    assert len(resumes) == 1 and f":{b_pid}:" in resumes[0], texts
    for seq in range(1, len(PLAN) + 1):
        ticks = [t for t in texts if t.startswith(f":white_check_mark: Step {seq}/{len(PLAN)} ")]
        assert len(ticks) == 1, (seq, texts)


@pytest.mark.parametrize("kind", NON_DESTRUCTIVE)
def test_kill_after_step_action_resumes_and_applies_each_mutation_once(
    rig: CrashRig, kind: str
) -> None:
    rollback_id, msg, a_pid = _crash_inside(rig, kind, "after")
    b = rig.start_bot("bot-B")  # no fault hook: the replacement process
    _assert_completed_exactly_once(rig, rollback_id, msg, kind, a_pid, b.pid)


def test_kill_before_app_rollback_applies_it_once_on_resume(rig: CrashRig) -> None:
    rollback_id, msg, a_pid = _crash_inside(rig, "app_rollback", "before")
    assert rig.platform.mutations()["rollback_to"] == 0
    b = rig.start_bot("bot-B")
    _assert_completed_exactly_once(rig, rollback_id, msg, "app_rollback", a_pid, b.pid)


def test_kill_inside_destructive_restore_needs_attention(rig: CrashRig) -> None:
    rollback_id, msg, a_pid = _crash_inside(rig, "restore_db", "after")
    b = rig.start_bot("bot-B")
    rb = rig.wait_state(rollback_id, {"completed", "failed", "needs_attention"})
    assert rb.state.value == "needs_attention", rig.diagnostics(rollback_id)
    assert rb.last_error and "destructive step 4" in rb.last_error

    # B refused to re-run the restore and ran nothing after it.
    steps = {s.kind: s for s in rig.store.steps(rollback_id)}
    assert steps["restore_db"].status == "started" and steps["restore_db"].attempts == 1
    after = PLAN[PLAN.index("restore_db") + 1:]
    assert all(steps[k].status == "pending" and steps[k].attempts == 0 for k in after)
    assert rig.platform.mutation_log() == ["scale:0"], rig.diagnostics(rollback_id)
    assert rig.platform.mutations()["rollback_to"] == 0
    # A's one restore did land (the kill was after it); nobody restored a second time.
    assert rig.app_rows() == BACKUP_ROWS

    events = [e for e in rig.store.audit_events(rollback_id) if e.event == "interrupted"]
    assert len(events) == 1 and _owner_pid(events[0].actor) == b.pid
    assert events[0].detail["step"] == "restore_db"
    assert events[0].detail["replicas"] == ORIGINAL_REPLICAS  # left at 0: the button restores it
    assert _owner_pid(next(e.actor for e in rig.store.audit_events(rollback_id)
                           if e.event == "start")) == a_pid

    texts = rig.wait_thread(msg, f"RB-{rollback_id} needs attention")
    assert sum(t.startswith(":recycle: Resuming") for t in texts) == 1
    warning = next(t for t in texts if "needs attention" in t)
    assert "Mark resolved" in warning and "was not re-run" in warning
    assert "Scale back up" in warning and f"it had {ORIGINAL_REPLICAS} replicas" in warning
    # Where the service and the database may stand, and how to find out.
    assert "Service: left at 0 replicas" in warning
    assert f"restore of `{rig.pinned_backup.name}` may be partial" in warning
    assert "run to completion or stopped part-way" in warning
    assert "application_name = 'pg_restore'" in warning  # is a restore still running?
    assert "verify queries" in warning and "pg_restore --clean" in warning
    assert f"{rig.pinned_backup.name}`) or decide" in warning  # the command names the file
    assert "kubectl" not in warning  # the fake platform's own command, not another's
    assert not any(t.startswith(":white_check_mark: Step 4/") for t in texts)


def test_kill_before_pg_restore_was_launched_says_the_database_is_probably_untouched(
        rig: CrashRig) -> None:
    rollback_id, msg, _a_pid = _crash_inside(rig, "restore_db", "before")
    rows_before = rig.app_rows()
    assert rows_before != BACKUP_ROWS  # the bad release's writes: a restore would show
    rig.start_bot("bot-B")
    rb = rig.wait_state(rollback_id, {"completed", "failed", "needs_attention"})
    assert rb.state.value == "needs_attention", rig.diagnostics(rollback_id)
    restore = next(s for s in rig.store.steps(rollback_id) if s.kind == "restore_db")
    assert restore.status == "started" and not restore.result.get("begun")
    assert rig.app_rows() == rows_before  # nothing restored by anyone
    texts = rig.wait_thread(msg, f"RB-{rollback_id} needs attention")
    warning = next(t for t in texts if "needs attention" in t)
    assert "Service: left at 0 replicas" in warning
    assert f"it had {ORIGINAL_REPLICAS} replicas" in warning
    assert "probably untouched" in warning and "pg_restore" in warning
    assert "Scale back up" in warning and "Mark resolved" in warning
