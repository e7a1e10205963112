"""``services.<name>.postmortem.github``: valid settings parse, bad ones name the key path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.domain.config import parse_config
from bot.domain.errors import ConfigError
from platforms.registry import PRODUCTION

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "rollback.example.yml"
GOOD = {"repository": "acme/hotel-voice-bot", "token_env": "GITHUB_POSTMORTEM_TOKEN"}
WHERE = "services.hotel-voice-bot.postmortem"


def _with(block: Any) -> dict[str, Any]:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["services"]["hotel-voice-bot"]["postmortem"] = block
    return data


def test_the_examples_commented_block_is_valid_when_uncommented() -> None:
    lines = EXAMPLE.read_text().splitlines()
    start = lines.index("    # postmortem:")
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("    #")),
               len(lines))
    for i in range(start, end):
        lines[i] = lines[i].replace("# ", "", 1)
    cfg = parse_config(yaml.safe_load("\n".join(lines)), platforms=PRODUCTION)
    github = cfg.services["hotel-voice-bot"].postmortem.github  # type: ignore[union-attr]
    assert github is not None and github.repository == "acme/hotel-voice-bot"
    assert (github.base_branch, github.token_env, github.api_url) == (
        "main", "GITHUB_POSTMORTEM_TOKEN", "https://api.github.com")


@pytest.mark.parametrize("block,expected", [
    ({"github": {**GOOD, "repository": "hotel-voice-bot"}},
     f"{WHERE}.github.repository: Value error, 'hotel-voice-bot' is not a GitHub repository"),
    ({"github": {**GOOD, "repository": "acme/../x?y"}}, f"{WHERE}.github.repository:"),
    ({"github": {**GOOD, "token_env": "ghp_abc-123"}},
     f"{WHERE}.github.token_env: Value error, 'ghp_abc-123' is not an environment variable"),
    ({"github": {**GOOD, "token": "ghp_secret"}}, f"{WHERE}.github.token: unknown key"),
    ({"github": {"repository": "acme/app"}}, f"{WHERE}.github.token_env: field required"),
    ({"github": {**GOOD, "base_branch": "../main"}}, f"{WHERE}.github.base_branch:"),
    ({"github": {**GOOD, "api_url": "api.github.com"}}, f"{WHERE}.github.api_url:"),
    ({"gitlab": {}}, f"{WHERE}.gitlab: unknown key"),
])
def test_errors_carry_key_paths(block: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_with(block), platforms=PRODUCTION)
    assert any(p.startswith(expected) for p in err.value.problems), err.value.problems


def test_check_config_names_a_bad_postmortem_block(tmp_path: Path) -> None:
    bad = tmp_path / "bad-postmortem.yml"
    bad.write_text(yaml.safe_dump(_with({"github": {**GOOD, "repository": "nope"}})))
    out = subprocess.run([sys.executable, "-m", "bot.runtime.cli", "check-config", str(bad)],
                         capture_output=True, text=True, cwd=ROOT, env={**os.environ},
                         timeout=60)
    assert out.returncode == 2 and f"{WHERE}.github.repository:" in out.stderr
