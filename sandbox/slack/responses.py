"""response_url endpoints: issued per slash command or interaction, answered like Slack.

Defaults follow Slack: a new ephemeral message for commands; for a click on a message,
posting without `response_type` or `replace_original` replaces that message.
"""

from __future__ import annotations

import secrets
from typing import Any

from sandbox.slack.api import ApiContext, ApiError, message_content
from sandbox.slack.chat import delete_message, post, store_ephemeral
from sandbox.slack.models import ResponseUrl

MAX_USES = 5  # Slack: up to five responses within thirty minutes
TTL_SECONDS = 30 * 60


def issue_response_url(
    ctx: ApiContext,
    *,
    channel: str,
    user: str,
    message_ts: str | None = None,
    is_ephemeral: bool = False,
    thread_ts: str | None = None,
) -> str:
    token = secrets.token_urlsafe(18)
    ctx.ws.response_urls[token] = ResponseUrl(
        token, channel, user, message_ts, is_ephemeral, thread_ts, 0, ctx.ws.clock()
    )
    return f"{ctx.base_url}response/{token}"


def _flag(body: dict[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is None:
        return None
    return value is True or str(value).lower() == "true"


def post_response(
    ctx: ApiContext, token: str, body: Any, *, via: str = "response_url"
) -> tuple[int, dict[str, Any]]:
    """Apply one POST to a response_url; returns (HTTP status, JSON body).

    `via="ack"` applies a slash command's synchronous reply, which Slack shows the same
    way but which does not use up the response_url.
    """
    ru = ctx.ws.response_urls.get(token)
    if ru is None:
        return 404, {"ok": False, "error": "invalid_token"}
    if ctx.ws.clock() - ru.issued_at > TTL_SECONDS:
        return 404, {"ok": False, "error": "expired_url"}
    if ru.uses >= MAX_USES and via == "response_url":
        return 404, {"ok": False, "error": "used_url"}
    if not isinstance(body, dict):
        return 400, {"ok": False, "error": "invalid_payload"}
    try:
        action, ts = _apply(ctx, ru, body, via)
    except ApiError as exc:
        return 400, exc.body()
    if via == "response_url":
        ru.uses += 1
    record = {
        "url": f"{ctx.base_url}response/{token}",
        "token": token,
        "via": via,
        "body": body,
        "action": action,
        "channel": ru.channel,
        "user": ru.user,
        "ts": ts,
    }
    ctx.ws.responses.append(record)
    ctx.ws._emit("response.posted", action=action, channel=ru.channel, user=ru.user, ts=ts)
    return 200, {"ok": True}


def _apply(
    ctx: ApiContext, ru: ResponseUrl, body: dict[str, Any], via: str
) -> tuple[str, str | None]:
    channel = ctx.ws.channels[ru.channel]
    if _flag(body, "delete_original"):
        if ru.message_ts is None:
            raise ApiError("message_not_found")
        if ru.is_ephemeral:
            ctx.ws.ephemerals[:] = [e for e in ctx.ws.ephemerals if not _is_original(e, ru)]
            ctx.ws._emit("ephemeral.deleted", channel=ru.channel, user=ru.user, ts=ru.message_ts)
        else:
            message = ctx.ws.messages[channel.id].get(ru.message_ts)
            if message is None:
                raise ApiError("message_not_found")
            delete_message(ctx, channel, message)
        return "deleted", ru.message_ts
    replace = _flag(body, "replace_original")
    if replace is None:
        replace = ru.message_ts is not None and body.get("response_type") is None
    content = message_content(
        body.get("text"), body.get("blocks"), attachments=body.get("attachments")
    )
    thread_ts = body.get("thread_ts") or ru.thread_ts
    if replace and ru.message_ts is not None:
        target = _original(ctx, ru)
        target.pop("blocks", None)
        target.update(content)
        if not ru.is_ephemeral:
            target["edited"] = {"user": ctx.bot.id, "ts": ctx.ws.next_ts()}
        kind = "ephemeral.replaced" if ru.is_ephemeral else "message.updated"
        ctx.ws._emit(kind, channel=channel.id, ts=ru.message_ts, user=ru.user)
        return "replaced", ru.message_ts
    if body.get("response_type") == "in_channel":
        message = post(ctx, channel, content, thread_ts=thread_ts)
        return "in_channel", message["ts"]
    ephemeral = store_ephemeral(ctx, channel, ru.user, content, thread_ts=thread_ts, source=via)
    return "ephemeral", ephemeral["ts"]


def _is_original(ephemeral: dict[str, Any], ru: ResponseUrl) -> bool:
    return bool(ephemeral["ts"] == ru.message_ts and ephemeral["recipient"] == ru.user)


def _original(ctx: ApiContext, ru: ResponseUrl) -> dict[str, Any]:
    if ru.is_ephemeral:
        found = [e for e in ctx.ws.ephemerals if _is_original(e, ru)]
        if not found:
            raise ApiError("message_not_found")
        return found[0]
    message = ctx.ws.messages[ru.channel].get(ru.message_ts or "")
    if message is None:
        raise ApiError("message_not_found")
    return message
