"""Waiting holds nothing: a rollout in progress parks its rollback instead of its worker.

Through the wire (signed requests and clicks, the Slack emulator, real PostgreSQL): many
rollouts are in flight at once on two executor workers, Cancel still stops a parked
rollback, a parked rollback left by a process that is gone is finished by another without
a second mutation, and the rollout deadline counts from the journaled start of the wait
(the injected clock), not from whichever look happens to run.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from handlers import ids
from tests.e2e.conftest import Harness
from tests.support import messages
from tests.support.waiting import wait_until

HELD = 3600.0  # a rollout that does not finish until the test drops rollout_seconds to 0
SERVICES = [f"svc-{i:02d}" for i in range(1, 21)]


def _services(names: list[str], *, executor: dict[str, Any] | None = None
              ) -> Callable[[dict[str, Any]], None]:
    """Copies of the sandbox service, one fake target each, requested in the same channel."""
    def override(data: dict[str, Any]) -> None:
        base = data["services"]["hotel-voice-bot"]
        for name in names:
            svc = copy.deepcopy(base)
            svc["fake"] = {"scope": "production", "name": name}
            svc.pop("incident_channel_pattern", None)
            data["services"][name] = svc
        data["executor"].update({"workers": 2, **(executor or {})})
    return override


def _request_and_approve(h: Harness, service: str) -> tuple[int, dict[str, Any]]:
    """bob requests a P0 app rollback of ``service`` and approves it himself."""
    h.request(f"{service} --severity P0 --scope app --reason drill", user="bob")
    rb = h.emulator.wait_for(lambda: h.bot.store.active_for_service(service), timeout=15,
                             description=f"{service}'s request")
    msg = messages.request_message(h.emulator, rb.id)
    h.click(msg, ids.APPROVE, "bob")
    return rb.id, msg


def _step(h: Harness, rollback_id: int, kind: str) -> Any:
    return next(s for s in h.bot.store.steps(rollback_id) if s.kind == kind)


def _waiting(h: Harness, rollback_id: int) -> bool:
    return bool(_step(h, rollback_id, "wait_rollout").status == "waiting")


def test_twenty_rollouts_are_in_flight_at_once_on_two_workers(
        make_harness: Callable[..., Harness]) -> None:
    h = make_harness(config_overrides=_services(SERVICES), rollout_seconds=HELD)
    assert h.bot.config.executor.workers == 2
    ids_ = [_request_and_approve(h, name)[0] for name in SERVICES]
    # Every rollback has rolled its application back and waits on its rollout, at once:
    # held workers would allow two.
    # (Polled: a parked rollback changes nothing in Slack that the emulator could wake on.)
    wait_until(lambda: all(_waiting(h, rid) for rid in ids_), 60, 0.1,
               "all 20 rollouts parked")
    assert h.platform.mutations()["rollback_to"] == 20
    for rid in ids_:
        assert h.bot.store.get(rid).state.value == "executing"
    h.platform.rollout_seconds = 0  # every rollout finishes now
    for rid in ids_:
        h.wait_state(rid, "monitoring", "completed", timeout=60)
        wait = _step(h, rid, "wait_rollout")
        assert wait.status == "done"
        assert wait.attempts == 1  # its looks spent none of the retry budget
    assert h.platform.mutations()["rollback_to"] == 20  # a look never mutates


def test_cancel_while_waiting_stops_before_the_rollout_is_confirmed(
        make_harness: Callable[..., Harness]) -> None:
    h = make_harness(config_overrides=_services(["svc-01"]), rollout_seconds=HELD)
    rid, msg = _request_and_approve(h, "svc-01")
    wait_until(lambda: _waiting(h, rid), 20, 0.05, "the rollout parked")
    h.click(msg, ids.CANCEL, "bob")
    rb = h.wait_state(rid, "cancelled", timeout=20)
    assert rb.cancel_requested_by == h.emulator.user_id("bob")
    assert _step(h, rid, "app_rollback").status == "done"
    wait = _step(h, rid, "wait_rollout")
    assert wait.status == "skipped"  # ended by the Cancel: never confirmed, not left waiting
    assert "not confirmed" in str(wait.result.get("skipped"))
    assert h.platform.mutations()["rollback_to"] == 1
    # The line follows the transition through the outbox's deliverer.
    h.emulator.wait_for(lambda: any("cancelled" in t.lower() for t in h.thread_texts(msg)),
                        10, description="the cancelled line in the thread")


def test_a_parked_rollback_whose_process_is_gone_is_finished_elsewhere_without_a_new_mutation(
        make_harness: Callable[..., Harness], tmp_path: Any) -> None:
    state = str(tmp_path / "platform.json")
    a = make_harness(config_overrides=_services(["svc-01"]), rollout_seconds=HELD,
                     state_file=state)
    rid, msg = _request_and_approve(a, "svc-01")
    wait_until(lambda: _waiting(a, rid), 20, 0.05, "the rollout parked")
    looks = a.platform.calls()["rollout_status"]
    a.stack.owns_emulator = False  # Slack outlives the bot process
    a.stack.stop()  # the instance that parked it is gone
    # Another instance on the same database and platform state (its fake's rollout is over).
    b = make_harness(config_overrides=_services(["svc-01"]), state_file=state,
                     emulator=a.emulator)
    a.stack.owns_emulator = True  # so the fixture stops it at the end
    rb = b.wait_state(rid, "monitoring", "completed", timeout=30)
    assert rb.state.value in ("monitoring", "completed")
    assert b.platform.mutation_log() == ["rollback_to:rs-2"]  # once, by A; B only looked
    assert b.platform.calls()["rollout_status"] > looks
    assert _step(b, rid, "wait_rollout").status == "done"
    assert not any("resum" in t.lower() for t in b.thread_texts(msg))  # a wait, not a crash


def test_the_rollout_deadline_counts_from_the_journaled_start_of_the_wait(
        make_harness: Callable[..., Harness]) -> None:
    h = make_harness(config_overrides=_services(["svc-01"], executor={
        "max_transient_retries": 0}), rollout_seconds=HELD)
    timeout = h.bot.config.services["svc-01"].platform_config("fake").rollout_timeout_seconds
    rid, msg = _request_and_approve(h, "svc-01")
    wait_until(lambda: _waiting(h, rid), 20, 0.05, "the rollout parked")
    since = _step(h, rid, "wait_rollout").result["waiting_since"]
    assert since == h.clock().isoformat()
    h.clock.advance(seconds=timeout - 1)  # not yet: the next looks see it still going
    looks = h.platform.calls()["rollout_status"]
    wait_until(lambda: h.platform.calls()["rollout_status"] >= looks + 2, 20, 0.05,
               "two more looks")
    assert h.bot.store.get(rid).state.value == "executing"
    h.clock.advance(seconds=2)  # past the deadline counted from the journaled start
    rb = h.wait_state(rid, "failed", timeout=20)
    assert f"rollout not finished after {timeout:.0f}s" in (rb.last_error or "")
    assert h.platform.mutations()["rollback_to"] == 1
    assert _step(h, rid, "wait_rollout").status == "failed"
