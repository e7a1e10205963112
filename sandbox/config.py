"""The sandbox's service catalog: the example runbook, pointed at local stand-ins.

Starts from ``rollback.example.yml`` so the sandbox exercises the real policy and the
real hotel-voice-bot entry, and swaps only the endpoints (platform, health, Prometheus,
external checks) for what runs on 127.0.0.1.

With ``ecs``/``fly`` blocks (``python -m sandbox run`` passes them) the catalog also has
``hotel-voice-bot-ecs`` and ``hotel-voice-bot-fly``: the same entry on the ECS and Fly
emulators, so their logs, resource usage, configuration view, revision detail and the
load-balancer step show in the sandbox too.

``PLATFORMS`` is the sandbox's registry: production's platforms plus the in-memory ``fake``
(``sandbox/fake_platform.py``), which production's schema refuses. Configs with a ``fake:``
block are parsed with it (``sandbox_config``, ``parse_sandbox_config``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from bot.domain.config import RollbackConfig, parse_config
from bot.persistence.db import data_dir
from platforms.registry import PRODUCTION
from sandbox import fake_platform

EXAMPLE = Path(__file__).resolve().parent.parent / "rollback.example.yml"
USERGROUP = "sre-approvers"  # the emulator seeds this group with bob and carol
PLATFORMS = PRODUCTION.plus(fake_platform.SPEC)


def error_rate_query(window: str) -> str:
    """The demo service's 5xx ratio over a ``rate`` window (the runbook's PromQL, with a
    window a test or drill that counts seconds can use)."""
    failed = f'rate(http_requests_total{{service="hotel-voice-bot",status=~"5.."}}[{window}])'
    every = f'rate(http_requests_total{{service="hotel-voice-bot"}}[{window}])'
    return f"sum({failed}) / sum({every})"


def sandbox_config_dict(
    *, platform: str = "fake", fake: dict[str, Any] | None = None,
    kubernetes: dict[str, Any] | None = None, demo_url: str | None = None,
    prometheus_url: str | None = None, monitoring: dict[str, Any] | None = None,
    stakeholder_channel: str | None = "hotel-voice-bot-stakeholders",
    postmortem_dir: str | None = None, error_rate_window: str = "30s",
    watcher: dict[str, Any] | None = None, ecs: dict[str, Any] | None = None,
    fly: dict[str, Any] | None = None, load_balancer: dict[str, Any] | None = None,
    pagerduty: dict[str, Any] | None = None, statuspage: dict[str, Any] | None = None,
    smtp: dict[str, Any] | None = None, github: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The example catalog with local endpoints. ``watcher`` (keys of
    ``services.<name>.watcher``) enables the release watcher in the incident channel; it reads
    ``prometheus_url``. ``error_rate_window`` is the query's ``rate`` window: a drill with
    seconds-long durations needs one of seconds too, or the ratio lags the release.
    ``ecs``/``fly`` add the platform services (``platform_services``); ``load_balancer`` is
    the ECS service's ``load_balancer`` block; ``pagerduty`` the services' ``pagerduty``
    block (the sandbox's PagerDuty emulator); ``statuspage`` the Kubernetes service's
    ``stakeholders.statuspage`` block (the sandbox's Statuspage emulator); ``smtp`` the
    sandbox's mail relay (stakeholder e-mail and the meeting invitation); ``github`` the
    Kubernetes service's ``postmortem.github`` block (the sandbox's GitHub emulator)."""
    data: dict[str, Any] = copy.deepcopy(yaml.safe_load(EXAMPLE.read_text()))
    data["slack"]["approvers"] = {"usergroup": USERGROUP, "users": []}
    svc = data["services"]["hotel-voice-bot"]
    for key in ("ecs", "fly", "database", "external_checks", "functional_checks", "webhooks",
                "prometheus", "health"):
        svc.pop(key, None)
    svc["kubernetes"] = kubernetes or svc["kubernetes"]
    if platform == "fake":
        svc["fake"] = fake or {"scope": "production", "name": "hotel-voice-bot"}
        svc["default_platform"] = "fake"
        if kubernetes is None:
            svc.pop("kubernetes")
    else:
        svc["default_platform"] = platform
    if demo_url:
        svc["health"] = {"url": f"{demo_url}/api/health", "timeout_seconds": 2, "samples": 10}
        svc["functional_checks"] = [
            {"name": "FAQ list", "url": f"{demo_url}/api/faqs"},
            {"name": "Conversation creation", "method": "POST",
             "url": f"{demo_url}/api/conversations", "json": {"guest": "smoke"},
             "expect_status": [200, 201]},
        ]
    if prometheus_url:
        svc["prometheus"] = {"url": prometheus_url, "error_rate_threshold": 0.05,
                             "error_rate_query": error_rate_query(error_rate_window)}
    if watcher is not None:
        svc["watcher"] = {**svc.get("watcher", {}), "enabled": True, **watcher}
    svc["monitoring"] = monitoring or {"duration_seconds": 0, "interval_seconds": 5}
    svc["stakeholders"] = {"channels": [stakeholder_channel] if stakeholder_channel else []}
    if statuspage is not None:
        svc["stakeholders"]["statuspage"] = statuspage
    if smtp is not None:
        data["smtp"] = smtp
        svc["stakeholders"]["email"] = [SANDBOX_STAKEHOLDER_EMAIL]
    if github is not None:
        svc["postmortem"] = {"github": github}
    svc["contacts"] = copy.deepcopy(SANDBOX_CONTACTS)  # the emulator's people: mentions work
    if pagerduty is not None:
        svc["pagerduty"] = pagerduty
    data["services"].update(platform_services(svc, ecs=ecs, fly=fly, load_balancer=load_balancer))
    # Generated post-mortems go under the sandbox's data dir, never into a checkout.
    data["aftercare"] = {"postmortem_dir": postmortem_dir or str(data_dir() / "post-mortems")}
    data["executor"] = {"lease_seconds": 10, "heartbeat_seconds": 2, "poll_seconds": 0.5,
                        "backoff_base_seconds": 0.2}
    # `python -m sandbox auto`: a P0 the automation may approve itself, so the whole cron
    # path shows; `--severity P1` shows a request left to people. Its channel is set at run
    # time (the emulator's id of the incident channel).
    data["automation"] = {"severity": "P0", "self_approve": ["P0"], "settle_seconds": 3}
    return data


