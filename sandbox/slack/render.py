"""Plain-text rendering of emulator state for the sandbox CLI and test failure output.

Headers, sections, fields, context and buttons (`[Approve]`) read the way they look in Slack.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sandbox.slack.models import Event

if TYPE_CHECKING:
    from sandbox.slack.driver import BotResponse
    from sandbox.slack.server import SlackEmulator

Names = Callable[[str], str]
_MENTION = re.compile(r"<([@#!])([^>|]+)(?:\|([^>]+))?>")
_LINK = re.compile(r"<((?:https?|mailto):[^>|]+)(?:\|([^>]+))?>")


def _no_names(ref: str) -> str:
    return ref


def names_from(emulator: SlackEmulator) -> Names:
    """Resolve user and channel ids to names through the emulator's directory."""

    def name(ref: str) -> str:
        with emulator.ws.lock:
            if ref in emulator.ws.users:
                return emulator.ws.users[ref].name
            if ref in emulator.ws.channels:
                return emulator.ws.channels[ref].name
        return ref

    return name


def mrkdwn(text: str, names: Names = _no_names) -> str:
    """Slack's escapes to something readable: <@U1> -> @alice, <url|label> -> label (url)."""

    def mention(m: re.Match[str]) -> str:
        sigil, ref, label = m.groups()
        if sigil == "!":
            return f"@{label or ref.split('^')[0]}"
        return f"{sigil}{label or names(ref)}"

    text = _LINK.sub(lambda m: f"{m.group(2)} ({m.group(1)})" if m.group(2) else m.group(1), text)
    text = _MENTION.sub(mention, text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def text_of(obj: Any, names: Names = _no_names) -> str:
    if isinstance(obj, dict):
        return mrkdwn(str(obj.get("text", "")), names)
    return "" if obj is None else str(obj)


def _rich_text(node: Any) -> str:
    if isinstance(node, dict):
        if node.get("type") == "text":
            return str(node.get("text", ""))
        if node.get("type") in ("user", "channel", "usergroup"):
            return "@" + str(
                node.get("user_id") or node.get("channel_id") or node.get("usergroup_id")
            )
        if node.get("type") == "link":
            return str(node.get("text") or node.get("url", ""))
        return "".join(_rich_text(n) for n in node.get("elements", []))
    return ""


def element(el: dict[str, Any], names: Names = _no_names) -> str:
    """One interactive element: `[Approve]`, `<Pick a severity ▾>`, `[________]`."""
    kind = el.get("type", "?")
    if kind == "button":
        return f"[{text_of(el.get('text'), names)}]"
    if kind == "overflow":
        return "[…]"
    if kind in ("plain_text_input", "email_text_input", "url_text_input", "number_input"):
        shown = el.get("initial_value") or text_of(el.get("placeholder"), names) or ""
        return f"[{shown or '_' * 12}]"
    if kind in ("checkboxes", "radio_buttons"):
        mark = "[ ]" if kind == "checkboxes" else "( )"
        return "  ".join(f"{mark} {text_of(o.get('text'), names)}" for o in el.get("options", []))
    chosen = el.get("initial_option")
    label = text_of(chosen["text"], names) if chosen else text_of(el.get("placeholder"), names)
    return f"<{label or kind} ▾>"


def render_blocks(blocks: list[dict[str, Any]], names: Names = _no_names) -> list[str]:
    lines: list[str] = []
    for block in blocks or []:
        kind = block.get("type")
        if kind == "header":
            lines.append(f"## {text_of(block.get('text'), names)}")
        elif kind == "section":
            if "text" in block:
                lines.extend(text_of(block["text"], names).splitlines() or [""])
            fields = [text_of(f, names) for f in block.get("fields", [])]
            for i in range(0, len(fields), 2):
                lines.append("  " + "  |  ".join(f.replace("\n", " ") for f in fields[i : i + 2]))
            accessory = block.get("accessory")
            if isinstance(accessory, dict) and accessory.get("type") != "image":
                lines.append("  " + element(accessory, names))
        elif kind == "divider":
            lines.append("-" * 40)
        elif kind == "context":
            parts = [
                f"[image: {e.get('alt_text', '')}]"
                if e.get("type") == "image"
                else text_of(e, names)
                for e in block.get("elements", [])
            ]
            lines.append("  · " + "  ".join(parts))
        elif kind == "actions":
            lines.append(" ".join(element(e, names) for e in block.get("elements", [])))
        elif kind == "input":
            optional = " (optional)" if block.get("optional") else ""
            label = text_of(block.get("label"), names)
            lines.append(f"{label}{optional}: {element(block.get('element', {}), names)}")
        elif kind == "image":
            lines.append(f"[image: {block.get('alt_text', '')}]")
        elif kind == "rich_text":
            lines.extend(_rich_text(block).splitlines())
        elif kind == "markdown":
            lines.extend(str(block.get("text", "")).splitlines())
        else:
            lines.append(f"[{kind}]")
    return lines


def render_message(message: dict[str, Any], names: Names = _no_names, *, indent: str = "") -> str:
    """`[ts] @author: ...` followed by the blocks (or the text when there are none)."""
    author = names(message.get("user", "?"))
    tags = []
    if message.get("edited"):
        tags.append("edited")
    if message.get("subtype") == "thread_broadcast":
        tags.append("also sent to channel")
    if message.get("reply_count"):
        tags.append(f"{message['reply_count']} replies")
    suffix = f"  ({', '.join(tags)})" if tags else ""
    body = (
        render_blocks(message.get("blocks", []), names)
        or mrkdwn(message.get("text", ""), names).splitlines()
    )
    for shared in message.get("files", []):
        body.append(
            f"[file: {shared.get('title') or shared.get('name')} ({shared.get('size', 0)} bytes)]"
        )
    head = f"{indent}[{message.get('ts')}] @{author}:{suffix}"
    pad = " " * len(indent) + "  "
    return "\n".join([head, *textwrap.indent("\n".join(body), pad).splitlines()])


def render_channel(emulator: SlackEmulator, channel: str, *, threads: bool = True) -> str:
    names = names_from(emulator)
    out = [f"#{emulator.ws.resolve_channel(channel).name}"]
    for message in emulator.messages(channel):
        out.append(render_message(message, names))
        if threads and message.get("reply_count"):
            for reply in emulator.thread(channel, message["ts"])[1:]:
                out.append(render_message(reply, names, indent="    ↳ "))
    return "\n".join(out)


def render_ephemeral(ephemeral: dict[str, Any], names: Names = _no_names) -> str:
    who = names(ephemeral.get("recipient", "?"))
    return f"(only visible to @{who})\n" + render_message(ephemeral, names)


def render_view(view: dict[str, Any], errors: dict[str, str] | None = None,
                names: Names = _no_names) -> str:  # fmt: skip
    buttons = " ".join(f"[{text_of(view[k], names)}]" for k in ("close", "submit") if view.get(k))
    lines = [
        f"┌ {text_of(view.get('title'), names)}  ({view.get('id')}, {view.get('callback_id')})"
    ]
    for block in view.get("blocks", []):
        lines.extend(f"│ {line}" for line in render_blocks([block], names))
        if errors and block.get("block_id") in errors:
            lines.append(f"│   ! {errors[block['block_id']]}")
    lines.append(f"└ {buttons}")
    return "\n".join(lines)


def render_response(response: BotResponse) -> str:
    """The bot's synchronous HTTP answer: status, and any message or response_action in it."""
    head = f"HTTP {response.status}"
    body = response.message()
    if body is None:
        return head
    if "response_action" in body:
        head += f" response_action={body['response_action']}"
        if body.get("errors"):
            head += "\n" + "\n".join(f"  ! {k}: {v}" for k, v in body["errors"].items())
        return head
    shown = render_blocks(body.get("blocks", [])) or mrkdwn(str(body.get("text", ""))).splitlines()
    return "\n".join([head, *shown]) if shown else head


def render_event(emulator: SlackEmulator, event: Event) -> str | None:
    """What a person watching Slack would notice for one emulator change (None: nothing)."""
    names = names_from(emulator)
    data = event.data
    if event.kind in ("message.posted", "message.updated"):
        message = emulator.message(data["channel"], data["ts"])
        if message is None:
            return None
        where = f"#{names(data['channel'])}" + (" (thread)" if data.get("thread_ts") not in
                                                 (None, data["ts"]) else "")  # fmt: skip
        verb = "updated" if event.kind == "message.updated" else "new"
        return f"{where} {verb}:\n{render_message(message, names)}"
    if event.kind in ("ephemeral.posted", "ephemeral.replaced"):
        for ephemeral in emulator.ephemerals(channel=data["channel"]):
            if ephemeral["ts"] == data["ts"]:
                return render_ephemeral(ephemeral, names)
        return None
    if event.kind in ("view.opened", "view.pushed", "view.updated"):
        view = emulator.view(data["view_id"])
        return render_view(view, emulator.view_errors(view["id"]), names)
    if event.kind == "view.errors":
        return "modal errors:\n" + "\n".join(f"  ! {k}: {v}" for k, v in data["errors"].items())
    if event.kind == "view.closed":
        return f"(modal {data['view_id']} closed)"
    if event.kind == "pin.added":
        return f"📌 pinned {data['ts']} in #{names(data['channel'])}"
    if event.kind == "message.deleted":
        return f"(message {data['ts']} deleted in #{names(data['channel'])})"
    return None


def render_events(emulator: SlackEmulator, events: list[Event]) -> str:
    """Everything visible that happened in `events`, e.g. `emulator.events(since=mark)`."""
    shown = (render_event(emulator, event) for event in events)
    return "\n\n".join(text for text in shown if text)
