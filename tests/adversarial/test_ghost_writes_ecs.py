"""Late writes and throttling on ECS, through boto3 against the moto-based emulator: an
UpdateService held by the server past the client's timeout is applied when the server gets to
it, as ECS would. What the adapter's fence guarantees, and what ECS leaves open.
"""

# ECS has no conditional UpdateService (botocore data/ecs/2014-11-13/service-2.json, shape
# UpdateServiceRequest), so the emulator cannot and does not refuse a late write. These tests
# pin down what the adapter does about it (platforms/ecs.py, "Fenced writes"): botocore never
# resends; a retry after a timeout first waits for the abandoned request to land and then
# sends nothing; a late duplicate of our own write changes nothing; a write held by ECS past
# the grace and applied after a hotfix does overwrite it (the residual risk, asserted as such,
# with the warning the bot posts). Every client here keeps botocore's usual retries on, so the
# adapter's own veto is what is tested.

from __future__ import annotations

import threading
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ReadTimeoutError

from platforms.base import (
    Revision,
    Target,
    TargetChanged,
    TransientPlatformError,
    WriteConflict,
)
from platforms.ecs import EcsPlatform
from sandbox.ecs import EcsEmulator, Seeded
from tests.support.emulators import ecs_emulator_fixture, ecs_target, reseed_ecs
from tests.support.waiting import wait_until

POLL = 0.05
CLIENT_TIMEOUT = 0.5  # the bot gives up on an answer after this long


emulator = ecs_emulator_fixture(step_interval=0.02)


@pytest.fixture
def seeded(emulator: EcsEmulator) -> Seeded:
    # count only what each test sends, not the seed's deploys
    return reseed_ecs(emulator, forget_seed_calls=True)


@pytest.fixture
def target(seeded: Seeded, emulator: EcsEmulator) -> Target:
    return ecs_target(seeded, emulator)


def client(emulator: EcsEmulator, *, read_timeout: float = CLIENT_TIMEOUT) -> Any:
    """A boto3 client with botocore's standard retries (3 retries) and a short read timeout."""
    return emulator.client(config=Config(read_timeout=read_timeout, connect_timeout=2,
                                         retries={"mode": "standard", "max_attempts": 3}))


def platform(emulator: EcsEmulator, *, grace: float, read_timeout: float = CLIENT_TIMEOUT
             ) -> EcsPlatform:
    return EcsPlatform(client=client(emulator, read_timeout=read_timeout), poll_interval=POLL,
                       in_doubt_grace=grace)


def service(emulator: EcsEmulator, target: Target) -> dict[str, Any]:
    return dict(emulator.client().describe_services(
        cluster=target.scope, services=[target.name])["services"][0])


def primary(emulator: EcsEmulator, target: Target) -> dict[str, Any]:
    return next(d for d in service(emulator, target)["deployments"] if d["status"] == "PRIMARY")


def updates_to(emulator: EcsEmulator, arn: str) -> list[Any]:
    """UpdateService calls the server received (since seeding) setting taskDefinition ``arn``."""
    return [c for c in emulator.calls("UpdateService") if c.body.get("taskDefinition") == arn]


def plan(ecs: EcsPlatform, target: Target) -> tuple[Revision, Revision]:
    """(current, pinned) as the planner pins them: move away from v4 to v3."""
    history = ecs.history(target)
    return history[0], history[1]


def hotfix(emulator: EcsEmulator, target: Target, seeded: Seeded) -> str:
    """The team deploys 1.5.0: register v5 and UpdateService to it (the way a pipeline does)."""
    ecs = emulator.client()
    arn = str(ecs.register_task_definition(family=seeded.family, containerDefinitions=[{
        "name": seeded.family, "image": f"registry.example/{seeded.family}:1.5.0",
        "memory": 512, "cpu": 256, "essential": True}])["taskDefinition"]["taskDefinitionArn"])
    ecs.update_service(cluster=target.scope, service=target.name, taskDefinition=arn)
    return arn


