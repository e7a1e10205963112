"""EcsPlatform through the wire (boto3 -> moto ECS server + deployment simulator): pinned
ARNs, idempotency, services_stable semantics cross-checked with botocore, scale and stop,
circuit-breaker failures and reverts, confirm_running, errors.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, WaiterError
from botocore.loaders import Loader
from botocore.waiter import SingleWaiterConfig

from platforms._ecs_support import evaluate_acceptors, map_client_error, services_stable_model
from platforms.base import (
    Capability,
    ConfigSnapshot,
    PermanentPlatformError,
    Platform,
    Revision,
    RevisionNotFound,
    RolloutFailed,
    Target,
    TargetNotFound,
    TransientPlatformError,
    Unsupported,
)
from platforms.ecs import EcsPlatform
from sandbox.ecs import EcsEmulator, Seeded
from tests.support.emulators import ecs_emulator_fixture, ecs_target, reseed_ecs

POLL = 0.05
SHORT = 0.05  # botocore waiter Delay for the cross-checks


emulator = ecs_emulator_fixture(step_interval=0.05)


@pytest.fixture
def seeded(emulator: EcsEmulator) -> Seeded:
    return reseed_ecs(emulator)


@pytest.fixture
def client(emulator: EcsEmulator) -> Any:
    return emulator.client()


@pytest.fixture
def platform(client: Any) -> EcsPlatform:
    return EcsPlatform(client=client, poll_interval=POLL)


@pytest.fixture
def target(seeded: Seeded, emulator: EcsEmulator) -> Target:
    return ecs_target(seeded, emulator, endpoint_url=True)


def describe(client: Any, target: Target) -> dict[str, Any]:
    return dict(client.describe_services(cluster=target.scope,
                                         services=[target.name])["services"][0])


def previous_of(history: list[Any]) -> Any:
    """What the planner picks: the newest non-current revision older than the current."""
    current = next(r for r in history if r.current)
    return max((r for r in history if not r.current and r.number < current.number),
               key=lambda r: r.number)


def service_tasks(client: Any, target: Target) -> list[dict[str, Any]]:
    """Every task of the service, whatever its desiredStatus (ListTasks + DescribeTasks)."""
    arns = [a for status in ("RUNNING", "STOPPED") for a in client.list_tasks(
        cluster=target.scope, serviceName=target.name, desiredStatus=status)["taskArns"]]
    if not arns:
        return []
    return list(client.describe_tasks(cluster=target.scope, tasks=arns)["tasks"])


def breaker(client: Any, target: Target, *, rollback: bool) -> None:
    client.update_service(cluster=target.scope, service=target.name, deploymentConfiguration={
        "maximumPercent": 200, "minimumHealthyPercent": 100,
        "deploymentCircuitBreaker": {"enable": True, "rollback": rollback}})


def step_until(emulator: EcsEmulator, client: Any, target: Target, predicate: Any,
               max_steps: int = 200) -> dict[str, Any]:
    """Drive the paused scheduler by hand until ``predicate(service)`` holds."""
    for _ in range(max_steps):
        emulator.simulator.step(force=True)
        svc = describe(client, target)
        if predicate(svc):
            return svc
    raise AssertionError(f"never reached: {describe(client, target)['deployments']}")


def count_calls(client: Any, operation: str) -> list[int]:
    calls: list[int] = []
    client.meta.events.register(f"before-call.ecs.{operation}",
                                lambda **_: calls.append(1))
    return calls


# --------------------------------------------------------------------------- history
def test_history_newest_first_with_primary_current(platform: EcsPlatform, target: Target,
                                                   seeded: Seeded) -> None:
    assert isinstance(platform, Platform)
    history = platform.history(target)
    assert [r.number for r in history] == [4, 3, 2, 1]
    assert [r.id for r in history] == list(reversed(seeded.arns))
    assert [r.current for r in history] == [True, False, False, False]
    assert history[0].images == ("registry.example/hotel-voice-bot:1.4.0",)
    assert history[3].images == ("registry.example/hotel-voice-bot:1.1.0",)
    assert history[0].change_cause is not None
    assert history[0].change_cause.startswith("deployed: PRIMARY deployment ecs-svc/")
    assert platform.current_revision(target).id == seeded.arns[3]


def test_history_rule_excludes_deregistered_and_other_families(
        platform: EcsPlatform, target: Target, seeded: Seeded, client: Any) -> None:
    client.deregister_task_definition(taskDefinition=seeded.arns[1])  # v2
    client.register_task_definition(family="hotel-voice-bot-worker", containerDefinitions=[
        {"name": "w", "image": "registry.example/worker:9", "memory": 128}])
    assert [r.number for r in platform.history(target)] == [4, 3, 1]


def test_history_marks_draining_deployment_as_deployed(
        platform: EcsPlatform, target: Target, seeded: Seeded,
        emulator: EcsEmulator, client: Any) -> None:
    emulator.simulator.pause()
    try:
        platform.rollback_to(target, previous_of(platform.history(target)))
        history = {r.number: r for r in platform.history(target)}
        assert history[3].current and not history[4].current
        assert (history[4].change_cause or "").startswith("deployed: ACTIVE deployment")
        # the draining v4 stays listed even once deregistered: a deployment still uses it
        client.deregister_task_definition(taskDefinition=seeded.arns[3])
        assert 4 in {r.number for r in platform.history(target)}
    finally:
        emulator.simulator.resume()


def register_more(client: Any, family: str, count: int) -> None:
    """``count`` more revisions of ``family``, registered and never deployed."""
    for _ in range(count):
        client.register_task_definition(family=family, containerDefinitions=[
            {"name": family, "image": f"registry.example/{family}:ci", "memory": 128}])


def test_history_of_a_family_past_100_revisions_is_the_newest_100_plus_what_runs(
        target: Target, seeded: Seeded, emulator: EcsEmulator, client: Any) -> None:
    """130 revisions, v4 running: ListTaskDefinitions sort=DESC pages newest first, the
    adapter stops at its cap of 100 after one page (v130..v31) and adds the PRIMARY's v4,
    which is older than all of them; with a larger cap it pages on to v1."""
    register_more(client, seeded.family, 126)
    emulator.wire.forget_calls()
    history = EcsPlatform(client=client, poll_interval=POLL).history(target)
    assert [r.number for r in history] == [*range(130, 30, -1), 4]
    assert history[0].number == 130 and not history[0].current
    assert [r.number for r in history if r.current] == [4]
    listings = emulator.calls("ListTaskDefinitions")
    assert [(c.body.get("sort"), c.body.get("familyPrefix"), c.body.get("status"))
            for c in listings] == [("DESC", seeded.family, "ACTIVE")]  # one page was enough
    wide = EcsPlatform(client=client, poll_interval=POLL, max_task_definitions=150)
    assert [r.number for r in wide.history(target)] == list(range(130, 0, -1))
    assert len(emulator.calls("ListTaskDefinitions")) == 1 + 2  # 100 + 30


def test_history_lists_revisions_that_were_registered_but_never_deployed(
        emulator: EcsEmulator) -> None:
    """v3 was registered and skipped, v5 registered after v4 went out and never deployed:
    both are listed, known never to have run (ECS's service deployments name only v1, v2 and
    v4), with a change-cause that says so, and v4 stays current."""
    emulator.reset()
    seeded = emulator.seed_hotel_voice_bot(revisions=5, never_deployed={3, 5})
    client = emulator.client()
    target = ecs_target(seeded, emulator, endpoint_url=True)
    deployed = {t["taskDefinitionArn"] for status in ("RUNNING", "STOPPED")
                for t in service_tasks_of(client, target, status)}
    assert seeded.arns[2] not in deployed and seeded.arns[4] not in deployed  # never ran
    history = {r.number: r for r in EcsPlatform(client=client).history(target)}
    assert sorted(history) == [1, 2, 3, 4, 5]
    assert history[4].current and not history[5].current
    for number in (3, 5):
        assert "never deployed to this service" in (history[number].change_cause or "")
        assert not (history[number].change_cause or "").startswith("deployed")
    assert {n: r.ran for n, r in history.items()} == {1: True, 2: True, 3: False, 4: True,
                                                      5: False}


def service_tasks_of(client: Any, target: Target, status: str) -> list[dict[str, Any]]:
    arns = client.list_tasks(cluster=target.scope, serviceName=target.name,
                             desiredStatus=status)["taskArns"]
    return list(client.describe_tasks(cluster=target.scope, tasks=arns)["tasks"]) if arns \
        else []


# -------------------------------------------------------------------------- rollback
def test_rollback_to_previous_pinned_arn_then_wait_stable(
        platform: EcsPlatform, target: Target, seeded: Seeded, client: Any) -> None:
    previous = previous_of(platform.history(target))
    assert previous.id == seeded.arns[2] and previous.number == 3
    result = platform.rollback_to(target, previous)
    assert result.changed and "hotel-voice-bot:3" in result.message
    status = platform.wait_for_rollout(target, timeout=30)
    assert status.done and not status.failed, status.message
    svc = describe(client, target)
    assert svc["taskDefinition"] == seeded.arns[2]
    assert [(d["status"], d["taskDefinition"]) for d in svc["deployments"]] == \
        [("PRIMARY", seeded.arns[2])]
    assert svc["runningCount"] == svc["desiredCount"] == seeded.desired_count
    assert platform.current_revision(target).id == seeded.arns[2]


def test_second_rollback_is_a_no_op(platform: EcsPlatform, target: Target, seeded: Seeded,
                                    client: Any) -> None:
    previous = previous_of(platform.history(target))
    assert platform.rollback_to(target, previous).changed
    assert platform.wait_for_rollout(target, timeout=30).done
    before = [d["id"] for d in describe(client, target)["deployments"]]
    updates = count_calls(client, "UpdateService")
    again = platform.rollback_to(target, previous)
    assert not again.changed and again.message.startswith("skipped")
    assert updates == []
    assert [d["id"] for d in describe(client, target)["deployments"]] == before


def test_rollback_dry_run_changes_nothing(platform: EcsPlatform, target: Target,
                                          seeded: Seeded, client: Any) -> None:
    updates = count_calls(client, "UpdateService")
    result = platform.rollback_to(target, previous_of(platform.history(target)), dry_run=True)
    assert not result.changed and "dry run" in result.message
    assert updates == [] and describe(client, target)["taskDefinition"] == seeded.arns[3]


# ----------------------------------------------------------------------------- scale
def test_scale_to_zero_and_back_to_recorded_count(platform: EcsPlatform, target: Target,
                                                  client: Any) -> None:
    recorded = platform.get_replicas(target)
    assert recorded == describe(client, target)["desiredCount"] > 0
    platform.scale(target, 0)
    assert platform.wait_for_stopped(target, timeout=30).done
    assert describe(client, target)["runningCount"] == 0
    assert platform.get_replicas(target) == 0
    platform.scale(target, recorded)
    assert platform.wait_for_rollout(target, timeout=30).done
    svc = describe(client, target)
    assert svc["runningCount"] == svc["desiredCount"] == recorded
    updates = count_calls(client, "UpdateService")
    platform.scale(target, recorded)  # equal: no call at all
    assert updates == []
    with pytest.raises(PermanentPlatformError):
        platform.scale(target, -1)


def test_wait_for_stopped_returns_only_once_every_task_is_stopped(
        platform: EcsPlatform, target: Target, emulator: EcsEmulator, client: Any) -> None:
    emulator.simulator.pause()
    # While paused, a stop too long to leave DEACTIVATING however slowly this part runs: the
    # stop phases follow the wall clock, and the forced steps below move them on.
    emulator.simulator.stop_time = 3600.0
    scaled = time.monotonic()  # no task began to stop before this
    try:
        platform.scale(target, 0)
        svc = step_until(emulator, client, target, lambda s: s["runningCount"] == 0)
        # runningCount is 0 and ServicesStable already succeeds, yet nothing has stopped
        assert svc["desiredCount"] == 0 and len(svc["deployments"]) == 1
        assert real_waiter(client, target, attempts=1) == "success"
        tasks = service_tasks(client, target)
        stopping = [t for t in tasks if t["lastStatus"] != "STOPPED"]
        assert len(stopping) == 3
        assert {(t["desiredStatus"], t["lastStatus"]) for t in stopping} == \
            {("STOPPED", "DEACTIVATING")}
        lines: list[str] = []
        started = time.monotonic()
        status = platform.wait_for_stopped(target, timeout=0.4, on_progress=lines.append)
        assert time.monotonic() - started >= 0.4
        assert not status.done and not status.failed
        assert "timed out" in status.message and "0.4s" in status.message
        assert lines == ["3 tasks still running (3 DEACTIVATING); runningCount 0"]
        # Every task has at least 3 s of its stop left from here, whatever the load was so
        # far: its last 3 s (at least) are STOPPING then DEPROVISIONING, which the wait
        # sees; the tasks began stopping at different steps, so not necessarily together.
        emulator.simulator.stop_time = time.monotonic() - scaled + 3.0
    finally:
        emulator.simulator.resume()
    seen: list[str] = []
    try:  # the tasks are still in their stop: the wait has to sit it out
        status = platform.wait_for_stopped(target, timeout=30, on_progress=seen.append)
    finally:
        emulator.simulator.stop_time = 0.3
    assert status.done and not status.failed, status.message
    assert status.message.startswith("service hotel-voice-bot stopped: runningCount 0")
    assert len(seen) >= 2 and seen[-1] == status.message
    # Each progress line counts the tasks not yet STOPPED, by phase; that count only falls.
    counts = []
    for line in seen[:-1]:
        match = STILL_RUNNING.fullmatch(line)
        assert match, line
        phases = [p.split(" ") for p in match["phases"].split(", ")]
        assert all(phase in STOP_PHASES for _, phase in phases), line
        assert sum(int(n) for n, _ in phases) == int(match["live"]) <= 3, line
        counts.append(int(match["live"]))
    assert counts == sorted(counts, reverse=True), seen
    assert any("STOPPING" in m or "DEPROVISIONING" in m for m in seen), seen
    tasks = service_tasks(client, target)
    assert tasks and all(t["lastStatus"] == "STOPPED" and t.get("stoppedAt") for t in tasks)
    assert all(t["startedBy"].startswith("ecs-svc/") and t["group"] == "service:hotel-voice-bot"
               for t in tasks)


STOP_PHASES = {"DEACTIVATING", "STOPPING", "DEPROVISIONING"}
STILL_RUNNING = re.compile(
    r"(?P<live>[0-9]+) tasks? still running \((?P<phases>[^)]+)\); runningCount 0")


def test_wait_for_stopped_fails_when_scaled_up_again(
        platform: EcsPlatform, target: Target, client: Any) -> None:
    platform.scale(target, 0)
    client.update_service(cluster=target.scope, service=target.name, desiredCount=2)
    started = time.monotonic()
    status = platform.wait_for_stopped(target, timeout=10)
    assert status.failed and not status.done and "desiredCount 2" in status.message
    assert time.monotonic() - started < 5


# ------------------------------------------------------------------------------ wait
def test_wait_reports_progress_and_honours_timeout_when_paused(
        platform: EcsPlatform, target: Target, emulator: EcsEmulator) -> None:
    emulator.simulator.pause()
    lines: list[str] = []
    try:
        platform.rollback_to(target, previous_of(platform.history(target)))
        started = time.monotonic()
        status = platform.wait_for_rollout(target, timeout=0.6, on_progress=lines.append)
        elapsed = time.monotonic() - started
    finally:
        emulator.simulator.resume()
    assert not status.done and not status.failed
    assert "timed out" in status.message and "0.6s" in status.message
    assert 0.6 <= elapsed < 5
    assert lines and "2 deployment(s)" in lines[0] and "PRIMARY hotel-voice-bot:3 0/3" in lines[0]
    assert len(lines) == len(set(lines))  # only changes are reported
    progress: list[str] = []
    status = platform.wait_for_rollout(target, timeout=30, on_progress=progress.append)
    assert status.done, status.message
    assert progress[-1] == status.message
    assert "3 of 3 tasks running on hotel-voice-bot:3" in status.message


# ---------------------------------------------------- botocore's waiter as the oracle
def botocore_verdict(response: dict[str, Any]) -> str:
    """botocore's own acceptor matchers applied to one DescribeServices response."""
    spec = Loader().load_service_model("ecs", "waiters-2")["waiters"]["ServicesStable"]
    assert services_stable_model().delay == spec["delay"]  # the adapter reads the same model
    config = SingleWaiterConfig(spec)
    for acceptor in config.acceptors:
        if acceptor.matcher_func(response):
            return str(acceptor.state)
    return "retry"


