"""How execution reacts to the platform: transient errors retry with backoff, permanent
ones stop the rollback and say which step failed, why, and what to do next."""

from __future__ import annotations

from handlers import ids
from platforms.base import PermanentPlatformError, TransientPlatformError
from tests.e2e.conftest import Harness


def test_transient_errors_retry_then_succeed_once(harness: Harness) -> None:
    h = harness
    h.platform.inject("rollback_to", TransientPlatformError("429 throttled", retry_after=0.1),
                      times=2)
    rid, msg = h.request_and_approve_p0()
    h.wait_state(rid, "completed")
    assert h.platform.calls()["rollback_to"] == 3  # two throttled attempts, then the real one
    assert h.platform.mutations()["rollback_to"] == 1
    h.emulator.wait_for(lambda: sum("retrying in" in t for t in h.thread_texts(msg)) == 2)
    step = next(s for s in h.bot.store.steps(rid) if s.kind == "app_rollback")
    assert (step.status, step.attempts) == ("done", 3)


def test_transient_errors_give_up_after_the_retry_budget(make_harness) -> None:
    h: Harness = make_harness(config_overrides=lambda d: d["executor"].update(
        max_transient_retries=2))
    h.platform.inject("rollback_to", TransientPlatformError("503 from API"), times=10)
    rid, msg = h.request_and_approve_p0()
    rb = h.wait_state(rid, "failed")
    assert "gave up after 3 attempts" in (rb.last_error or "")
    assert h.platform.mutations()["rollback_to"] == 0


def test_permanent_error_fails_with_step_error_and_next_action(harness: Harness) -> None:
    h = harness
    h.platform.inject("rollback_to", PermanentPlatformError("image pull secret revoked"))
    rid, msg = h.request_and_approve_p0()
    rb = h.wait_state(rid, "failed")
    assert rb.last_error == "app_rollback: image pull secret revoked"
    assert h.platform.calls()["rollback_to"] == 1  # never retried
    note = h.emulator.wait_for(lambda: next(
        (t for t in h.thread_texts(msg) if "failed at step" in t), None))
    assert "Roll the application back to rev 2" in note
    assert "image pull secret revoked" in note and "Next:" in note
    h.emulator.wait_for(lambda: "Failed" in str(h.message_now(msg["ts"])["blocks"]))
    steps = {s.kind: s.status for s in h.bot.store.steps(rid)}
    assert steps == {"app_rollback": "failed", "wait_rollout": "pending"}


GOOD = {"configmap/app-config": {"data": {"MODE": "good"}}}


def _request_config_rollback(h: Harness) -> tuple[int, dict]:
    h.request("hotel-voice-bot --severity P0 --scope app,config", user="bob")
    msg = h.rollback_message()
    return h.bot.store.history("hotel-voice-bot")[0].id, msg


def test_known_good_config_is_pinned_in_the_plan_and_restored(harness: Harness) -> None:
    h = harness
    h.bot.store.record_known_good_config("hotel-voice-bot", "fake", {"items": GOOD},
                                         rollback_id=None)
    rid, msg = _request_config_rollback(h)
    assert "Restore the known-good configuration recorded" in str(msg["blocks"])
    h.click(msg, ids.APPROVE, "bob")
    h.wait_state(rid, "completed")
    assert h.platform.mutations()["restore_config"] == 1
    snap = next(s for s in h.bot.store.steps(rid) if s.kind == "snapshot_config")
    assert set(snap.result) == {"objects", "digests"}  # names and digests, no contents
    assert "bad" not in str(snap.result)


def test_a_changed_known_good_config_is_refused_not_restored(harness: Harness) -> None:
    h = harness
    store = h.bot.store
    store.record_known_good_config("hotel-voice-bot", "fake", {"items": GOOD}, rollback_id=None)
    rid, msg = _request_config_rollback(h)
    other = {"configmap/app-config": {"data": {"MODE": "something else"}}}
    store.record_known_good_config("hotel-voice-bot", "fake", {"items": other},
                                   rollback_id=None)  # changes after the plan was approved
    h.click(msg, ids.APPROVE, "bob")
    rb = h.wait_state(rid, "failed")
    assert "changed since the plan was made" in (rb.last_error or "")
    assert h.platform.mutations()["restore_config"] == 0
