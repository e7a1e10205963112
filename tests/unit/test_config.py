"""rollback.yml validation: the example is valid; broken files exit 2 naming the key path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bot.domain.config import load_config, parse_config
from bot.domain.errors import ConfigError
from platforms.registry import PRODUCTION

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "rollback.example.yml"


def _example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def test_example_reproduces_the_runbook() -> None:
    cfg = load_config(EXAMPLE, platforms=PRODUCTION)
    svc = cfg.services["hotel-voice-bot"]
    assert svc.platforms() == ["kubernetes", "ecs", "fly"]
    assert svc.health and svc.health.url.endswith("/api/health")
    assert svc.prometheus and "5.." in svc.prometheus.error_rate_query
    assert svc.database and svc.database.verify_queries == [
        "SELECT COUNT(*) FROM public.bot_messages"]
    names = {p.name for p in svc.external_checks} | {p.name for p in svc.functional_checks}
    assert {"OpenAI API", "WAHA (WhatsApp HTTP API)", "WhatsApp webhook test message",
            "FAQ list", "Conversation creation"} <= names
    assert [s.value for s in cfg.policy.severities] == ["P0", "P1", "P2", "P3"]
    assert {s.value: cfg.policy.severities[s].deadline_minutes for s in cfg.policy.severities} \
        == {"P0": 0, "P1": 15, "P2": 60, "P3": 240}  # immediate, 15 min, 1 h, 4 h
    assert cfg.policy.severities["P0"].allow_self_approval is True


def test_no_secret_values_in_the_file() -> None:
    # ``password_env`` names the variable that holds the SMTP password: a name, no value.
    text = EXAMPLE.read_text().replace("password_env", "")
    for marker in ("xoxb-", "sk-", "password", "postgres://", "postgresql://"):
        assert marker not in text


@pytest.mark.parametrize("mutate,expected", [
    (lambda d: d["services"]["hotel-voice-bot"]["kubernetes"].pop("namespace"),
     "services.hotel-voice-bot.kubernetes.namespace: field required"),
    (lambda d: d["services"]["hotel-voice-bot"]["health"].update(samples="many"),
     "services.hotel-voice-bot.health.samples:"),
    (lambda d: d["policy"]["severities"]["P1"].update(mode="sometimes"),
     "policy.severities.P1.mode:"),
    (lambda d: d["services"]["hotel-voice-bot"].update(colour="red"),
     "services.hotel-voice-bot.colour: unknown key"),
    (lambda d: d.update(services={}), "services: Value error, at least one service"),
    (lambda d: d["policy"]["severities"]["P1"].update(window_minutes=20),
     "policy.severities.P1.decision_minutes: Value error, 15 contradicts window_minutes: 20"),
    (lambda d: d["services"]["hotel-voice-bot"].update(policy={"severities": {"P2": {
        "mode": "evaluate", "window_minutes": 60, "decision_minutes": 90}}}),
     "services.hotel-voice-bot.policy.severities.P2.decision_minutes: Value error, 90 "
     "contradicts window_minutes: 60 (window_minutes is the older name of decision_minutes"),
    (lambda d: d["policy"]["severities"]["P3"].update(decision_minutes=-1),
     "policy.severities.P3.decision_minutes: Input should be greater than or equal to 0"),
])
def test_errors_carry_key_paths(mutate, expected: str) -> None:
    data = _example()
    mutate(data)
    with pytest.raises(ConfigError) as err:
        parse_config(data, platforms=PRODUCTION)
    assert any(p.startswith(expected) for p in err.value.problems), err.value.problems


def test_decision_deadlines_keep_the_older_key_and_default_by_mode() -> None:
    """``window_minutes`` (the older name) still sets the deadline; a severity without
    either gets its mode's runbook response time; both agreeing is fine."""
    data = _example()
    severities = data["policy"]["severities"]
    severities["P1"] = {"mode": "hotfix_window", "window_minutes": 20}
    severities["P2"] = {"mode": "evaluate", "window_minutes": 45, "decision_minutes": 45}
    severities["P3"] = {"mode": "next_deployment"}
    severities.pop("P0")
    policy = parse_config(data, platforms=PRODUCTION).policy
    assert [policy.severities[s].deadline_minutes for s in ("P0", "P1", "P2", "P3")] == \
        [0, 20, 45, 240]