def real_waiter(client: Any, target: Target, attempts: int = 3) -> str:
    try:
        client.get_waiter("services_stable").wait(
            cluster=target.scope, services=[target.name],
            WaiterConfig={"Delay": SHORT, "MaxAttempts": attempts})
    except WaiterError as exc:
        return "failure" if "terminal failure" in str(exc) else "retry"
    return "success"


def adapter_verdict(platform: EcsPlatform, target: Target) -> str:
    try:
        status = platform.rollout_status(target)
    except TargetNotFound:
        return "failure"
    return "success" if status.done else "failure" if status.failed else "retry"


def test_waiter_agrees_stable_unstable_and_terminal(
        platform: EcsPlatform, target: Target, emulator: EcsEmulator, client: Any) -> None:
    assert adapter_verdict(platform, target) == real_waiter(client, target) == "success"
    emulator.simulator.pause()
    try:
        platform.rollback_to(target, previous_of(platform.history(target)))
        assert adapter_verdict(platform, target) == real_waiter(client, target) == "retry"
        assert platform.wait_for_rollout(target, timeout=0.2).done is False
    finally:
        emulator.simulator.resume()
    assert platform.wait_for_rollout(target, timeout=30).done
    assert real_waiter(client, target) == "success"
    gone = Target("ecs", target.scope, "no-such-service", target.options)
    assert real_waiter(client, gone) == "failure"
    assert adapter_verdict(platform, gone) == "failure"
    platform.scale(target, 0)
    client.delete_service(cluster=target.scope, service=target.name, force=True)
    assert real_waiter(client, target) == "failure"
    response = client.describe_services(cluster=target.scope, services=[target.name])
    assert evaluate_acceptors(response) == botocore_verdict(response) == "failure"


