"""The load-balancer step (runbook Step 5.2) against moto's ELBv2 over the wire: the path
is set, the old one journaled as the inverse first, a retry is idempotent and keeps the
first reading, and failures are typed (a human vs. another attempt)."""

from __future__ import annotations

import shlex
import socket
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.domain.config import ServiceConfig, parse_config
from bot.domain.lifecycle import State
from bot.domain.models import Rollback, Step
from bot.execution import steps
from bot.execution.errors import PermanentStepError, TemporaryStepError
from bot.execution.steps import StepContext
from bot.integrations.errors import LoadBalancerError
from bot.integrations.load_balancer import TargetGroups
from platforms.base import Revision, Target
from platforms.registry import PRODUCTION
from sandbox.fake_platform import FakePlatform
from tests.support.elbv2 import REGION, Elbv2, running_elbv2

T0 = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)


@pytest.fixture
def elbv2(monkeypatch: pytest.MonkeyPatch) -> Iterator[Elbv2]:
    yield from running_elbv2(monkeypatch)


def _service(arn: str, url: str, path: str = "/v1/health") -> ServiceConfig:
    svc = {"kubernetes": {"namespace": "prod", "deployment": "svc"},
           "load_balancer": {"target_group_arn": arn, "health_check_path": path,
                             "endpoint_url": url, "timeout_seconds": 5}}
    return parse_config({"services": {"svc": svc}}, platforms=PRODUCTION).services["svc"]


def _rollback() -> Rollback:
    rev = Revision("rs-2", 2, ("app:1.2",))
    return Rollback(
        id=7, service="svc", platform="kubernetes", severity="P0", policy_mode="immediate",
        scope=["app"], reason="", state=State.EXECUTING, requester="U1", channel_id="C1",
        channel_name="inc-svc", message_ts="1.1", thread_ts="1.1",
        current_revision=Revision("rs-3", 3, ("app:1.3",), current=True),
        target_revision=rev, target=Target("kubernetes", "prod", "svc"), checklist={},
        assessment={}, approver="U2", break_glass=False, incident_commander=None,
        incident_started_at=None, created_at=T0, updated_at=T0, expires_at=None,
        approved_at=T0, finished_at=None, last_error=None)


class Attempt:
    """One attempt of the step, as the executor gives it: the step row as stored (with what
    earlier attempts journaled) and a journal that merges into it."""

    def __init__(self, service: ServiceConfig, result: dict[str, Any] | None = None, *,
                 running: str = "rs-2") -> None:
        lb = service.load_balancer
        assert lb is not None
        self.result: dict[str, Any] = dict(result or {})
        step = Step(rollback_id=7, seq=2, kind="set_health_check_path", description="lb",
                    destructive=False, status="started", attempts=1,
                    params={"target_group_arn": lb.target_group_arn,
                            "health_check_path": lb.health_check_path,
                            "region": lb.region_name()},
                    result=dict(self.result), error=None, started_at=T0, finished_at=None)
        rollback = _rollback()
        self.platform = FakePlatform()  # what runs: the pinned rs-2 unless told otherwise
        self.platform.set_running_override(rollback.target, running)
        self.ctx = StepContext(rollback=rollback, step=step, service=service,
                               platform=self.platform,
                               all_steps=[step], journal=self.result.update,
                               progress=lambda line: None, known_good_config=None,
                               known_good_recorded_at=None, now=T0)

    def run(self) -> dict[str, Any]:
        out = steps.HANDLERS["set_health_check_path"](self.ctx)
        self.result.update(out)
        return out


def test_the_path_is_set_and_the_old_one_journaled_as_the_inverse(elbv2: Elbv2) -> None:
    arn = elbv2.target_group("hvb-blue", path="/v2/health")
    service = _service(arn, elbv2.url)
    first = Attempt(service)
    out = first.run()
    assert elbv2.health_check_path(arn) == "/v1/health"
    assert out["changed"] is True and out["previous_path"] == "/v2/health"
    inverse = first.result["inverse"]
    assert inverse["health_check_path"] == "/v2/health"
    assert inverse["command"] == (f"aws elbv2 modify-target-group --target-group-arn {arn} "
                                  f"--health-check-path /v2/health --region {REGION}")
    # A retry (the first answer lost on the wire) writes nothing and keeps the first reading.
    again = Attempt(service, result={k: v for k, v in first.result.items()
                                     if k in ("previous_path", "inverse")}).run()
    assert again == {"changed": False, "path": "/v1/health", "previous_path": "/v2/health",
                     "target_group": "hvb-blue",
                     "message": "health check of hvb-blue already /v1/health"}
    assert elbv2.health_check_path(arn) == "/v1/health"


