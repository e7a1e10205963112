"""The ``load_balancer`` block (runbook Step 5.2): validated with key paths, and the plan's
``set_health_check_path`` step once the rollout is confirmed (after ``wait_rollout``), with
its inverse."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.domain.compensation import INVERSES
from bot.domain.config import ServiceConfig, parse_config
from bot.domain.errors import ConfigError
from bot.domain.planner import build_steps
from platforms.base import Revision
from platforms.registry import PRODUCTION

ROOT = Path(__file__).resolve().parents[2]
ARN = ("arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/hvb-blue/"
       "73e2d6bc24d8a067")
LB = {"target_group_arn": ARN, "health_check_path": "/v1/health"}


def _service(**extra: Any) -> ServiceConfig:
    svc = {"kubernetes": {"namespace": "prod", "deployment": "svc"}, **extra}
    return parse_config({"services": {"svc": svc}}, platforms=PRODUCTION).services["svc"]


@pytest.mark.parametrize("block,expected", [
    ({**LB, "target_group_arn": "hvb-blue"},
     "services.svc.load_balancer.target_group_arn: Value error, expected an ELBv2 target"),
    ({**LB, "target_group_arn": ARN.replace("targetgroup/", "loadbalancer/")},
     "services.svc.load_balancer.target_group_arn: Value error"),
    ({**LB, "health_check_path": "health"},
     "services.svc.load_balancer.health_check_path: Value error, a health-check path starts"),
    ({**LB, "health_check_path": "/" + "x" * 1024},
     "services.svc.load_balancer.health_check_path: Value error"),
    ({"target_group_arn": ARN}, "services.svc.load_balancer.health_check_path: field required"),
    ({**LB, "port": 80}, "services.svc.load_balancer.port: unknown key"),
])
def test_a_broken_block_names_its_key_path(block: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        _service(load_balancer=block)
    assert any(p.startswith(expected) for p in err.value.problems), err.value.problems


def test_a_broken_block_exits_2_from_check_config(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "rollback.example.yml").read_text())
    data["services"]["hotel-voice-bot"]["load_balancer"] = {**LB, "health_check_path": "x"}
    broken = tmp_path / "broken.yml"
    broken.write_text(yaml.safe_dump(data))
    run = subprocess.run([sys.executable, "-m", "bot.runtime.cli", "check-config", str(broken)],
                         capture_output=True, text=True, cwd=ROOT, env={**os.environ},
                         timeout=60)
    assert run.returncode == 2
    assert "services.hotel-voice-bot.load_balancer.health_check_path" in run.stderr


def test_the_region_defaults_to_the_arns() -> None:
    assert _service(load_balancer=LB).load_balancer.region_name() == "eu-west-1"  # type: ignore[union-attr]
    assert _service(load_balancer={**LB, "region": "us-east-2"}
                    ).load_balancer.region_name() == "us-east-2"  # type: ignore[union-attr]


def test_the_step_follows_the_confirmed_rollout_with_its_inverse() -> None:
    target = Revision("rs-3", 3, ("app:1.3.0",))
    steps = build_steps(service=_service(load_balancer=LB), platform="kubernetes",
                        scope=["app"], target_revision=target, backup_path=None)
    assert [s.kind for s in steps] == ["app_rollback", "wait_rollout", "set_health_check_path"]
    step = steps[2]
    assert step.params == {"target_group_arn": ARN, "health_check_path": "/v1/health",
                           "region": "eu-west-1",
                           "inverse": INVERSES["set_health_check_path"]}
    assert "hvb-blue" in step.description and "/v1/health" in step.description
    assert not step.destructive


def test_no_application_in_scope_no_load_balancer_step() -> None:
    steps = build_steps(service=_service(load_balancer=LB, webhooks=[
        {"name": "twilio", "url": "http://hooks/1"}]), platform="kubernetes",
        scope=["external"], target_revision=Revision("rs-3", 3), backup_path=None)
    assert [s.kind for s in steps] == ["repoint_webhooks"]


def test_with_every_scope_the_step_still_waits_for_the_confirmed_rollout() -> None:
    steps = build_steps(service=_service(load_balancer=LB, webhooks=[
        {"name": "twilio", "url": "http://hooks/1"}]), platform="kubernetes",
        scope=["app", "config", "external"], target_revision=Revision("rs-3", 3),
        backup_path=None)
    kinds = [s.kind for s in steps]
    assert kinds.index("set_health_check_path") == kinds.index("wait_rollout") + 1
    assert kinds[-1] == "repoint_webhooks"