def test_verdicts_match_botocore_on_every_response_of_a_live_rollout(
        platform: EcsPlatform, target: Target, client: Any, emulator: EcsEmulator) -> None:
    emulator.simulator.pause()  # so the first sample is guaranteed mid-rollout
    platform.rollback_to(target, previous_of(platform.history(target)))
    first = client.describe_services(cluster=target.scope, services=[target.name])
    emulator.simulator.resume()
    assert evaluate_acceptors(first) == botocore_verdict(first) == "retry"
    verdicts: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        response = client.describe_services(cluster=target.scope, services=[target.name])
        ours, theirs = evaluate_acceptors(response), botocore_verdict(response)
        assert ours == theirs, response["services"][0]["deployments"]
        verdicts.append(ours)
        if ours == "success":
            break
    assert verdicts[-1] == "success"


# ---------------------------------------------------------------------- error mapping
def test_unknown_service_and_cluster_are_target_not_found(platform: EcsPlatform,
                                                          target: Target) -> None:
    ghost = Target("ecs", target.scope, "no-such-service", target.options)
    no_cluster = Target("ecs", "no-such-cluster", target.name, target.options)
    for bad in (ghost, no_cluster):
        with pytest.raises(TargetNotFound):
            platform.history(bad)
        with pytest.raises(TargetNotFound):
            platform.get_replicas(bad)
        with pytest.raises(TargetNotFound):
            platform.scale(bad, 1)
        with pytest.raises(TargetNotFound):
            platform.rollback_to(bad, platform.current_revision(target))


