"""Emergency contacts and PagerDuty in ``rollback.yml``: validated with key paths by
``parse_config`` (what ``check-config`` runs), inherited from the top-level block role by
role, and the escalation rules' pure parts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.domain.config import ContactRole, parse_config
from bot.domain.contacts import Rule, contact_facts, mentions_security, roles_for
from bot.domain.errors import ConfigError
from platforms.registry import PRODUCTION

EXAMPLE = Path(__file__).resolve().parents[2] / "rollback.example.yml"
DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "rollback.yml"


def _example() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    return data


def _errors(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, platforms=PRODUCTION)
    return list(info.value.problems)


def test_the_example_and_the_deployed_catalog_name_every_runbook_role() -> None:
    config = parse_config(_example(), platforms=PRODUCTION)
    contacts = config.contacts_for("hotel-voice-bot")
    assert [r for r, _ in contacts.configured()] == list(ContactRole)
    assert contacts.dba is not None and contacts.dba.phone == "+1 415 555 0102"
    deployed = parse_config(yaml.safe_load(DEPLOY.read_text()), platforms=PRODUCTION)
    assert deployed.contacts_for("hotel-voice-bot").incident_commander is not None


def test_unknown_roles_keys_and_bad_values_are_errors_with_their_key_path() -> None:
    data = _example()
    data["services"]["hotel-voice-bot"]["contacts"] = {
        "cto": {"slack": "U0CTO1"},
        "dba": {"slack": "dba-team", "phone": "555-0102", "email": "dba at example", "pager": 1},
        "security": {"name": "nobody reachable"},
    }
    data["services"]["hotel-voice-bot"]["pagerduty"] = {"routing_key_env": "PD", "severity":
                                                        "fatal", "key": "inline"}
    errors = "\n".join(_errors(data))
    base = "services.hotel-voice-bot"
    assert f"{base}.contacts.cto: unknown key" in errors
    assert f"{base}.contacts.dba.pager: unknown key" in errors
    assert f"{base}.contacts.dba.slack: Value error, 'dba-team' is neither" in errors
    assert f"{base}.contacts.dba.phone: Value error, '555-0102' is not an international" in errors
    assert f"{base}.contacts.dba.email: Value error, 'dba at example' is not an e-mail" in errors
    assert f"{base}.contacts.security: Value error, a contact needs at least one of" in errors
    assert f"{base}.pagerduty.severity:" in errors
    assert f"{base}.pagerduty.key: unknown key" in errors


@pytest.mark.parametrize("phone", ["+1 415 555 0100", "+44 (20) 7946-0958", "+4915112345678"])
def test_international_numbers_are_accepted(phone: str) -> None:
    data = _example()
    data["contacts"] = {"devops": {"phone": phone}}
    assert parse_config(data, platforms=PRODUCTION).contacts.devops is not None


@pytest.mark.parametrize("phone", ["4155550100", "+1 555", "+1 415 555 0100 0100 0100 0"])
def test_numbers_without_country_code_or_of_the_wrong_length_are_refused(phone: str) -> None:
    data = _example()
    data["contacts"] = {"devops": {"phone": phone}}
    assert any(e.startswith("contacts.devops.phone:") for e in _errors(data))


def test_a_service_inherits_the_top_level_contacts_role_by_role() -> None:
    data = _example()
    data["contacts"] = {"security": {"slack": "@company-security"},
                        "dba": {"slack": "@global-dba"}}
    config = parse_config(data, platforms=PRODUCTION)
    contacts = config.contacts_for("hotel-voice-bot")
    assert contacts.dba is not None and contacts.dba.slack == "@dba-oncall"  # its own wins
    del data["services"]["hotel-voice-bot"]["contacts"]["security"]
    contacts = parse_config(data, platforms=PRODUCTION).contacts_for("hotel-voice-bot")
    assert contacts.security is not None and contacts.security.slack == "@company-security"
    facts = contact_facts(contacts)
    assert facts[0]["title"] == "Incident commander" and facts[-1]["role"] == "security"


def test_the_pagerduty_routing_key_variable_is_treated_as_a_secret() -> None:
    from bot.domain.config import secret_env_names

    data = _example()
    data["services"]["hotel-voice-bot"]["pagerduty"] = {"routing_key_env": "PD_KEY"}
    data["services"]["hotel-voice-bot"]["contacts"]["dba"]["pagerduty_routing_key_env"] = "DBA"
    assert {"PD_KEY", "DBA"} <= secret_env_names(data)


def test_the_rules_call_the_runbook_roles() -> None:
    R = ContactRole
    assert roles_for(Rule.DECISION_DUE) == (R.INCIDENT_COMMANDER, R.TECHNICAL_LEAD)
    assert roles_for(Rule.NEEDS_ATTENTION) == (R.INCIDENT_COMMANDER,)
    assert roles_for(Rule.NEEDS_ATTENTION, database_step=True) == (R.DBA, R.INCIDENT_COMMANDER)
    assert roles_for(Rule.DESTRUCTIVE_FAILED, database_step=True)[0] == R.DBA
    assert roles_for(Rule.SECURITY, database_step=True) == (R.SECURITY,)


@pytest.mark.parametrize(("reason", "calls"), [
    ("Security incident: leaked token", True), ("possible SECURITY issue", True),
    ("security-related config", True), ("insecurity in caching", False),
    ("securityd crashed", False), ("5xx after v1.3.0", False), ("", False),
])
def test_a_reason_mentions_security_as_a_word(reason: str, calls: bool) -> None:
    assert mentions_security(reason) is calls
