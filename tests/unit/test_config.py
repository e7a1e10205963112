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
    assert cfg.policy.severities["P1"].window_minutes == 15
    assert cfg.policy.severities["P0"].allow_self_approval is True


def test_no_secret_values_in_the_file() -> None:
    text = EXAMPLE.read_text()
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
])
def test_errors_carry_key_paths(mutate, expected: str) -> None:
    data = _example()
    mutate(data)
    with pytest.raises(ConfigError) as err:
        parse_config(data, platforms=PRODUCTION)
    assert any(p.startswith(expected) for p in err.value.problems), err.value.problems


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