def test_missing_or_deregistered_task_definition_is_revision_not_found(
        platform: EcsPlatform, target: Target, seeded: Seeded, client: Any) -> None:
    history = platform.history(target)
    ghost = Revision(id=seeded.arns[0].replace(":1", ":99"), number=99)
    with pytest.raises(RevisionNotFound):
        platform.rollback_to(target, ghost)
    client.deregister_task_definition(taskDefinition=seeded.arns[2])
    with pytest.raises(RevisionNotFound, match="INACTIVE"):
        platform.rollback_to(target, history[1])
    other = client.register_task_definition(family="someone-else", containerDefinitions=[
        {"name": "x", "image": "x:1", "memory": 128}])["taskDefinition"]
    with pytest.raises(RevisionNotFound, match="not in family"):
        platform.rollback_to(target, Revision(id=other["taskDefinitionArn"], number=1))
    assert describe(client, target)["taskDefinition"] == seeded.arns[3]


class _Faulty(BaseHTTPRequestHandler):
    """Answers every ECS JSON call with one canned error (throttling, 503, bad param)."""

    replies: list[tuple[int, dict[str, str], dict[str, str]]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server API)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, headers, body = self.replies[0]
        payload = json.dumps(body).encode()
        self.send_response(status)
        for key, value in {"Content-Type": "application/x-amz-json-1.1", **headers}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:  # quiet
        return