def settled(emulator: EcsEmulator, target: Target, arn: str) -> dict[str, Any]:
    """Wait until the only deployment runs ``arn`` with every task up."""
    def done() -> dict[str, Any] | None:
        svc = service(emulator, target)
        only = [d["taskDefinition"] for d in svc["deployments"]] == [arn]
        return svc if only and svc["runningCount"] == svc["desiredCount"] else None
    return dict(wait_until(done, timeout=30))


# ------------------------------------------------------------------- no resend
def test_botocore_resends_a_held_update_but_the_adapter_sends_it_once(
        emulator: EcsEmulator, seeded: Seeded, target: Target) -> None:
    before = len(emulator.calls("UpdateService"))
    held = emulator.hold("UpdateService", times=10)
    with pytest.raises(ReadTimeoutError):  # a plain client with botocore's retries...
        client(emulator).update_service(cluster=target.scope, service=target.name,
                                        desiredCount=seeded.desired_count)
    resent = len(emulator.calls("UpdateService")) - before
    assert resent == 4  # ...sent it 1 + 3 times: every resend is a write nobody decided
    held.release()
    wait_until(lambda: all(c.status for c in emulator.calls("UpdateService")))

    ecs = platform(emulator, grace=0.1)
    current, pinned = plan(ecs, target)
    held = emulator.hold("UpdateService")
    with pytest.raises(TransientPlatformError, match="got no answer") as info:
        ecs.rollback_to(target, pinned, expected=current)
    assert not isinstance(info.value, WriteConflict)
    assert "was not resent" in str(info.value)
    assert held.arrived.is_set() and len(updates_to(emulator, pinned.id)) == 1
    held.release()
    assert held.done.wait(10) and held.status == 200  # the server applies what it received


# --------------------------------------------------------- the scenario
def test_a_late_update_landing_during_the_retry_is_absorbed_and_the_hotfix_survives(
        emulator: EcsEmulator, seeded: Seeded, target: Target) -> None:
    """The bot's UpdateService is held past its timeout; the retry waits for it instead of
    sending another, so when the bot completes nothing of ours is left on the wire, and the
    hotfix deployed afterwards stays."""
    ecs = platform(emulator, grace=20)
    current, pinned = plan(ecs, target)
    held = emulator.hold("UpdateService", where=lambda b: b.get("taskDefinition") == pinned.id)
    with pytest.raises(TransientPlatformError, match="got no answer"):
        ecs.rollback_to(target, pinned, expected=current)
    assert primary(emulator, target)["taskDefinition"] == current.id  # not applied yet

    reads = len(emulator.calls("DescribeServices"))
    outcome: dict[str, Any] = {}

    def retry() -> None:
        try:
            outcome["result"] = ecs.rollback_to(target, pinned, expected=current)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = exc

    worker = threading.Thread(target=retry)
    worker.start()
    wait_until(lambda: len(emulator.calls("DescribeServices")) >= reads + 2)  # polling, waiting
    assert worker.is_alive()
    held.release()  # the server finally processes the abandoned request
    worker.join(30)
    assert "error" not in outcome, outcome
    result = outcome["result"]
    assert not result.changed and "had landed, so nothing was sent again" in result.message
    assert held.status == 200 and len(updates_to(emulator, pinned.id)) == 1

    assert ecs.wait_for_rollout(target, timeout=30).done
    assert ecs.confirm_running(target, pinned).matches  # the bot completes
    fix = hotfix(emulator, target, seeded)
    settled(emulator, target, fix)
    assert held.done.is_set()  # the abandoned request was processed before completion
    assert len(updates_to(emulator, pinned.id)) == 1
    assert primary(emulator, target)["taskDefinition"] == fix


