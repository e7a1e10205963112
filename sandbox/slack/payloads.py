"""Pure builders for what Slack sends to an app: commands, block_actions, view payloads.

Shapes follow Slack's published payloads; the driver fills in ids the emulator issued.
"""

from __future__ import annotations

import copy
import secrets
from typing import Any

from sandbox.slack.blockkit import iter_elements
from sandbox.slack.models import Channel, User
from sandbox.slack.state import Workspace

TEXT_INPUTS = {"plain_text_input", "email_text_input", "url_text_input", "number_input"}
SINGLE_OPTION = {"static_select", "external_select", "radio_buttons", "overflow"}
MULTI_OPTION = {"multi_static_select", "multi_external_select", "checkboxes"}
# element type -> (state key, whether the value is a list)
SELECTION_KEYS = {
    "users_select": ("selected_user", False),
    "multi_users_select": ("selected_users", True),
    "conversations_select": ("selected_conversation", False),
    "multi_conversations_select": ("selected_conversations", True),
    "channels_select": ("selected_channel", False),
    "multi_channels_select": ("selected_channels", True),
    "datepicker": ("selected_date", False),
    "timepicker": ("selected_time", False),
    "datetimepicker": ("selected_date_time", False),
}


class PayloadError(ValueError):
    """The requested interaction is impossible in the Slack client (bad option, no input...)."""


def user_ref(ws: Workspace, user: User) -> dict[str, Any]:
    return {"id": user.id, "username": user.name, "name": user.name, "team_id": ws.team_id}


def team_ref(ws: Workspace) -> dict[str, Any]:
    return {"id": ws.team_id, "domain": ws.team_domain}


def channel_name(channel: Channel) -> str:
    return "directmessage" if channel.is_im else channel.name


def slash_command(
    ws: Workspace,
    *,
    app_id: str,
    verification_token: str,
    user: User,
    channel: Channel,
    command: str,
    text: str,
    response_url: str,
    trigger_id: str,
) -> dict[str, str]:
    """The form fields of a slash command, in the order Slack sends them."""
    return {
        "token": verification_token,
        "team_id": ws.team_id,
        "team_domain": ws.team_domain,
        "channel_id": channel.id,
        "channel_name": channel_name(channel),
        "user_id": user.id,
        "user_name": user.name,
        "command": command,
        "text": text,
        "api_app_id": app_id,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id,
    }


def _find_option(element: dict[str, Any], value: str) -> dict[str, Any]:
    options = list(element.get("options", []))
    for group in element.get("option_groups", []):
        options.extend(group.get("options", []))
    for option in options:
        if option.get("value") == value:
            return copy.deepcopy(option)
    if element["type"] in ("external_select", "multi_external_select"):
        return {"text": {"type": "plain_text", "text": value}, "value": value}
    raise PayloadError(f"{element['type']} {element.get('action_id')!r} has no option {value!r}")


def element_state(ws: Workspace, element: dict[str, Any], value: Any) -> dict[str, Any]:
    """The `{type, value|selected_*}` entry for one element, as state.values carries it."""
    kind = element["type"]
    state: dict[str, Any] = {"type": kind}
    if kind in TEXT_INPUTS:
        state["value"] = None if value is None else str(value)
    elif kind in SINGLE_OPTION:
        state["selected_option"] = None if value is None else _find_option(element, str(value))
    elif kind in MULTI_OPTION:
        state["selected_options"] = [_find_option(element, str(v)) for v in value or []]
    elif kind in SELECTION_KEYS:
        key, many = SELECTION_KEYS[kind]
        resolve = _user_id if kind.endswith("users_select") else _identity
        state[key] = (
            [resolve(ws, v) for v in value or []]
            if many
            else (None if value is None else resolve(ws, value))
        )
    else:
        raise PayloadError(f"the driver cannot fill a {kind} element")
    return state


def _user_id(ws: Workspace, ref: Any) -> str:
    return ws.resolve_user(str(ref)).id


def _identity(ws: Workspace, ref: Any) -> str:
    return str(ref)


def initial_value(element: dict[str, Any]) -> Any:
    """What the client shows before the user touches an element."""
    kind = element["type"]
    if kind in TEXT_INPUTS:
        return element.get("initial_value")
    if kind in SINGLE_OPTION:
        return (element.get("initial_option") or {}).get("value")
    if kind in MULTI_OPTION:
        return [o["value"] for o in element.get("initial_options", [])] or None
    for key in ("initial_user", "initial_conversation", "initial_channel", "initial_date",
                "initial_time", "initial_date_time", "initial_users", "initial_conversations",
                "initial_channels"):  # fmt: skip
        if key in element:
            return element[key]
    return None


def action_for(
    ws: Workspace, block: dict[str, Any], element: dict[str, Any], value: Any, action_ts: str
) -> dict[str, Any]:
    """One entry of a block_actions `actions` list."""
    action: dict[str, Any] = {
        "action_id": element["action_id"],
        "block_id": block["block_id"],
        "type": element["type"],
        "action_ts": action_ts,
    }
    if element["type"] == "button":
        action["text"] = copy.deepcopy(element["text"])
        for key in ("value", "style", "url"):
            if key in element:
                action[key] = element[key]
        return action
    state = element_state(ws, element, value)
    state.pop("type")
    action.update(state)
    if "placeholder" in element:
        action["placeholder"] = copy.deepcopy(element["placeholder"])
    return action


def view_state(
    ws: Workspace, view: dict[str, Any], values: dict[str, Any]
) -> dict[str, dict[str, dict[str, Any]]]:
    """state.values for a submission; `values` is keyed by action_id or 'block_id/action_id'."""
    remaining = dict(values)
    state: dict[str, dict[str, dict[str, Any]]] = {}
    for block, element in iter_elements(view["blocks"]):
        if block.get("type") != "input":
            continue
        block_id, action_id = block["block_id"], element["action_id"]
        key = f"{block_id}/{action_id}"
        if key in remaining:
            value = remaining.pop(key)
        elif action_id in remaining:
            value = remaining.pop(action_id)
        else:
            value = initial_value(element)
        if value in (None, "", []) and not block.get("optional", False):
            label = block.get("label", {}).get("text", block_id)
            raise PayloadError(f"required input {label!r} ({key}) has no value")
        state.setdefault(block_id, {})[action_id] = element_state(ws, element, value)
    if remaining:
        raise PayloadError(f"no input element for {sorted(remaining)} in view {view['id']}")
    return state


def event_callback(ws: Workspace, *, app_id: str, bot: User, verification_token: str,
                   event: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """The Events API envelope around one event."""
    return {
        "token": verification_token,
        "team_id": ws.team_id,
        "api_app_id": app_id,
        "event": event,
        "type": "event_callback",
        "event_id": f"Ev{secrets.token_hex(5).upper()}",
        "event_time": int(ws.clock()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": ws.team_id,
                "user_id": bot.id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
    }
