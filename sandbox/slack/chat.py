"""chat.* and pins.* methods: posting, updating, deleting, ephemerals and pins."""

from __future__ import annotations

from typing import Any

from sandbox.slack.api import ApiContext, ApiError, Handler, Params, bot_message, message_content
from sandbox.slack.api import public as _public
from sandbox.slack.models import Channel
from sandbox.slack.state import Message


def writable_channel(ctx: ApiContext, ref: str | None) -> Channel:
    """The channel a bot may post to, with Slack's errors when it may not."""
    channel = ctx.ws.find_channel(ref) if ref else None
    if channel is None:
        raise ApiError("channel_not_found")
    if ctx.bot.id not in channel.members and not channel.is_im:
        # Private channels the bot is not in are invisible to it; public ones need a join.
        raise ApiError("channel_not_found" if channel.is_private else "not_in_channel")
    if channel.is_archived:
        raise ApiError("is_archived")
    return channel


def post(
    ctx: ApiContext,
    channel: Channel,
    content: dict[str, Any],
    *,
    thread_ts: str | None = None,
    broadcast: bool = False,
) -> Message:
    """Store a bot message (the core of chat.postMessage, response_url and file shares)."""
    if thread_ts and thread_ts not in ctx.ws.messages[channel.id]:
        # Slack silently orphans such replies; failing loudly finds the bug sooner.
        raise ApiError("thread_not_found")
    message = bot_message(ctx, ctx.ws.next_ts(), content)
    if thread_ts and broadcast:
        message["subtype"] = "thread_broadcast"
    return ctx.ws._store_message(channel, message, thread_ts)


def _existing(ctx: ApiContext, p: Params, ts_name: str = "ts") -> tuple[Channel, Message]:
    channel = writable_channel(ctx, p.string("channel"))
    ts = p.require(ts_name, "message_not_found")
    message = ctx.ws.messages[channel.id].get(ts)
    if message is None:
        raise ApiError("message_not_found")
    return channel, message


def post_message(ctx: ApiContext, p: Params) -> dict[str, Any]:
    channel = writable_channel(ctx, p.string("channel"))
    content = message_content(p.get("text"), p.get("blocks"), attachments=p.get("attachments"))
    if p.get("metadata") is not None:
        content["metadata"] = p.json("metadata", "invalid_metadata_format")
    message = post(
        ctx, channel, content, thread_ts=p.string("thread_ts"), broadcast=p.flag("reply_broadcast")
    )
    return {"ok": True, "channel": channel.id, "ts": message["ts"], "message": _public(message)}


def update(ctx: ApiContext, p: Params) -> dict[str, Any]:
    channel, message = _existing(ctx, p)
    if message.get("bot_id") != ctx.bot.bot_id:
        raise ApiError("cant_update_message")
    if p.get("text") is None and p.get("blocks") is None and p.get("attachments") is None:
        raise ApiError("no_text")
    content = message_content(
        p.get("text"), p.get("blocks"), attachments=p.get("attachments"), update=True
    )
    # Omitted blocks keep the previous ones (Slack's documented rule); [] removes them.
    if p.get("text") is None:
        content.pop("text")
    if p.get("blocks") is None:
        content.pop("blocks", None)
    elif not content.get("blocks"):
        message.pop("blocks", None)
        content.pop("blocks", None)
    message.update(content)
    message["edited"] = {"user": ctx.bot.id, "ts": ctx.ws.next_ts()}
    ctx.ws._emit("message.updated", channel=channel.id, ts=message["ts"])
    return {
        "ok": True,
        "channel": channel.id,
        "ts": message["ts"],
        "text": message["text"],
        "message": _public(message),
    }


def delete(ctx: ApiContext, p: Params) -> dict[str, Any]:
    channel, message = _existing(ctx, p)
    if message.get("bot_id") != ctx.bot.bot_id:
        raise ApiError("cant_delete_message")
    delete_message(ctx, channel, message)
    return {"ok": True, "channel": channel.id, "ts": message["ts"]}


