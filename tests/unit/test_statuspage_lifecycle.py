"""The status page lifecycle's pure parts: ``statuspage.open_at`` validated with its key path
(check-config exits 2), and which audited step becomes which incident update."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.aftercare.status_lifecycle import opens_incident, plan
from bot.domain.config import parse_config
from bot.domain.errors import ConfigError
from bot.domain.models import AuditEvent
from platforms.registry import PRODUCTION

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "rollback.example.yml"
PAGE = {"page_id": "p1", "api_key_env": "STATUSPAGE_API_KEY", "component_id": "c1"}


def _with_page(**extra: Any) -> dict[str, Any]:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["services"]["hotel-voice-bot"]["stakeholders"]["statuspage"] = {**PAGE, **extra}
    return data


def test_open_at_defaults_to_p0_and_p1() -> None:
    svc = parse_config(_with_page(), platforms=PRODUCTION).services["hotel-voice-bot"]
    assert [opens_incident(svc, s) for s in ("P0", "P1", "P2", "P3")] == [
        True, True, False, False]
    svc = parse_config(_with_page(open_at=["P2"]),
                       platforms=PRODUCTION).services["hotel-voice-bot"]
    assert [opens_incident(svc, s) for s in ("P0", "P2")] == [False, True]


@pytest.mark.parametrize("extra,expected", [
    ({"open_at": ["P5"]}, "services.hotel-voice-bot.stakeholders.statuspage.open_at.0: "),
    ({"open_at": ["P1", "P1"]}, "services.hotel-voice-bot.stakeholders.statuspage.open_at: "
                                "Value error, a severity is listed twice"),
    ({"open_on": ["P1"]}, "services.hotel-voice-bot.stakeholders.statuspage.open_on: "),
])
def test_open_at_errors_carry_the_key_path(extra: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_with_page(**extra), platforms=PRODUCTION)
    assert expected in str(err.value)


def test_check_config_names_a_bad_open_at(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump(_with_page(open_at=["P9"])))
    out = subprocess.run([sys.executable, "-m", "bot.runtime.cli", "check-config", str(bad)],
                         capture_output=True, text=True, cwd=ROOT, env={**os.environ},
                         timeout=60)
    assert out.returncode == 2 and "stakeholders.statuspage.open_at.0" in out.stderr


def _events(*names: str, **details: dict[str, Any]) -> list[AuditEvent]:
    at = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
    return [AuditEvent(i, 1, at, "bot", n, None, None, details.get(n, {}))
            for i, n in enumerate(names, start=1)]


def _rb(severity: str, *, posted: bool = True) -> Any:
    class Rb:  # the three fields the plan reads, not a mock of our code
        service = "hotel-voice-bot"
    rb = Rb()
    rb.severity = severity  # type: ignore[attr-defined]
    rb.message_ts = "1.2" if posted else None  # type: ignore[attr-defined]
    return rb


def _svc() -> Any:
    return parse_config(_with_page(), platforms=PRODUCTION).services["hotel-voice-bot"]


def test_the_happy_path_is_four_updates_and_the_component_follows() -> None:
    steps = plan(_events("requested", "checklist", "approve", "start", "steps_done",
                         "verified", "stable", stable={"monitor": 1}), _rb("P0"), _svc())
    assert [(i, u.status, u.component) for i, u in steps] == [
        (1, "investigating", "major_outage"), (3, "identified", "major_outage"),
        (6, "monitoring", "degraded_performance"), (7, "resolved", "operational")]
    assert "has run normally for 2 h since the rollback" in steps[-1][1].body


def test_a_request_not_carried_out_keeps_the_incident_open() -> None:
    for end, how in (("reject", "declined"), ("expire", "not approved in time")):
        steps = plan(_events("requested", end, reject={"reason": "hotfix instead"}),
                     _rb("P1"), _svc())
        assert [(u.status, u.component) for _, u in steps] == [
            ("investigating", "partial_outage"), ("investigating", None)]
        assert f"not carried out ({how})" in steps[-1][1].body
        assert "hotfix instead" not in steps[-1][1].body  # the team's reasons stay inside
    steps = plan(_events("requested", "approve", "cancel"), _rb("P1"), _svc())
    assert [u.status for _, u in steps] == ["investigating", "identified", "identified"]


def test_a_failed_rollback_stays_identified_with_what_failed() -> None:
    steps = plan(_events("requested", "approve", "start", "step_failed",
                         step_failed={"step": "app_rollback", "error": "image pull failed"}),
                 _rb("P1"), _svc())
    assert [u.status for _, u in steps] == ["investigating", "identified", "identified"]
    assert "did not complete (image pull failed)" in steps[-1][1].body


def test_a_request_nobody_saw_declares_nothing() -> None:
    """The request message was refused by Slack and the bot cancelled the request: the page
    never hears of it (the cancel alone cannot open an incident)."""
    steps = plan(_events("requested", "cancel"), _rb("P0", posted=False), _svc())
    assert [(u.status, u.opens) for _, u in steps] == [("investigating", False)]