SANDBOX_STAKEHOLDER_EMAIL = "stakeholders@sandbox.example"

# The runbook's emergency contacts, as the Slack emulator's seeded users (ids U0<NAME>) and
# groups; ``security-team`` is a handle the emulator does not know unless a test adds it.
SANDBOX_CONTACTS: dict[str, Any] = {
    "incident_commander": {"name": "Carol Chen", "slack": "U0CAROL",
                           "phone": "+1 415 555 0100", "email": "carol@example.com"},
    "technical_lead": {"name": "Bob Brandt", "slack": "U0BOB", "email": "bob@example.com"},
    "devops": {"name": "SRE approvers", "slack": f"@{USERGROUP}"},
    "dba": {"name": "Dave Diaz", "slack": "U0DAVE", "phone": "+1 415 555 0102",
            "email": "dave@example.com"},
    "security": {"name": "Security team", "slack": "@security-team",
                 "email": "security@example.com"},
}


ECS_SERVICE = "hotel-voice-bot-ecs"
FLY_SERVICE = "hotel-voice-bot-fly"


def platform_services(svc: dict[str, Any], *, ecs: dict[str, Any] | None,
                      fly: dict[str, Any] | None,
                      load_balancer: dict[str, Any] | None = None) -> dict[str, Any]:
    """``hotel-voice-bot-ecs`` / ``-fly``: copies of the demo entry ``svc`` on one platform.

    The demo's health and smoke checks, its Prometheus query and the release watcher follow
    the Kubernetes Deployment's image, so the copies leave them out: verifying an ECS or Fly
    rollback against the Kubernetes demo would pass or fail for a reason unrelated to the
    platform. Their verification is the platform's own resource usage (CloudWatch, Fly's
    Prometheus); their wait is the platform's (ECS deployment, Fly machine checks)."""
    services: dict[str, Any] = {}
    for name, key, block in ((ECS_SERVICE, "ecs", ecs), (FLY_SERVICE, "fly", fly)):
        if block is None:
            continue
        copy_ = copy.deepcopy(svc)
        for dropped in ("kubernetes", "fake", "health", "functional_checks", "prometheus",
                        "watcher", "load_balancer"):
            copy_.pop(dropped, None)
        copy_["description"] = f"{svc.get('description', 'Hotel voice bot')} ({key} sandbox)"
        copy_[key] = block
        copy_["default_platform"] = key
        if key == "ecs" and load_balancer is not None:
            copy_["load_balancer"] = load_balancer
        services[name] = copy_
    return services


def parse_sandbox_config(data: Any, *, source: str = "<sandbox>") -> RollbackConfig:
    """``parse_config`` with the sandbox's registry (a ``fake:`` block is valid)."""
    return parse_config(data, source=source, platforms=PLATFORMS)


def sandbox_config(**kwargs: Any) -> RollbackConfig:
    return parse_sandbox_config(sandbox_config_dict(**kwargs))
