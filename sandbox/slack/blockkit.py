"""Block Kit validation the way Slack's servers apply it, plus element lookup helpers.

slack_sdk's model validators do the per-field limits; the structural rules they do not
check (required fields, plain_text-only slots, unknown keys, duplicate ids) live here.
"""

from __future__ import annotations

import copy
import secrets
import string
from collections.abc import Iterator
from typing import Any

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block, BlockElement

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_MESSAGE_TEXT = 40_000
MAX_VIEW_TITLE = 24

MESSAGE_BLOCKS = {
    "section", "divider", "image", "actions", "context", "header", "input",
    "rich_text", "file", "video", "markdown", "table",
}  # fmt: skip
VIEW_BLOCKS = MESSAGE_BLOCKS - {"file", "table"}
INTERACTIVE = {
    "button", "static_select", "multi_static_select", "external_select",
    "multi_external_select", "users_select", "multi_users_select", "conversations_select",
    "multi_conversations_select", "channels_select", "multi_channels_select", "overflow",
    "checkboxes", "radio_buttons", "datepicker", "timepicker", "datetimepicker",
    "plain_text_input", "email_text_input", "url_text_input", "number_input",
    "rich_text_input", "file_input", "workflow_button",
}  # fmt: skip
TEXT_KEYS = {"type", "text", "emoji", "verbatim"}
# (block type, key) -> max length of the text, for limits we check before slack_sdk does.
TEXT_LIMITS = {("section", "text"): 3000, ("header", "text"): 150, ("button", "text"): 75}
OPTION_COUNTS = {
    "static_select": (1, 100), "multi_static_select": (1, 100), "overflow": (1, 5),
    "checkboxes": (1, 10), "radio_buttons": (1, 10),
}  # fmt: skip


def _text_errors(obj: Any, path: str, *, plain_only: bool = False, limit: int = 0) -> list[str]:
    if not isinstance(obj, dict):
        return [f"expected object, got {type(obj).__name__} [json-pointer:{path}]"]
    kind = obj.get("type")
    if kind not in ("plain_text", "mrkdwn") or (plain_only and kind != "plain_text"):
        want = "plain_text" if plain_only else "plain_text or mrkdwn"
        return [f"must be {want}, got {kind!r} [json-pointer:{path}/type]"]
    errors = [
        f"invalid additional property: {k} [json-pointer:{path}]" for k in obj if k not in TEXT_KEYS
    ]
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        errors.append(f"must be more than 0 characters [json-pointer:{path}/text]")
    elif limit and len(text) > limit:
        errors.append(f"must be less than {limit + 1} characters [json-pointer:{path}/text]")
    return errors


def _element_errors(el: Any, path: str) -> list[str]:
    if not isinstance(el, dict) or not isinstance(el.get("type"), str):
        return [f"missing required field: type [json-pointer:{path}]"]
    kind = el["type"]
    if kind not in INTERACTIVE:
        return [f"unsupported element type {kind!r} [json-pointer:{path}/type]"]
    errors: list[str] = []
    if len(str(el.get("action_id", ""))) > 255:
        errors.append(f"must be less than 256 characters [json-pointer:{path}/action_id]")
    if kind == "button":
        errors += _text_errors(el.get("text"), f"{path}/text", plain_only=True, limit=75)
        if len(str(el.get("value", ""))) > 2000:
            errors.append(f"must be less than 2001 characters [json-pointer:{path}/value]")
        if el.get("style") not in (None, "primary", "danger"):
            errors.append(f"must be primary or danger [json-pointer:{path}/style]")
    if "placeholder" in el:
        errors += _text_errors(el["placeholder"], f"{path}/placeholder", plain_only=True, limit=150)
    if kind in OPTION_COUNTS and "option_groups" not in el:
        low, high = OPTION_COUNTS[kind]
        options = el.get("options")
        if not isinstance(options, list) or not low <= len(options) <= high:
            errors.append(f"must provide {low} to {high} options [json-pointer:{path}/options]")
        else:
            plain = kind not in ("checkboxes", "radio_buttons")
            for j, opt in enumerate(options):
                opath = f"{path}/options/{j}"
                if not isinstance(opt, dict) or not isinstance(opt.get("value"), str):
                    errors.append(f"missing required field: value [json-pointer:{opath}]")
                    continue
                errors += _text_errors(opt.get("text"), f"{opath}/text", plain_only=plain, limit=75)
    return errors or _model_errors(BlockElement, el, path)


def _model_errors(
    model: type[Block] | type[BlockElement], obj: dict[str, Any], path: str
) -> list[str]:
    """Run slack_sdk's own validators (to_dict validates recursively) and its key list."""
    try:
        parsed = model.parse(obj)
        if parsed is None:
            return [f"unsupported type {obj.get('type')!r} [json-pointer:{path}/type]"]
        rendered = parsed.to_dict()
    except SlackObjectFormationError as exc:
        return [f"{exc} [json-pointer:{path}]"]
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        return [f"malformed: {exc} [json-pointer:{path}]"]
    errors = [
        f"invalid additional property: {k} [json-pointer:{path}]"
        for k in obj
        if k != "type" and k not in parsed.attributes
    ]
    if None in rendered.get("elements", ()):  # slack_sdk parses unknown element types to None
        errors.append(f"unsupported element type [json-pointer:{path}/elements]")
    return errors


