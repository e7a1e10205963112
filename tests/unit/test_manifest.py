"""manifest.yml: valid against Slack's published schema and in step with handlers/ids.py.

The schema is a vendor spec found by tests/support/specs.py (``SPECS_DIR`` or ``shared/specs``
beside the repository). Without it the test skips locally and fails under ``CI``.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from jsonschema.protocols import Validator

from handlers import ids
from tests.support.specs import load_spec

REPO_ROOT = Path(__file__).resolve().parents[2]
MANIFEST_PATH = REPO_ROOT / "manifest.yml"

# Every bot scope the app requests, with the Web API methods (or feature) that need it.
# The bot also calls auth.test, views.open, views.update, views.push and posts to
# response_url: none of those needs a scope. Adding a scope here without a method that
# requires it defeats the point of this table.
EXPECTED_BOT_SCOPES: dict[str, tuple[str, ...]] = {
    "commands": ("slash command " + ids.COMMAND,),
    "chat:write": ("chat.postMessage", "chat.update", "chat.postEphemeral"),
    "pins:write": ("pins.add",),
    "channels:read": ("conversations.info (public channels)",),
    "groups:read": ("conversations.info (private channels)",),
    "users:read": ("users.info",),
    "usergroups:read": ("usergroups.users.list",),
    "files:write": ("files.getUploadURLExternal", "files.completeUploadExternal"),
    "channels:history": ("conversations.replies/history (outbox reconciliation, public)",),
    "groups:history": ("conversations.replies/history (outbox reconciliation, private)",),
}


def load_manifest() -> dict[str, Any]:
    data = yaml.safe_load(MANIFEST_PATH.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "manifest.yml must be a mapping"
    return data


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return load_manifest()


@pytest.fixture(scope="module")
def validator(manifest: dict[str, Any]) -> Validator:
    """A validator for the schema version the manifest targets, with the schema's own draft."""
    major = manifest.get("_metadata", {}).get("major_version", 1)
    schema = load_spec(f"slack-manifest.schema.{major}.0.0.json")
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def errors(validator: Validator, document: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def request_urls(manifest: dict[str, Any]) -> list[str]:
    """Every URL Slack will POST to: slash commands, interactivity, events, options."""
    urls = [c["url"] for c in manifest["features"]["slash_commands"] if "url" in c]
    settings = manifest.get("settings", {})
    for section, key in (
        ("interactivity", "request_url"),
        ("interactivity", "message_menu_options_url"),
        ("event_subscriptions", "request_url"),
    ):
        if key in settings.get(section, {}):
            urls.append(settings[section][key])
    return urls


def test_manifest_targets_a_published_schema_version(manifest: dict[str, Any]) -> None:
    assert manifest["_metadata"]["major_version"] in (1, 2)


def test_manifest_is_valid_against_slack_schema(
    validator: Validator, manifest: dict[str, Any]
) -> None:
    assert errors(validator, manifest) == []


def test_background_color_matches_the_schema_regex(
    validator: Validator, manifest: dict[str, Any]
) -> None:
    # Slack spells this constraint "regex", which JSON Schema ignores, so check it here.
    rule = validator.schema["definitions"]["app-manifests.v1.display_information.schema"]
    pattern = rule["properties"]["background_color"]["regex"]
    assert re.fullmatch(pattern, manifest["display_information"]["background_color"])


def test_app_and_bot_are_named_rollback_bot(manifest: dict[str, Any]) -> None:
    assert manifest["display_information"]["name"] == "rollback-bot"
    bot_user = manifest["features"]["bot_user"]
    assert bot_user == {"display_name": "rollback-bot", "always_online": True}


def test_single_slash_command_matches_handlers_ids(manifest: dict[str, Any]) -> None:
    commands = manifest["features"]["slash_commands"]
    assert [c["command"] for c in commands] == [ids.COMMAND]
    (command,) = commands
    assert command["should_escape"] is False  # the parser reads raw text, not <@U…> escapes
    for subcommand in ("help", "services", "status", "history", "cancel", "--severity"):
        assert subcommand in command["usage_hint"]


def test_every_request_url_hits_the_events_path(manifest: dict[str, Any]) -> None:
    urls = request_urls(manifest)
    assert len(urls) >= 2, "the slash command and interactivity both need a request URL"
    parts = [urlsplit(u) for u in urls]
    assert {p.path for p in parts} == {ids.EVENTS_PATH}
    assert {p.scheme for p in parts} == {"https"}
    assert len({p.netloc for p in parts}) == 1, "one deployment serves every request URL"


def test_interactivity_enabled_for_buttons_and_modals(manifest: dict[str, Any]) -> None:
    assert manifest["settings"]["interactivity"]["is_enabled"] is True


def test_bot_scopes_are_exactly_the_minimal_set(manifest: dict[str, Any]) -> None:
    scopes = manifest["oauth_config"]["scopes"]
    bot = scopes["bot"]
    assert len(bot) == len(set(bot)), "duplicate scope"
    assert set(bot) == set(EXPECTED_BOT_SCOPES)
    assert set(scopes) == {"bot"}, "no user or optional scopes"


def test_settings_http_mode_defaults(manifest: dict[str, Any]) -> None:
    settings = manifest["settings"]
    assert settings["socket_mode_enabled"] is False
    assert settings["org_deploy_enabled"] is False
    assert settings["token_rotation_enabled"] is False


def _drop_app_name(m: dict[str, Any]) -> None:
    del m["display_information"]["name"]


def _scopes_as_string(m: dict[str, Any]) -> None:
    m["oauth_config"]["scopes"]["bot"] = "chat:write"


def _command_without_slash(m: dict[str, Any]) -> None:
    m["features"]["slash_commands"][0]["command"] = "rollback"


def _interactivity_without_is_enabled(m: dict[str, Any]) -> None:
    del m["settings"]["interactivity"]["is_enabled"]


def _unknown_setting(m: dict[str, Any]) -> None:
    m["settings"]["socket_mode"] = True  # misspelt key


def _socket_mode_as_string(m: dict[str, Any]) -> None:
    m["settings"]["socket_mode_enabled"] = "false"


@pytest.mark.parametrize(
    "mutate",
    [
        _drop_app_name,
        _scopes_as_string,
        _command_without_slash,
        _interactivity_without_is_enabled,
        _unknown_setting,
        _socket_mode_as_string,
    ],
)
def test_schema_rejects_broken_manifests(
    validator: Validator, manifest: dict[str, Any], mutate: Any
) -> None:
    broken = copy.deepcopy(manifest)
    mutate(broken)
    assert errors(validator, broken), f"{mutate.__name__} should fail schema validation"