def test_no_severity_expires_before_its_deadline() -> None:
    from datetime import UTC, datetime, timedelta

    from bot.domain.config import Policy, Severity

    at = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
    policy = parse_config(_example(), platforms=PRODUCTION).policy
    for severity in Severity:
        due = policy.decision_due(severity, at)
        expires = policy.expires_at(at, due)
        assert expires >= due + timedelta(minutes=policy.expiry_grace_minutes), severity
        assert expires >= at + timedelta(minutes=policy.approval_expiry_minutes), severity
    assert policy.expires_at(at, policy.decision_due(Severity.P3, at)) == at + timedelta(
        hours=4, minutes=15)
    assert Policy().expires_at(at, policy.decision_due(Severity.P1, at)) == at + timedelta(
        minutes=30)  # P1: 15 + 15 grace, the same 30 minutes as before


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot.runtime.cli", *args], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ}, timeout=60)


def test_check_config_cli(tmp_path: Path) -> None:
    ok = _cli("check-config", str(EXAMPLE))
    assert ok.returncode == 0, ok.stderr
    broken = tmp_path / "broken.yml"
    broken.write_text(EXAMPLE.read_text().replace("deployment: hotel-voice-bot", "deploy: x"))
    bad = _cli("check-config", str(broken))
    assert bad.returncode == 2
    assert "services.hotel-voice-bot.kubernetes.deployment: field required" in bad.stderr
    missing = _cli("check-config", str(tmp_path / "nope.yml"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_release_watcher_config_errors_exit_2_with_the_key_path(tmp_path: Path) -> None:
    import yaml

    data = yaml.safe_load(EXAMPLE.read_text())
    svc = data["services"]["hotel-voice-bot"]
    svc["watcher"] = {"enabled": True, "duration_seconds": 600, "interval_seconds": 60}
    no_channel = tmp_path / "no-channel.yml"
    no_channel.write_text(yaml.safe_dump(data))
    bad = _cli("check-config", str(no_channel))
    assert bad.returncode == 2
    assert "services.hotel-voice-bot.watcher" in bad.stderr and "channel" in bad.stderr
    svc["watcher"] = {"enabled": True, "channel": "#inc-hvb", "error_rate_threshold": 5}
    percent = tmp_path / "percent.yml"
    percent.write_text(yaml.safe_dump(data))
    bad = _cli("check-config", str(percent))
    assert bad.returncode == 2
    assert "services.hotel-voice-bot.watcher.error_rate_threshold" in bad.stderr
    svc["watcher"] = {"enabled": True, "channel": "#inc-hvb"}
    del svc["prometheus"]
    no_prom = tmp_path / "no-prom.yml"
    no_prom.write_text(yaml.safe_dump(data))
    bad = _cli("check-config", str(no_prom))
    assert bad.returncode == 2
    assert "services.hotel-voice-bot" in bad.stderr and "watcher.enabled" in bad.stderr


SMTP = {"host": "smtp.example.com", "port": 587, "security": "starttls",
        "username_env": "SMTP_USERNAME", "password_env": "SMTP_PASSWORD",
        "from_address": "Rollback Bot <rollback-bot@example.com>", "timeout_seconds": 10}


def _with_email(smtp: dict | None, email: list[str]) -> dict:
    data = _example()
    if smtp is not None:
        data["smtp"] = smtp
    data["services"]["hotel-voice-bot"]["stakeholders"]["email"] = email
    return data


def test_stakeholder_email_and_its_relay_parse() -> None:
    cfg = parse_config(_with_email(SMTP, ["ops@example.com", "cto@hotel.example"]),
                       platforms=PRODUCTION)
    assert cfg.smtp is not None and cfg.smtp.sender() == "rollback-bot@example.com"
    assert cfg.services["hotel-voice-bot"].stakeholders.email == [
        "ops@example.com", "cto@hotel.example"]


@pytest.mark.parametrize("smtp,email,expected", [
    (None, ["ops@example.com"], "services: Value error, hotel-voice-bot.stakeholders.email "
                                "needs the top-level smtp block"),
    (SMTP, ["ops at example.com"], "services.hotel-voice-bot.stakeholders.email: Value error, "
                                   "'ops at example.com' is not an e-mail address"),
    (SMTP, ["ops@example.com\r\nBcc: x@evil.example"], "services.hotel-voice-bot.stakeholders"
                                                       ".email: Value error"),
    (SMTP, ["ops@example.com", "OPS@example.com"], "services.hotel-voice-bot.stakeholders"
                                                   ".email: Value error, 'OPS@example.com' is "
                                                   "listed twice"),
    ({**SMTP, "port": 70000}, [], "smtp.port: Input should be less than or equal to 65535"),
    ({**SMTP, "port": 0}, [], "smtp.port: Input should be greater than or equal to 1"),
    ({**SMTP, "security": "tls"}, [], "smtp.security: Input should be 'starttls', 'ssl' or"),
    ({**SMTP, "password_env": "smtp-password"}, [], "smtp.password_env: Value error, "
                                                    "'smtp-password' is not an environment"),
    ({**SMTP, "username_env": None}, [], "smtp: Value error, username_env and password_env "
                                         "go together"),
    ({**SMTP, "security": "none"}, [], "smtp: Value error, security: none with credentials"),
    ({**SMTP, "from_address": "rollback bot"}, [], "smtp.from_address: Value error"),
    ({**SMTP, "host": "smtp://smtp.example.com"}, [], "smtp.host: Value error"),
    ({**SMTP, "password": "hunter2"}, [], "smtp.password: unknown key"),
    ({k: v for k, v in SMTP.items() if k != "host"}, [], "smtp.host: field required"),
])
def test_email_config_errors_carry_key_paths(smtp: dict | None, email: list[str],
                                             expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_with_email(smtp, email), platforms=PRODUCTION)
    assert any(p.startswith(expected) for p in err.value.problems), err.value.problems


def test_check_config_names_a_bad_smtp_block(tmp_path: Path) -> None:
    bad = tmp_path / "bad-smtp.yml"
    bad.write_text(yaml.safe_dump(_with_email({**SMTP, "port": 0}, ["ops@example.com"])))
    out = _cli("check-config", str(bad))
    assert out.returncode == 2 and "smtp.port:" in out.stderr


def test_the_examples_commented_email_settings_are_valid_when_uncommented() -> None:
    lines = EXAMPLE.read_text().splitlines()
    start = lines.index("# smtp:")
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("#"))
    for i in range(start, end):
        lines[i] = lines[i][2:]  # "# smtp:" -> "smtp:", "#   host" -> "  host"
    email = next(i for i, line in enumerate(lines) if line.strip().startswith("# email:"))
    lines[email] = lines[email].replace("# email:", "email:", 1)
    cfg = parse_config(yaml.safe_load("\n".join(lines)), platforms=PRODUCTION)
    assert cfg.smtp is not None and cfg.smtp.password_env == "SMTP_PASSWORD"
    assert cfg.services["hotel-voice-bot"].stakeholders.email == ["ops@example.com"]


def test_forward_fix_cadence_is_checked_with_the_key_path(tmp_path: Path) -> None:
    data = _example()
    assert parse_config(data, platforms=PRODUCTION).aftercare.forward_fix_repeat_hours == 24
    data.setdefault("aftercare", {}).update(forward_fix_repeat_hours=0.5,
                                            forward_fix_stop_after_days=0)
    path = tmp_path / "nagging.yml"
    path.write_text(yaml.safe_dump(data))
    bad = _cli("check-config", str(path))
    assert bad.returncode == 2
    assert "aftercare.forward_fix_repeat_hours" in bad.stderr
    assert "aftercare.forward_fix_stop_after_days" in bad.stderr
    data["aftercare"] = {"forward_fix_reminder_hours": 24}  # a misspelt key is an error too
    path.write_text(yaml.safe_dump(data))
    bad = _cli("check-config", str(path))
    assert bad.returncode == 2 and "aftercare.forward_fix_reminder_hours" in bad.stderr
