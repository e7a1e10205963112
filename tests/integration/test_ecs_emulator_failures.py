"""The ECS emulator fails the way ECS does, checked through the wire with real boto3 and
botocore's own ``services_stable`` waiter as the oracle: images that cannot be pulled,
containers that exit with a code, the deployment circuit breaker with and without rollback
(threshold min(max(ceil(0.5 x desiredCount), 3), 200)), failedTasks reset by a running task,
a missing awslogs log group, percent-based rolling updates, service tasks in ListTasks /
DescribeTasks, and ListTaskDefinitions sorted and paged. The adapter's reading of each
failure is asserted next to the oracle's.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
from botocore.exceptions import ClientError, WaiterError

from platforms.base import RolloutFailed, Target
from platforms.ecs import EcsPlatform
from sandbox.ecs import EcsEmulator, Seeded, TaskFault
from tests.support.emulators import ecs_emulator_fixture, ecs_target
from tests.support.waiting import wait_until

DELAY = 0.05  # botocore waiter Delay
emulator = ecs_emulator_fixture(step_interval=0.05)


def seed(emulator: EcsEmulator, **kwargs: Any) -> tuple[Seeded, Target, Any, EcsPlatform]:
    emulator.reset()
    seeded = emulator.seed_hotel_voice_bot(**kwargs)
    client = emulator.client()
    return (seeded, ecs_target(seeded, emulator, endpoint_url=True), client,
            EcsPlatform(client=client, poll_interval=0.05))


def service(client: Any, target: Target) -> dict[str, Any]:
    return dict(client.describe_services(cluster=target.scope,
                                         services=[target.name])["services"][0])


def waiter(client: Any, target: Target, attempts: int) -> str:
    """botocore's ServicesStable waiter: "success", "failure" (a failure acceptor matched)
    or "timeout" (max attempts exceeded)."""
    try:
        client.get_waiter("services_stable").wait(
            cluster=target.scope, services=[target.name],
            WaiterConfig={"Delay": DELAY, "MaxAttempts": attempts})
    except WaiterError as exc:
        return "failure" if "terminal failure" in str(exc) else "timeout"
    return "success"


def tasks(client: Any, target: Target, status: str) -> list[dict[str, Any]]:
    arns = client.list_tasks(cluster=target.scope, serviceName=target.name,
                             desiredStatus=status)["taskArns"]
    return list(client.describe_tasks(cluster=target.scope, tasks=arns)["tasks"]) if arns \
        else []


def breaker(client: Any, target: Target, *, rollback: bool) -> None:
    client.update_service(cluster=target.scope, service=target.name, deploymentConfiguration={
        "maximumPercent": 200, "minimumHealthyPercent": 100,
        "deploymentCircuitBreaker": {"enable": True, "rollback": rollback}})


def deploy(client: Any, target: Target, arn: str) -> None:
    client.update_service(cluster=target.scope, service=target.name, taskDefinition=arn)


def step_until(emulator: EcsEmulator, client: Any, target: Target, predicate: Any,
               max_steps: int = 400) -> dict[str, Any]:
    for _ in range(max_steps):
        emulator.simulator.step(force=True)
        svc = service(client, target)
        if predicate(svc):
            return svc
    raise AssertionError(f"never reached: {service(client, target)['deployments']}")


# ------------------------------------------------------------------ failed deployments
def test_an_image_that_cannot_be_pulled_keeps_failing_and_the_service_never_stabilises(
        emulator: EcsEmulator) -> None:
    """Without the circuit breaker ECS launches replacements for ever: failedTasks counts up,
    rolloutState stays IN_PROGRESS, the old deployment keeps serving, and ServicesStable
    runs out of attempts (no acceptor matches) instead of failing."""
    seeded, target, client, platform = seed(emulator)
    emulator.fail_task_definition(seeded.arns[2])
    deploy(client, target, seeded.arns[2])
    svc = wait_until(lambda: (s := service(client, target))["deployments"][0]["failedTasks"]
                     >= 5 and s, timeout=20, message="five failed tasks")
    primary, old = svc["deployments"]
    assert (primary["taskDefinition"], primary["rolloutState"]) == \
        (seeded.arns[2], "IN_PROGRESS")
    assert (old["taskDefinition"], old["runningCount"]) == (seeded.arns[3], 3)
    assert waiter(client, target, attempts=20) == "timeout"
    failed = [t for t in tasks(client, target, "STOPPED") if t["startedBy"] == primary["id"]]
    assert len(failed) >= 5
    for task in failed:
        assert task["stopCode"] == "TaskFailedToStart"
        assert task["stoppedReason"].startswith("CannotPullContainerError:")
        assert task["lastStatus"] == task["desiredStatus"] == "STOPPED"
        container = task["containers"][0]
        assert container["reason"] == task["stoppedReason"]
        assert "exitCode" not in container  # it never ran
    status = platform.wait_for_rollout(target, timeout=0.5)
    assert not status.done and not status.failed  # what ECS says: still in progress
    assert "2 deployment(s)" in status.message
    assert re.search(r"PRIMARY hotel-voice-bot:3 0/3 \(\d+ failed tasks\)", status.message)


def test_a_container_exiting_with_a_code_trips_the_breaker_without_rollback(
        emulator: EcsEmulator) -> None:
    seeded, target, client, platform = seed(emulator)
    breaker(client, target, rollback=False)
    emulator.crash_task_definition(seeded.arns[2], exit_code=3,
                                   logs=("KeyError: 'DATABASE_URL'",))
    deploy(client, target, seeded.arns[2])
    with pytest.raises(RolloutFailed, match="ECS deployment circuit breaker: tasks failed"):
        platform.wait_for_rollout(target, timeout=20, raise_on_failure=True)
    svc = service(client, target)
    assert [(d["status"], d["rolloutState"], d["failedTasks"]) for d in svc["deployments"]] == \
        [("PRIMARY", "FAILED", 3), ("ACTIVE", "COMPLETED", 0)]
    # two deployments stay listed: ServicesStable neither succeeds nor fails, it times out
    assert waiter(client, target, attempts=10) == "timeout"
    mine = [t for t in tasks(client, target, "STOPPED")
            if t["startedBy"] == svc["deployments"][0]["id"]]
    crashed = [t for t in mine if t["stopCode"] == "EssentialContainerExited"]
    assert len(crashed) == 3 and {t["taskDefinitionArn"] for t in crashed} == {seeded.arns[2]}
    # tasks still starting when the breaker tripped are stopped, not counted as failures
    assert all(t["stopCode"] == "ServiceSchedulerInitiated" for t in mine if t not in crashed)
    assert {(t["stopCode"], t["stoppedReason"], t["containers"][0]["exitCode"])
            for t in crashed} == {("EssentialContainerExited",
                                   "Essential container in task exited", 3)}
    logs = platform.logs_tail(target, lines=10)
    assert "EssentialContainerExited: Essential container in task exited " \
           "(hotel-voice-bot exit code 3)" in logs
    assert "] KeyError: 'DATABASE_URL'" in logs


@pytest.mark.parametrize("desired", [8, 3])
def test_the_breaker_reverts_at_its_threshold_and_services_stable_then_succeeds(
        emulator: EcsEmulator, desired: int) -> None:
    """rollback=true: FAILED at min(max(ceil(0.5 x desired), 3), 200) failed tasks, the last
    COMPLETED deployment is PRIMARY again, and once the failed one drained ServicesStable
    succeeds on the old task definition; the adapter reports the revert all along."""
    seeded, target, client, platform = seed(emulator, desired_count=desired)
    breaker(client, target, rollback=True)
    emulator.fail_task_definition(seeded.arns[2])
    emulator.simulator.pause()
    try:
        deploy(client, target, seeded.arns[2])
        svc = step_until(emulator, client, target, lambda s: any(
            d["rolloutState"] == "FAILED" for d in s["deployments"]))
        failed = svc["deployments"][1]
        assert failed["failedTasks"] == min(max(math.ceil(0.5 * desired), 3), 200)
        assert [(d["status"], d["taskDefinition"]) for d in svc["deployments"]] == \
            [("PRIMARY", seeded.arns[3]), ("ACTIVE", seeded.arns[2])]
        messages = [e["message"] for e in svc["events"]]
        assert (f"(service {target.name}) rolling back to deployment "
                f"{svc['deployments'][0]['id']}.") in messages
        assert waiter(client, target, attempts=2) == "timeout"
        status = platform.rollout_status(target)
        assert status.failed and "circuit breaker is rolling back" in status.message
    finally:
        emulator.simulator.resume()
    assert waiter(client, target, attempts=200) == "success"  # what users see with ECS
    status = platform.wait_for_rollout(target, timeout=5)
    assert status.done  # stable, and...
    check = platform.confirm_running(target, platform.history(target)[1])
    assert not check.matches and "circuit breaker rolled back" in check.running


def test_a_task_that_runs_resets_failed_tasks_and_the_deployment_completes(
        emulator: EcsEmulator) -> None:
    """A fault hook fails the first two tasks of v3 only: failedTasks counts 1, 2, then the
    first RUNNING task resets it (resetOnHealthyTask), so the breaker never trips."""
    seeded, target, client, platform = seed(emulator)
    breaker(client, target, rollback=True)
    seen = fail_calls(emulator, seeded.arns[2], {1, 2})
    emulator.simulator.pause()
    try:
        deploy(client, target, seeded.arns[2])
        svc = step_until(emulator, client, target,
                         lambda s: s["deployments"][0]["failedTasks"] == 2)
        assert svc["deployments"][0]["rolloutState"] == "IN_PROGRESS"
        step_until(emulator, client, target, lambda s: s["deployments"][0]["runningCount"] > 0)
        assert service(client, target)["deployments"][0]["failedTasks"] == 0
    finally:
        emulator.simulator.resume()
    assert platform.wait_for_rollout(target, timeout=20).done
    assert waiter(client, target, attempts=3) == "success"
    assert seen == list(range(seen[0], seen[0] + len(seen))) and len(seen) >= 4
    assert platform.confirm_running(target, platform.current_revision(target)).matches


def test_without_reset_on_healthy_task_failures_add_up_across_a_running_task(
        emulator: EcsEmulator) -> None:
    """resetOnHealthyTask=false: tasks 1 and 2 fail, 3 runs, 4 fails: the count goes on to
    3 and the breaker trips although a task of the deployment runs."""
    seeded, target, client, platform = seed(emulator)
    client.update_service(cluster=target.scope, service=target.name, deploymentConfiguration={
        "maximumPercent": 200, "minimumHealthyPercent": 100, "deploymentCircuitBreaker": {
            "enable": True, "rollback": False, "resetOnHealthyTask": False}})
    fail_calls(emulator, seeded.arns[2], {1, 2, 4})
    emulator.simulator.pause()
    try:
        deploy(client, target, seeded.arns[2])
        svc = step_until(emulator, client, target, lambda s: any(
            d["rolloutState"] == "FAILED" for d in s["deployments"]))
    finally:
        emulator.simulator.resume()
    primary = svc["deployments"][0]
    assert (primary["rolloutState"], primary["failedTasks"], primary["runningCount"]) == \
        ("FAILED", 3, 1)
    with pytest.raises(RolloutFailed, match="circuit breaker"):
        platform.rollout_status(target, raise_on_failure=True)


def fail_calls(emulator: EcsEmulator, arn: str, failing: set[int]) -> list[int]:
    """A fault hook: the n-th task of ``arn`` started from now on exits with 137 when n is
    in ``failing``; returns the attempts the emulator passed (counting every task of
    ``arn``, the seed's included)."""
    seen: list[int] = []

    def hook(task_definition: str, attempt: int) -> TaskFault | None:
        if task_definition != arn:
            return None
        seen.append(attempt)
        return TaskFault("exit", exit_code=137) if len(seen) in failing else None

    emulator.set_fault_hook(hook)
    return seen


def test_a_missing_awslogs_log_group_keeps_tasks_from_starting(emulator: EcsEmulator) -> None:
    seeded, target, client, _ = seed(emulator)
    definition = client.describe_task_definition(
        taskDefinition=seeded.arns[3])["taskDefinition"]
    container = dict(definition["containerDefinitions"][0])
    container["logConfiguration"] = {"logDriver": "awslogs", "options": {
        "awslogs-group": "/ecs/no-such-group", "awslogs-region": emulator.region,
        "awslogs-stream-prefix": "ecs"}}
    arn = client.register_task_definition(family=seeded.family, cpu="256", memory="512",
                                          containerDefinitions=[container]
                                          )["taskDefinition"]["taskDefinitionArn"]
    deploy(client, target, arn)
    wait_until(lambda: service(client, target)["deployments"][0]["failedTasks"] >= 1,
               timeout=20, message="a failed task")
    stopped = [t for t in tasks(client, target, "STOPPED") if t["taskDefinitionArn"] == arn]
    assert stopped and stopped[0]["stopCode"] == "TaskFailedToStart"
    assert "The specified log group does not exist" in stopped[0]["stoppedReason"]


# -------------------------------------------------------------- percent-based rolling
@pytest.mark.parametrize(("minimum", "maximum"), [(50, 100), (100, 200), (0, 100)])
def test_rolling_update_respects_minimum_healthy_and_maximum_percent(
        emulator: EcsEmulator, minimum: int, maximum: int) -> None:
    """deployment-type-ecs.html: at least ceil(min% x desired) tasks RUNNING, at most
    floor(max% x desired) RUNNING or PENDING, at every step, observed through ListTasks /
    DescribeTasks; and the scheduler uses the room it has (it stops before it starts when
    maximumPercent is 100, and surges when it is 200)."""
    seeded, target, client, platform = seed(emulator, desired_count=4)
    client.update_service(cluster=target.scope, service=target.name, deploymentConfiguration={
        "minimumHealthyPercent": minimum, "maximumPercent": maximum})
    floor, ceiling = math.ceil(4 * minimum / 100), math.floor(4 * maximum / 100)
    emulator.simulator.pause()
    running_seen, live_seen = [], []
    try:
        deploy(client, target, seeded.arns[2])
        for _ in range(400):
            emulator.simulator.step(force=True)
            live = tasks(client, target, "RUNNING")  # desiredStatus RUNNING
            running_seen.append(sum(t["lastStatus"] == "RUNNING" for t in live))
            live_seen.append(len(live))
            svc = service(client, target)
            if svc["deployments"][0]["rolloutState"] == "COMPLETED":
                break
        else:
            raise AssertionError(f"rollout never completed: {svc['deployments']}")
    finally:
        emulator.simulator.resume()
    assert min(running_seen) >= floor and max(live_seen) <= ceiling
    if maximum == 100:
        assert min(running_seen) < 4  # old tasks went first to make room
        assert minimum != 50 or min(running_seen) == floor
    else:
        assert max(live_seen) > 4  # new tasks started before old ones stopped
    assert {t["taskDefinitionArn"] for t in tasks(client, target, "RUNNING")} == \
        {seeded.arns[2]}
    assert waiter(client, target, attempts=200) == "success"


# --------------------------------------------------------------------------- tasks
def test_list_tasks_and_describe_tasks_return_the_services_tasks(emulator: EcsEmulator) -> None:
    seeded, target, client, platform = seed(emulator)
    running = tasks(client, target, "RUNNING")
    assert len(running) == 3 == service(client, target)["runningCount"]
    for task in running:
        assert (task["lastStatus"], task["desiredStatus"]) == ("RUNNING", "RUNNING")
        assert task["taskDefinitionArn"] == seeded.arns[3]
        assert task["group"] == f"service:{target.name}"
        assert task["startedBy"] == service(client, target)["deployments"][0]["id"]
    replaced = [t for t in tasks(client, target, "STOPPED")
                if t["taskDefinitionArn"] == seeded.arns[2]]
    assert len(replaced) == 3
    assert all(t["stopCode"] == "ServiceSchedulerInitiated"
               and t["stoppedReason"].startswith("Scaling activity initiated by (deployment ")
               for t in replaced)
    other = client.list_tasks(cluster=target.scope, serviceName="another-service")["taskArns"]
    assert other == []


# ----------------------------------------------------------- ListTaskDefinitions
def test_list_task_definitions_sorts_and_pages_like_ecs(emulator: EcsEmulator) -> None:
    seeded, target, client, _ = seed(emulator)
    definition = {"containerDefinitions": [{"name": "x", "image": "x:1", "memory": 64}]}
    for _ in range(126):  # 130 revisions in all
        client.register_task_definition(family=seeded.family, **definition)
    client.register_task_definition(family=f"{seeded.family}-worker", **definition)
    client.deregister_task_definition(taskDefinition=f"{seeded.family}:7")

    first = client.list_task_definitions(familyPrefix=seeded.family, sort="DESC")
    assert len(first["taskDefinitionArns"]) == 100 and "nextToken" in first  # default page
    numbers = [int(a.rsplit(":", 1)[1]) for a in first["taskDefinitionArns"]]
    assert numbers == list(range(130, 30, -1))
    second = client.list_task_definitions(familyPrefix=seeded.family, sort="DESC",
                                          nextToken=first["nextToken"])
    assert [int(a.rsplit(":", 1)[1]) for a in second["taskDefinitionArns"]] == \
        [n for n in range(30, 0, -1) if n != 7]
    assert "nextToken" not in second

    pages = client.get_paginator("list_task_definitions").paginate(
        familyPrefix=seeded.family, PaginationConfig={"PageSize": 50})
    listed = [a for page in pages for a in page["taskDefinitionArns"]]
    assert [int(a.rsplit(":", 1)[1]) for a in listed] == [n for n in range(1, 131) if n != 7]
    everything = client.list_task_definitions()["taskDefinitionArns"]  # ASC: family, revision
    assert everything[0].endswith(f"{seeded.family}:1")
    assert client.list_task_definitions(familyPrefix="hotel-voice")["taskDefinitionArns"] == []
    assert client.list_task_definitions(familyPrefix=seeded.family, status="INACTIVE"
                                        )["taskDefinitionArns"] == [
        f"arn:aws:ecs:{emulator.region}:123456789012:task-definition/{seeded.family}:7"]
    for bad in ({"maxResults": 101}, {"maxResults": 0}, {"nextToken": "not-a-token"}):
        with pytest.raises(ClientError) as err:
            client.list_task_definitions(familyPrefix=seeded.family, **bad)
        assert err.value.response["Error"]["Code"] == "InvalidParameterException"


def test_a_revision_registered_between_pages_neither_repeats_nor_shifts_the_listing(
        emulator: EcsEmulator) -> None:
    """The next page continues after the last revision listed (the token is opaque to the
    client); with DESC a revision registered meanwhile belongs before the first page."""
    seeded, target, client, _ = seed(emulator)
    first = client.list_task_definitions(familyPrefix=seeded.family, sort="DESC", maxResults=2)
    client.register_task_definition(family=seeded.family, containerDefinitions=[
        {"name": "x", "image": "x:1", "memory": 64}])
    rest = client.list_task_definitions(familyPrefix=seeded.family, sort="DESC", maxResults=2,
                                        nextToken=first["nextToken"])
    listed = first["taskDefinitionArns"] + rest["taskDefinitionArns"]
    assert [int(a.rsplit(":", 1)[1]) for a in listed] == [4, 3, 2, 1]
    assert "nextToken" not in rest


def test_tasks_that_ignore_sigterm_are_killed_after_their_stop_timeout(
        emulator: EcsEmulator) -> None:
    """Scale to zero with containers that ignore SIGTERM: runningCount is 0 at once but the
    tasks stay in the stop phases for their stopTimeout; botocore's tasks_stopped waiter and
    the adapter's wait_for_stopped both wait, and the containers end with exit code 137."""
    seeded, target, client, platform = seed(emulator)
    emulator.ignore_sigterm(seeded.arns[3], stop_timeout=2.0)
    arns = client.list_tasks(cluster=target.scope, serviceName=target.name)["taskArns"]
    platform.scale(target, 0)
    wait_until(lambda: service(client, target)["runningCount"] == 0, timeout=5,
               message="runningCount 0")
    with pytest.raises(WaiterError, match="Max attempts exceeded"):
        client.get_waiter("tasks_stopped").wait(
            cluster=target.scope, tasks=arns, WaiterConfig={"Delay": DELAY, "MaxAttempts": 4})
    early = platform.wait_for_stopped(target, timeout=0.2)
    assert not early.done and "3 tasks still running" in early.message
    assert platform.wait_for_stopped(target, timeout=20).done
    client.get_waiter("tasks_stopped").wait(cluster=target.scope, tasks=arns,
                                            WaiterConfig={"Delay": DELAY, "MaxAttempts": 2})
    stopped = client.describe_tasks(cluster=target.scope, tasks=arns)["tasks"]
    assert {t["containers"][0]["exitCode"] for t in stopped} == {137}
    logs = platform.logs_tail(target, lines=1)
    assert logs.count("] Received SIGTERM") == 3