def test_the_journaled_command_pastes_into_a_shell_as_one_path(elbv2: Elbv2) -> None:
    arn = elbv2.target_group("hvb-query", path="/health?a=1&b=2 ;x")
    attempt = Attempt(_service(arn, elbv2.url))
    attempt.run()
    command = attempt.result["inverse"]["command"]
    # What a shell makes of the pasted line: one command, the path one argument, intact.
    assert shlex.split(command) == ["aws", "elbv2", "modify-target-group",
                                    "--target-group-arn", arn, "--health-check-path",
                                    "/health?a=1&b=2 ;x", "--region", REGION]
    argv = subprocess.run(["sh", "-c", f"set -- {command.removeprefix('aws ')}; "
                           'printf "%s\\n" "$@"'], capture_output=True, text=True,
                          check=True).stdout.splitlines()
    assert argv[5] == "/health?a=1&b=2 ;x" and len(argv) == 8


def test_nothing_is_written_when_the_pinned_revision_no_longer_runs(elbv2: Elbv2) -> None:
    arn = elbv2.target_group("hvb-later", path="/v2/health")
    attempt = Attempt(_service(arn, elbv2.url), running="rs-3")  # e.g. resumed after a redeploy
    with pytest.raises(PermanentStepError, match="not what runs: rs-3 .*the load balancer was "
                                                 "not changed"):
        attempt.run()
    assert elbv2.health_check_path(arn) == "/v2/health"
    assert attempt.platform.calls()["confirm_running"] == 1


def test_only_the_path_changes(elbv2: Elbv2) -> None:
    arn = elbv2.target_group("hvb-green")
    client = elbv2.client()
    client.modify_target_group(TargetGroupArn=arn, HealthCheckIntervalSeconds=11,
                               HealthyThresholdCount=4, Matcher={"HttpCode": "200-299"})
    before = client.describe_target_groups(TargetGroupArns=[arn])["TargetGroups"][0]
    Attempt(_service(arn, elbv2.url)).run()
    after = client.describe_target_groups(TargetGroupArns=[arn])["TargetGroups"][0]
    assert {k: v for k, v in after.items() if k != "HealthCheckPath"} == \
        {k: v for k, v in before.items() if k != "HealthCheckPath"}


def test_a_tcp_health_check_is_refused_and_nothing_changes(elbv2: Elbv2) -> None:
    arn = elbv2.target_group("hvb-tcp", path=None, protocol="TCP")
    attempt = Attempt(_service(arn, elbv2.url))
    with pytest.raises(PermanentStepError, match="only an HTTP/HTTPS health check has a path"):
        attempt.run()
    assert elbv2.health_check_path(arn) is None and attempt.result == {}


def test_an_unknown_target_group_needs_a_human(elbv2: Elbv2) -> None:
    arn = elbv2.target_group("hvb-real")
    gone = arn.replace("hvb-real", "hvb-gone")
    with pytest.raises(PermanentStepError, match="not found"):
        Attempt(_service(gone, elbv2.url)).run()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_load_balancer_is_worth_another_attempt(elbv2: Elbv2) -> None:
    arn = elbv2.target_group("hvb-far")
    with pytest.raises(TemporaryStepError, match="load balancer: DescribeTargetGroups"):
        Attempt(_service(arn, f"http://127.0.0.1:{_closed_port()}")).run()
    with pytest.raises(LoadBalancerError) as err:
        TargetGroups(region=REGION, endpoint_url=f"http://127.0.0.1:{_closed_port()}",
                     timeout=2).set_health_check_path(arn, "/x")
    assert err.value.transient
