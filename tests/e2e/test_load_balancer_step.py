"""The load-balancer step through the wire: a Slack request with a ``load_balancer`` block
plans it, the approved rollback points moto's ELBv2 target group at the restored version's
health-check path once the rollout is confirmed, and the step's journal keeps the old path
as its inverse. A rollout that does not take leaves the target group as it was."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from platforms.base import Target
from tests.e2e.conftest import Harness
from tests.support.elbv2 import REGION, Elbv2, running_elbv2


@pytest.fixture
def elbv2(monkeypatch: pytest.MonkeyPatch) -> Iterator[Elbv2]:
    yield from running_elbv2(monkeypatch)


def _with_load_balancer(arn: str, url: str) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        data["services"]["hotel-voice-bot"]["load_balancer"] = {
            "target_group_arn": arn, "health_check_path": "/v1/health", "endpoint_url": url}
    return mutate


def test_the_rollback_points_the_health_check_at_the_restored_path(
        make_harness: Callable[..., Harness], elbv2: Elbv2) -> None:
    arn = elbv2.target_group("hvb-blue", path="/v2/health")
    h = make_harness(config_overrides=_with_load_balancer(arn, elbv2.url))
    rid, msg = h.request_and_approve_p0()
    plan = str(msg["blocks"])
    assert "Point the load balancer's health check (hvb-blue) at /v1/health" in plan
    h.wait_state(rid, "completed")
    assert elbv2.health_check_path(arn) == "/v1/health"
    steps = h.bot.store.steps(rid)
    assert [s.kind for s in steps] == ["app_rollback", "wait_rollout", "set_health_check_path"]
    lb = steps[2]
    assert (lb.status, lb.result["changed"], lb.result["previous_path"]) == (
        "done", True, "/v2/health")
    assert lb.result["inverse"]["command"].endswith(
        f"--health-check-path /v2/health --region {REGION}")
    h.emulator.wait_for(lambda: any("health check of hvb-blue: /v2/health → /v1/health" in t
                                    for t in h.thread_texts(msg)))


def test_a_rollout_that_does_not_take_leaves_the_load_balancer_alone(
        make_harness: Callable[..., Harness], elbv2: Elbv2) -> None:
    arn = elbv2.target_group("hvb-blue", path="/v2/health")
    h = make_harness(config_overrides=_with_load_balancer(arn, elbv2.url))
    # The platform settles on the bad version (an ECS circuit-breaker revert): the path the
    # running version serves must stay what the target group checks.
    h.platform.set_running_override(Target("fake", "production", "hotel-voice-bot"), "rs-3")
    rid, _ = h.request_and_approve_p0()
    rb = h.wait_state(rid, "failed")
    assert "is not what runs: rs-3" in (rb.last_error or "")
    steps = {s.kind: s for s in h.bot.store.steps(rid)}
    assert (steps["wait_rollout"].status, steps["set_health_check_path"].status) == (
        "failed", "pending")
    assert elbv2.health_check_path(arn) == "/v2/health"


def test_a_missing_target_group_stops_the_rollback_after_the_application(
        make_harness: Callable[..., Harness], elbv2: Elbv2) -> None:
    arn = elbv2.target_group("hvb-blue").replace("hvb-blue", "hvb-gone")
    h = make_harness(config_overrides=_with_load_balancer(arn, elbv2.url))
    rid, msg = h.request_and_approve_p0()
    rb = h.wait_state(rid, "failed")
    assert (rb.last_error or "").startswith("set_health_check_path: load balancer: ")
    assert "not found" in (rb.last_error or "")