def test_a_late_duplicate_of_the_retry_changes_nothing_and_the_hotfix_survives(
        emulator: EcsEmulator, seeded: Seeded, target: Target) -> None:
    """The grace runs out, the retry sends again and completes; the abandoned request lands
    later still, before the hotfix: it asks for what already runs, ECS starts no deployment."""
    ecs = platform(emulator, grace=0.2)
    current, pinned = plan(ecs, target)
    held = emulator.hold("UpdateService", where=lambda b: b.get("taskDefinition") == pinned.id)
    with pytest.raises(TransientPlatformError):
        ecs.rollback_to(target, pinned, expected=current)
    result = ecs.rollback_to(target, pinned, expected=current)
    assert result.changed and "may still apply it" in result.message  # said in the thread
    assert ecs.wait_for_rollout(target, timeout=30).done
    settled(emulator, target, pinned.id)
    ours = primary(emulator, target)["id"]

    held.release()
    assert held.done.wait(10) and held.status == 200
    assert primary(emulator, target)["id"] == ours  # no new deployment
    assert ecs.confirm_running(target, pinned).matches

    fix = hotfix(emulator, target, seeded)
    settled(emulator, target, fix)
    assert primary(emulator, target)["taskDefinition"] == fix


def test_residual_risk_a_write_held_past_the_grace_overwrites_a_later_hotfix(
        emulator: EcsEmulator, seeded: Seeded, target: Target) -> None:
    """What ECS leaves open, stated as a test: a request ECS holds longer than the grace and
    applies after a hotfix rolls the hotfix back, and nothing client-side can refuse it. The
    bot's retry did say so in its result (posted to the rollback's thread)."""
    ecs = platform(emulator, grace=0.2)
    current, pinned = plan(ecs, target)
    held = emulator.hold("UpdateService", where=lambda b: b.get("taskDefinition") == pinned.id)
    with pytest.raises(TransientPlatformError):
        ecs.rollback_to(target, pinned, expected=current)
    result = ecs.rollback_to(target, pinned, expected=current)
    assert "warning: an earlier UpdateService" in result.message
    assert f"check service {target.name} before deploying anything else" in result.message
    assert ecs.wait_for_rollout(target, timeout=30).done
    fix = hotfix(emulator, target, seeded)
    settled(emulator, target, fix)

    held.release()
    assert held.done.wait(10) and held.status == 200
    assert primary(emulator, target)["taskDefinition"] == pinned.id  # ECS applied it
    # Nothing on our side can refuse it, and the bot's own check cannot tell it apart from
    # its rollback: what runs is exactly what it pinned. The warning above is the mitigation.
    settled(emulator, target, pinned.id)
    assert ecs.confirm_running(target, pinned).matches


# ------------------------------------------------------------- refuse and conflict
def test_a_hotfix_deployed_between_plan_and_execution_is_target_changed(
        emulator: EcsEmulator, seeded: Seeded, target: Target) -> None:
    ecs = platform(emulator, grace=1)
    current, pinned = plan(ecs, target)
    fix = hotfix(emulator, target, seeded)
    sent = len(emulator.calls("UpdateService"))
    with pytest.raises(TargetChanged, match="hotel-voice-bot:5") as info:
        ecs.rollback_to(target, pinned, expected=current)
    assert "nothing was changed" in str(info.value)
    assert len(emulator.calls("UpdateService")) == sent
    assert primary(emulator, target)["taskDefinition"] == fix
    # already on the pinned revision (an earlier attempt landed): idempotent, not refused
    emulator.client().update_service(cluster=target.scope, service=target.name,
                                     taskDefinition=pinned.id)
    assert not ecs.rollback_to(target, pinned, expected=current).changed


def test_a_deploy_between_decision_and_write_is_a_write_conflict_then_target_changed(
        emulator: EcsEmulator, seeded: Seeded, target: Target) -> None:
    """The attempt has decided (DescribeServices) and checks the pinned task definition; a
    deploy lands meanwhile. The read right before UpdateService sees it: nothing is sent, and
    the retry, deciding again, refuses."""
    ecs = platform(emulator, grace=1, read_timeout=10)
    current, pinned = plan(ecs, target)
    held = emulator.hold("DescribeTaskDefinition")
    outcome: dict[str, Any] = {}

    def attempt() -> None:
        try:
            ecs.rollback_to(target, pinned, expected=current)
        except Exception as exc:  # noqa: BLE001
            outcome["error"] = exc

    sent = len(emulator.calls("UpdateService"))
    worker = threading.Thread(target=attempt)
    worker.start()
    assert held.arrived.wait(10)
    fix = hotfix(emulator, target, seeded)
    held.release()
    worker.join(30)
    assert isinstance(outcome.get("error"), WriteConflict), outcome
    assert "changed while this attempt decided" in str(outcome["error"])
    assert len(emulator.calls("UpdateService")) == sent + 1  # the hotfix's own, not ours
    with pytest.raises(TargetChanged):
        ecs.rollback_to(target, pinned, expected=current)
    assert primary(emulator, target)["taskDefinition"] == fix