def _block_errors(block: Any, path: str, allowed: set[str], block_ids: set[str]) -> list[str]:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        return [f"missing required field: type [json-pointer:{path}]"]
    kind = block["type"]
    if kind not in allowed:
        return [f"unsupported block type {kind!r} here [json-pointer:{path}/type]"]
    errors: list[str] = []
    block_id = block.get("block_id")
    if block_id is not None:
        if not isinstance(block_id, str) or not 0 < len(block_id) <= 255:
            errors.append(f"block_id must be 1-255 characters [json-pointer:{path}/block_id]")
        elif block_id in block_ids:
            errors.append(f"duplicate block_id {block_id!r} [json-pointer:{path}/block_id]")
        block_ids.add(str(block_id))
    if kind == "section":
        if "text" not in block and "fields" not in block:
            errors.append(f"must provide text or fields [json-pointer:{path}]")
        if "text" in block:
            errors += _text_errors(block["text"], f"{path}/text", limit=3000)
        fields = block.get("fields", [])
        if not isinstance(fields, list) or len(fields) > 10:
            errors.append(f"no more than 10 items allowed [json-pointer:{path}/fields]")
        else:
            for j, f in enumerate(fields):
                errors += _text_errors(f, f"{path}/fields/{j}", limit=2000)
        accessory = block.get("accessory")
        if accessory is not None and not (
            isinstance(accessory, dict) and accessory.get("type") == "image"
        ):
            errors += _element_errors(accessory, f"{path}/accessory")
    elif kind == "header":
        errors += _text_errors(block.get("text"), f"{path}/text", plain_only=True, limit=150)
    elif kind == "actions":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= 25:
            errors.append(f"must provide 1 to 25 elements [json-pointer:{path}/elements]")
        else:
            for j, el in enumerate(elements):
                errors += _element_errors(el, f"{path}/elements/{j}")
            ids = [
                e.get("action_id") for e in elements if isinstance(e, dict) and e.get("action_id")
            ]
            if len(ids) != len(set(ids)):
                errors.append(f"duplicate action_id [json-pointer:{path}/elements]")
    elif kind == "context":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
            errors.append(f"must provide 1 to 10 elements [json-pointer:{path}/elements]")
        else:
            for j, el in enumerate(elements):
                if isinstance(el, dict) and el.get("type") != "image":
                    errors += _text_errors(el, f"{path}/elements/{j}")
    elif kind == "input":
        errors += _text_errors(block.get("label"), f"{path}/label", plain_only=True, limit=2000)
        if "hint" in block:
            errors += _text_errors(block["hint"], f"{path}/hint", plain_only=True, limit=2000)
        errors += _element_errors(block.get("element"), f"{path}/element")
    if errors:
        return errors
    return _model_errors(Block, block, path)


def block_errors(blocks: Any, *, surface: str = "message", pointer: str = "/blocks") -> list[str]:
    """Everything Slack would reject in `blocks`; empty when they are valid."""
    if not isinstance(blocks, list):
        return [f"expected array [json-pointer:{pointer}]"]
    allowed, limit = (
        (MESSAGE_BLOCKS, MAX_MESSAGE_BLOCKS)
        if surface == "message"
        else (VIEW_BLOCKS, MAX_VIEW_BLOCKS)
    )
    if len(blocks) > limit:
        return [f"no more than {limit} items allowed [json-pointer:{pointer}]"]
    errors: list[str] = []
    block_ids: set[str] = set()
    for i, block in enumerate(blocks):
        errors += _block_errors(block, f"{pointer}/{i}", allowed, block_ids)
    return errors


VIEW_KEYS = {
    "type", "title", "blocks", "close", "submit", "private_metadata", "callback_id",
    "clear_on_close", "notify_on_close", "external_id", "submit_disabled",
}  # fmt: skip


def view_errors(view: Any) -> list[str]:
    """Everything Slack would reject in a modal view payload."""
    if not isinstance(view, dict):
        return ["expected object [json-pointer:/view]"]
    errors = [
        f"invalid additional property: {k} [json-pointer:/view]" for k in view if k not in VIEW_KEYS
    ]
    if view.get("type") != "modal":
        errors.append("must be modal [json-pointer:/view/type]")
    errors += _text_errors(view.get("title"), "/view/title", plain_only=True, limit=MAX_VIEW_TITLE)
    for key in ("submit", "close"):
        if key in view:
            errors += _text_errors(view[key], f"/view/{key}", plain_only=True, limit=MAX_VIEW_TITLE)
    blocks = view.get("blocks")
    if isinstance(blocks, list) and not blocks:
        errors.append("must provide at least 1 block [json-pointer:/view/blocks]")
    errors += block_errors(blocks, surface="modal", pointer="/view/blocks")
    if isinstance(blocks, list) and "submit" not in view:
        if any(isinstance(b, dict) and b.get("type") == "input" for b in blocks):
            errors.append("submit is required when an input block is present [json-pointer:/view]")
    for key, limit in (("callback_id", 255), ("private_metadata", 3000), ("external_id", 255)):
        if len(str(view.get(key, ""))) > limit:
            errors.append(f"must be less than {limit + 1} characters [json-pointer:/view/{key}]")
    return errors


def _random_id() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(5))


def assign_ids(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A copy with a block_id on every block and an action_id on every element, as Slack stores."""
    stored = copy.deepcopy(blocks)
    for block in stored:
        block.setdefault("block_id", _random_id())
        for _, element in iter_elements([block]):
            element.setdefault("action_id", _random_id())
    return stored


def iter_elements(blocks: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(block, element) for every interactive element: actions, accessories, inputs."""
    for block in blocks or []:
        candidates = list(block.get("elements", [])) if block.get("type") == "actions" else []
        if isinstance(block.get("accessory"), dict):
            candidates.append(block["accessory"])
        if isinstance(block.get("element"), dict):
            candidates.append(block["element"])
        for element in candidates:
            if isinstance(element, dict) and element.get("type") in INTERACTIVE:
                yield block, element