def delete_message(ctx: ApiContext, channel: Channel, message: Message) -> None:
    messages = ctx.ws.messages[channel.id]
    del messages[message["ts"]]
    root = messages.get(message.get("thread_ts", ""))
    if root is not None and root is not message:
        root["reply_count"] = max(0, root.get("reply_count", 1) - 1)
    ctx.ws._emit("message.deleted", channel=channel.id, ts=message["ts"])


def post_ephemeral(ctx: ApiContext, p: Params) -> dict[str, Any]:
    channel = writable_channel(ctx, p.string("channel"))
    # Slack wants a user id here; a name is a bug in the caller, so it fails like on slack.com.
    user = ctx.ws.users.get(p.require("user", "user_not_found"))
    if user is None:
        raise ApiError("user_not_found")
    if user.id not in channel.members:
        raise ApiError("user_not_in_channel")
    content = message_content(p.get("text"), p.get("blocks"), attachments=p.get("attachments"))
    ephemeral = store_ephemeral(ctx, channel, user.id, content, thread_ts=p.string("thread_ts"))
    return {"ok": True, "message_ts": ephemeral["ts"]}


def store_ephemeral(
    ctx: ApiContext,
    channel: Channel,
    user: str,
    content: dict[str, Any],
    *,
    thread_ts: str | None = None,
    source: str = "chat.postEphemeral",
) -> dict[str, Any]:
    """Record a message only `user` sees; Slack never stores these, we keep them for tests."""
    ephemeral = bot_message(ctx, ctx.ws.next_ts(), content)
    ephemeral.update(channel=channel.id, recipient=user, source=source)
    if thread_ts:
        ephemeral["thread_ts"] = thread_ts
    ctx.ws.ephemerals.append(ephemeral)
    ctx.ws._emit("ephemeral.posted", channel=channel.id, user=user, ts=ephemeral["ts"])
    return ephemeral


def permalink(ctx: ApiContext, p: Params) -> dict[str, Any]:
    channel, message = _existing(ctx, p, "message_ts")
    digits = message["ts"].replace(".", "")
    link = f"https://{ctx.ws.team_domain}.slack.com/archives/{channel.id}/p{digits}"
    return {"ok": True, "channel": channel.id, "permalink": link}


def pins_add(ctx: ApiContext, p: Params) -> dict[str, Any]:
    channel, message = _existing(ctx, p, "timestamp")
    pinned = ctx.ws.pins.setdefault(channel.id, [])
    if message["ts"] in pinned:
        raise ApiError("already_pinned")
    pinned.append(message["ts"])
    message.setdefault("pinned_to", []).append(channel.id)
    ctx.ws._emit("pin.added", channel=channel.id, ts=message["ts"])
    return {"ok": True}


def pins_remove(ctx: ApiContext, p: Params) -> dict[str, Any]:
    channel, message = _existing(ctx, p, "timestamp")
    pinned = ctx.ws.pins.setdefault(channel.id, [])
    if message["ts"] not in pinned:
        raise ApiError("no_pin")
    pinned.remove(message["ts"])
    message["pinned_to"] = [c for c in message.get("pinned_to", []) if c != channel.id]
    ctx.ws._emit("pin.removed", channel=channel.id, ts=message["ts"])
    return {"ok": True}


def pins_list(ctx: ApiContext, p: Params) -> dict[str, Any]:
    channel = writable_channel(ctx, p.string("channel"))
    messages = ctx.ws.messages[channel.id]
    items = [
        {"type": "message", "channel": channel.id, "message": _public(messages[ts])}
        for ts in ctx.ws.pins.get(channel.id, [])
        if ts in messages
    ]
    return {"ok": True, "items": items}


METHODS: dict[str, Handler] = {
    "chat.postMessage": post_message,
    "chat.update": update,
    "chat.delete": delete,
    "chat.postEphemeral": post_ephemeral,
    "chat.getPermalink": permalink,
    "pins.add": pins_add,
    "pins.remove": pins_remove,
    "pins.list": pins_list,
}