def test_scale_decided_before_an_autoscaler_moved_desired_count_is_a_write_conflict(
        emulator: EcsEmulator, seeded: Seeded, target: Target) -> None:
    ecs = platform(emulator, grace=1, read_timeout=10)
    held = emulator.hold("DescribeServices", skip=1)  # the second read: right before writing
    outcome: dict[str, Any] = {}

    def attempt() -> None:
        try:
            ecs.scale(target, 0)
        except Exception as exc:  # noqa: BLE001
            outcome["error"] = exc

    worker = threading.Thread(target=attempt)
    worker.start()
    assert held.arrived.wait(10)
    emulator.client().update_service(cluster=target.scope, service=target.name, desiredCount=5)
    held.release()
    worker.join(30)
    assert isinstance(outcome.get("error"), WriteConflict), outcome
    assert "desiredCount 5" in str(outcome["error"])
    assert service(emulator, target)["desiredCount"] == 5
    ecs.scale(target, 0)  # the retry decides on what it reads now
    assert service(emulator, target)["desiredCount"] == 0


def test_a_late_scale_to_zero_is_waited_for_before_scaling_again(
        emulator: EcsEmulator, seeded: Seeded, target: Target) -> None:
    """A scale-down held past the timeout would stop the service if it landed after the
    scale-up. The retry waits for it, so it cannot land later."""
    ecs = platform(emulator, grace=20)
    held = emulator.hold("UpdateService", where=lambda b: b.get("desiredCount") == 0)
    with pytest.raises(TransientPlatformError, match="desiredCount 0"):
        ecs.scale(target, 0)
    worker = threading.Thread(target=ecs.scale, args=(target, 0))
    reads = len(emulator.calls("DescribeServices"))
    worker.start()
    wait_until(lambda: len(emulator.calls("DescribeServices")) >= reads + 2)
    held.release()
    worker.join(30)
    assert held.status == 200 and service(emulator, target)["desiredCount"] == 0
    assert len([c for c in emulator.calls("UpdateService")
                if c.body.get("desiredCount") == 0]) == 1
    ecs.scale(target, seeded.desired_count)
    assert ecs.wait_for_rollout(target, timeout=30).done
    assert service(emulator, target)["desiredCount"] == seeded.desired_count


# -------------------------------------------------------------------- throttling
@pytest.mark.parametrize(("retry_after", "expected"), [("7", 7.0), (None, None)])
def test_throttled_update_service_is_transient_with_its_hint_and_not_resent(
        emulator: EcsEmulator, seeded: Seeded, target: Target, retry_after: str | None,
        expected: float | None) -> None:
    ecs = platform(emulator, grace=30)
    current, pinned = plan(ecs, target)
    emulator.refuse_next("UpdateService", retry_after=retry_after)
    sent = len(emulator.calls("UpdateService"))
    with pytest.raises(TransientPlatformError, match="ThrottlingException") as info:
        ecs.rollback_to(target, pinned, expected=current)
    assert not isinstance(info.value, WriteConflict)
    assert info.value.retry_after == expected
    assert len(emulator.calls("UpdateService")) == sent + 1  # botocore retried nothing
    assert primary(emulator, target)["taskDefinition"] == current.id
    # a throttled call was not applied: the retry does not wait for it, it just sends
    result = ecs.rollback_to(target, pinned, expected=current)
    assert result.changed and "earlier UpdateService" not in result.message
    emulator.refuse_next("UpdateService", retry_after=retry_after)
    with pytest.raises(TransientPlatformError) as info:
        ecs.scale(target, 1)
    assert info.value.retry_after == expected
