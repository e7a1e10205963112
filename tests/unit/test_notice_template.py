"""The stakeholder notice as a template (``stakeholders.notice_template``): the runbook's
wording by default, a team's own text when set, every value escaped for Slack, and every
mistake caught by ``parse_config`` (what ``check-config`` runs) with its key path."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.domain import notice_template
from bot.domain.config import parse_config
from bot.domain.errors import ConfigError
from handlers.email_text import plain
from handlers.wording import completion_text
from platforms.registry import PRODUCTION
from tests.unit.test_wording import COMPLETION

EXAMPLE = Path(__file__).resolve().parents[2] / "rollback.example.yml"
SERVICE = "hotel-voice-bot"
KEY = f"services.{SERVICE}.stakeholders.notice_template"


def _config_with(template: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    data["services"][SERVICE].setdefault("stakeholders", {})["notice_template"] = template
    return data


def _problems(template: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(_config_with(template), platforms=PRODUCTION)
    return list(info.value.problems)


def test_the_default_is_the_runbooks_template_with_every_field() -> None:
    text = completion_text(COMPLETION)
    for line in ("*Rollback details*", "• Version rolled back to: rev 4 (from rev 5)",
                 "• Rollback completed at: 2026-11-29 03:04:05 UTC",
                 "• Service restored at: 2026-11-29 03:06:05 UTC",
                 "• Total downtime: 11 min 30 s", "*Current status:* Service restored",
                 "*Next steps:*", "• Root cause analysis and fix development"):
        assert line in text, (line, text)
    assert "\n\n" not in text and not text.endswith("\n")


def test_a_teams_template_is_used_and_its_values_are_escaped() -> None:
    template = ("{{ service }} is back on {{ version }} ({{ rollback }}); down for "
                "{{ total_downtime }}.{% for s in next_steps %} Then: {{ s }}{% endfor %}")
    hostile = dataclasses.replace(COMPLETION, template=notice_template.check(template),
                                  service=SERVICE, ref="RB-7", target="<!channel> rev 4")
    text = completion_text(hostile)
    assert text.startswith(f"{SERVICE} is back on &lt;!channel&gt; rev 4 (RB-7); down for "
                           "11 min 30 s. Then: Root cause analysis and fix development")
    assert "<!channel>" not in text
    assert plain(text).startswith(f"{SERVICE} is back on <!channel> rev 4")  # e-mail: no markup


def test_the_catalogs_template_loads_and_reaches_the_completion() -> None:
    config = parse_config(_config_with("Restored {{ version }} at {{ restored_at }}"),
                          platforms=PRODUCTION)
    assert config.services[SERVICE].stakeholders.notice_template == \
        "Restored {{ version }} at {{ restored_at }}"


@pytest.mark.parametrize("template, expected", [
    ("{{ versoin }} restored", "unknown field versoin; the fields are service, rollback"),
    ("{{ version }} {{ ticket }} {{ owner }}", "unknown fields owner, ticket"),
    ("{% if version %}never closed", "template syntax error on line 1"),
    ("{{ version.__class__.__mro__ }}", "the template fails when filled in: SecurityError"),
    ("{{ version | int + next_steps }}", "the template fails when filled in: TypeError"),
    ("x" * (notice_template.MAX_TEMPLATE_CHARS + 1), "characters; at most 4000"),
])
def test_a_broken_template_is_refused_with_its_key_path(template: str, expected: str) -> None:
    problems = _problems(template)
    assert len(problems) == 1, problems
    assert problems[0].startswith(KEY) and expected in problems[0], problems


def test_every_field_is_documented() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    for field in notice_template.NOTICE_FIELDS:
        assert f"`{field}`" in docs, field


STATUS_KEY = f"services.{SERVICE}.stakeholders.statuspage.templates"


def _status_config(templates: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    data["services"][SERVICE].setdefault("stakeholders", {})["statuspage"] = {
        "page_id": "p", "api_key_env": "STATUSPAGE_API_KEY", "templates": templates}
    return data


def test_status_page_defaults_are_the_texts_and_a_kind_can_be_replaced() -> None:
    assert notice_template.render_status("requested", {}, {"service": "Hotel Voice Bot"}) == \
        "We are investigating a problem with Hotel Voice Bot after a recent release."
    assert notice_template.render_status("stable", {}, {"service": "X", "monitored_for": ""}) \
        == "The previous version of X is back and verified. This incident is resolved."
    own = {"approved": "{{ service }}: rolling back now. <b>not markup</b>"}
    assert notice_template.render_status("approved", own, {"service": "HVB"}) == \
        "HVB: rolling back now. <b>not markup</b>"  # plain text, printed as written
    config = parse_config(_status_config(own), platforms=PRODUCTION)
    statuspage = config.services[SERVICE].stakeholders.statuspage
    assert statuspage is not None and statuspage.templates == own


@pytest.mark.parametrize("templates, expected", [
    ({"aproved": "x"}, "unknown update kind aproved; the kinds are requested, approved"),
    ({"approved": "{{ version }}"}, "approved: unknown field version; the fields are service"),
    ({"stable": "{% for %}"}, "stable: template syntax error on line 1"),
])
def test_a_broken_status_template_is_refused_with_its_key_path(templates: dict[str, str],
                                                               expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_status_config(templates), platforms=PRODUCTION)
    (problem,) = info.value.problems
    assert problem.startswith(STATUS_KEY) and expected in problem, problem