@pytest.fixture
def faulty() -> Iterator[tuple[ThreadingHTTPServer, type[_Faulty]]]:
    handler = type("Handler", (_Faulty,), {"replies": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, handler
    server.shutdown()
    server.server_close()


def test_wire_errors_map_to_the_platform_tree(
        faulty: tuple[ThreadingHTTPServer, type[_Faulty]]) -> None:
    server, handler = faulty
    ecs = boto3.session.Session(aws_access_key_id="t", aws_secret_access_key="t").client(
        "ecs", region_name="us-east-1",
        endpoint_url=f"http://127.0.0.1:{server.server_address[1]}",
        config=Config(retries={"mode": "standard", "max_attempts": 1}))
    platform = EcsPlatform(client=ecs)
    target = Target("ecs", "production", "hotel-voice-bot", {"family": "hotel-voice-bot"})
    cases: list[tuple[tuple[int, dict[str, str], dict[str, str]], type[Exception]]] = [
        ((400, {"Retry-After": "7"}, {"__type": "ThrottlingException", "message": "Rate"}),
         TransientPlatformError),
        ((503, {}, {"__type": "ServerException", "message": "down"}), TransientPlatformError),
        ((400, {}, {"__type": "InvalidParameterException", "message": "bad"}),
         PermanentPlatformError),
        ((400, {}, {"__type": "ClientException", "message": "nope"}), PermanentPlatformError),
        ((400, {}, {"__type": "ClusterNotFoundException", "message": "Cluster not found."}),
         TargetNotFound),
    ]
    for reply, expected in cases:
        handler.replies[:] = [reply]
        with pytest.raises(expected) as info:
            platform.get_replicas(target)
        assert isinstance(info.value, TargetNotFound) == (expected is TargetNotFound)
        assert getattr(info.value, "retry_after", None) == (7.0 if reply[1] else None)
    closed = EcsPlatform(client=boto3.session.Session(
        aws_access_key_id="t", aws_secret_access_key="t").client(
        "ecs", region_name="us-east-1", endpoint_url="http://127.0.0.1:9",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1)))
    with pytest.raises(TransientPlatformError):
        closed.get_replicas(target)


def test_task_definition_client_exception_maps_to_revision_not_found() -> None:
    error = ClientError({"Error": {"Code": "ClientException",
                                   "Message": "Unable to describe task definition."},
                         "ResponseMetadata": {"HTTPStatusCode": 400}}, "DescribeTaskDefinition")
    assert isinstance(map_client_error(error, task_definition=True), RevisionNotFound)
    mapped = map_client_error(error)
    assert isinstance(mapped, PermanentPlatformError)
    assert not isinstance(mapped, RevisionNotFound)


def test_unwired_surfaces(platform: EcsPlatform, target: Target) -> None:
    # logs, resources and the configuration view are wired (tests/integration/
    # test_ecs_observability.py); only a separate configuration snapshot is not offered.
    with pytest.raises(Unsupported, match="task definition") as err:
        platform.snapshot_config(target)
    assert err.value.capability == Capability.CONFIG_SNAPSHOTS
    with pytest.raises(Unsupported):
        platform.restore_config(target, ConfigSnapshot(items={}))


def test_client_built_from_target_options(target: Target, seeded: Seeded) -> None:
    session = boto3.session.Session(aws_access_key_id="testing",
                                    aws_secret_access_key="testing")
    platform = EcsPlatform(session=session, poll_interval=POLL)
    assert platform.current_revision(target).id == seeded.arns[3]


# -------------------------------------------------- circuit breaker and confirm_running
def test_confirm_running_after_a_good_rollback(
        platform: EcsPlatform, target: Target, seeded: Seeded) -> None:
    pinned = previous_of(platform.history(target))
    assert not platform.confirm_running(target, pinned).matches  # still on v4
    platform.rollback_to(target, pinned)
    assert platform.wait_for_rollout(target, timeout=30).done
    check = platform.confirm_running(target, pinned)
    assert check.matches, check.detail
    assert check.running.startswith(f"3 tasks of {seeded.arns[2]} (PRIMARY deployment ecs-svc/")
    assert "rolloutState COMPLETED, 3/3 running" in check.running and check.detail == ""


def test_circuit_breaker_revert_fails_the_wait_and_is_never_confirmed(
        platform: EcsPlatform, target: Target, seeded: Seeded, emulator: EcsEmulator,
        client: Any) -> None:
    """Rollback to v3 whose tasks cannot start; the breaker (rollback=true) puts v4 back."""
    breaker(client, target, rollback=True)
    emulator.fail_task_definition(seeded.arns[2])
    pinned = previous_of(platform.history(target))
    assert pinned.id == seeded.arns[2]
    emulator.simulator.pause()
    try:
        platform.rollback_to(target, pinned)
        svc = step_until(emulator, client, target, lambda s: any(
            d.get("rolloutState") == "FAILED" for d in s["deployments"]))
        assert [(d["status"], d["taskDefinition"], d["rolloutState"])
                for d in svc["deployments"]] == [("PRIMARY", seeded.arns[3], "IN_PROGRESS"),
                                                  ("ACTIVE", seeded.arns[2], "FAILED")]
        failed = svc["deployments"][1]
        assert failed["failedTasks"] == 3  # threshold: 50% of 3, at least 3
        assert failed["rolloutStateReason"] == \
            "ECS deployment circuit breaker: tasks failed to start."
        assert svc["taskDefinition"] == seeded.arns[3]
        messages = [e["message"] for e in svc["events"][:4]]
        reverted_to = svc["deployments"][0]["id"]
        assert f"(service hotel-voice-bot) rolling back to deployment {reverted_to}." in messages
        assert (f"(service hotel-voice-bot) (deployment {failed['id']}) deployment failed: "
                "tasks failed to start.") in messages
        never_started = [t for t in service_tasks(client, target)
                         if t["taskDefinitionArn"] == seeded.arns[2]]
        assert {t["stopCode"] for t in never_started} >= {"TaskFailedToStart"}
        assert real_waiter(client, target, attempts=1) == "retry"  # two deployments listed
        status = platform.rollout_status(target)
        assert status.failed and not status.done
        assert "circuit breaker is rolling back" in status.message
        assert seeded.arns[3] in status.message  # names what runs instead
        with pytest.raises(RolloutFailed, match="tasks failed to start"):
            platform.wait_for_rollout(target, timeout=5, raise_on_failure=True)
        check = platform.confirm_running(target, pinned)
        assert not check.matches
        assert check.running.startswith(f"3 tasks of {seeded.arns[3]}")
        assert f"circuit breaker rolled back deployment {failed['id']} of {seeded.arns[2]}" \
            in check.running
    finally:
        emulator.simulator.resume()
    # Once the failed deployment drains, botocore's own waiter calls the service stable...
    assert real_waiter(client, target, attempts=200) == "success"
    assert platform.wait_for_rollout(target, timeout=5).done
    svc = describe(client, target)
    assert [(d["taskDefinition"], d["rolloutState"]) for d in svc["deployments"]] == \
        [(seeded.arns[3], "COMPLETED")]
    # ...but it runs the bad v4 again, which only the service events still tell.
    check = platform.confirm_running(target, pinned)
    assert not check.matches
    assert check.running.startswith(f"3 tasks of {seeded.arns[3]} (PRIMARY deployment")
    assert f"circuit breaker rolled back deployment {failed['id']}" in check.running
    assert f"not the pinned {seeded.arns[2]}" in check.detail


def test_circuit_breaker_live_rollout_reports_failure_or_revert(
        platform: EcsPlatform, target: Target, seeded: Seeded, emulator: EcsEmulator,
        client: Any) -> None:
    breaker(client, target, rollback=True)
    emulator.fail_task_definition(seeded.arns[2])
    pinned = previous_of(platform.history(target))
    platform.rollback_to(target, pinned)
    status = platform.wait_for_rollout(target, timeout=30)
    if status.failed:
        assert "tasks failed to start" in status.message
    else:  # the revert completed between two polls: ServicesStable holds
        assert status.done and real_waiter(client, target) == "success"
    assert real_waiter(client, target, attempts=200) == "success"
    check = platform.confirm_running(target, pinned)
    assert not check.matches and seeded.arns[3] in check.running
    assert "circuit breaker rolled back" in check.running


def test_circuit_breaker_without_rollback_leaves_the_failed_deployment_primary(
        platform: EcsPlatform, target: Target, seeded: Seeded, emulator: EcsEmulator,
        client: Any) -> None:
    breaker(client, target, rollback=False)
    emulator.fail_task_definition(seeded.arns[2])
    pinned = previous_of(platform.history(target))
    platform.rollback_to(target, pinned)
    lines: list[str] = []
    status = platform.wait_for_rollout(target, timeout=30, on_progress=lines.append)
    assert status.failed and not status.done
    assert "ECS deployment circuit breaker: tasks failed to start." in status.message
    assert f"still running: 3 tasks of {seeded.arns[3]}" in status.message
    assert lines[-1] == status.message
    svc = describe(client, target)
    assert [(d["status"], d["taskDefinition"], d["rolloutState"], d["runningCount"])
            for d in svc["deployments"]] == [("PRIMARY", seeded.arns[2], "FAILED", 0),
                                              ("ACTIVE", seeded.arns[3], "COMPLETED", 3)]
    assert real_waiter(client, target, attempts=2) == "retry"
    time.sleep(0.3)  # no new task is launched for a FAILED deployment
    assert describe(client, target)["deployments"][0]["pendingCount"] == 0
    check = platform.confirm_running(target, pinned)
    assert not check.matches
    assert check.running.startswith(f"3 tasks of {seeded.arns[3]} (PRIMARY deployment")
    assert "rolloutState FAILED: ECS deployment circuit breaker" in check.running
    assert check.running.endswith("0/3 running)")
