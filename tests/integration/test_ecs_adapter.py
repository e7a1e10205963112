"""EcsPlatform through the wire (boto3 -> moto ECS server + deployment simulator): pinned
ARNs, idempotency, services_stable semantics cross-checked with botocore, scale, errors.
"""

from __future__ import annotations

import json
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
    PermanentPlatformError,
    Platform,
    Revision,
    RevisionNotFound,
    Target,
    TargetNotFound,
    TransientPlatformError,
)
from platforms.ecs import EcsPlatform
from sandbox.ecs import EcsEmulator, Seeded

POLL = 0.05
SHORT = 0.05  # botocore waiter Delay for the cross-checks


@pytest.fixture(scope="module")
def emulator() -> Iterator[EcsEmulator]:
    em = EcsEmulator(step_interval=0.05).start()
    try:
        yield em
    finally:
        em.stop()


@pytest.fixture
def seeded(emulator: EcsEmulator) -> Seeded:
    emulator.reset()
    return emulator.seed_hotel_voice_bot()


@pytest.fixture
def client(emulator: EcsEmulator) -> Any:
    return emulator.client()


@pytest.fixture
def platform(client: Any) -> EcsPlatform:
    return EcsPlatform(client=client, poll_interval=POLL)


@pytest.fixture
def target(seeded: Seeded, emulator: EcsEmulator) -> Target:
    return Target("ecs", seeded.cluster, seeded.service,
                  {"family": seeded.family, "region": emulator.region,
                   "endpoint_url": emulator.endpoint_url})


def describe(client: Any, target: Target) -> dict[str, Any]:
    return dict(client.describe_services(cluster=target.scope,
                                         services=[target.name])["services"][0])


def previous_of(history: list[Any]) -> Any:
    """What the planner picks: the newest non-current revision older than the current."""
    current = next(r for r in history if r.current)
    return max((r for r in history if not r.current and r.number < current.number),
               key=lambda r: r.number)


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
    assert platform.wait_for_rollout(target, timeout=30).done
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
    assert platform.logs_tail(target) is None
    with pytest.raises(NotImplementedError, match="CloudWatch"):
        platform.resource_usage(target)
    snapshot = platform.snapshot_config(target)
    assert snapshot.items == {} and platform.restore_config(target, snapshot) is False


def test_client_built_from_target_options(target: Target, seeded: Seeded) -> None:
    session = boto3.session.Session(aws_access_key_id="testing",
                                    aws_secret_access_key="testing")
    platform = EcsPlatform(session=session, poll_interval=POLL)
    assert platform.current_revision(target).id == seeded.arns[3]
