"""Read-side methods: auth.test, users.*, usergroups.*, conversations.*."""

from __future__ import annotations

from typing import Any

from sandbox.slack.api import ApiContext, ApiError, Handler, Params, public
from sandbox.slack.models import Channel


def auth_test(ctx: ApiContext, p: Params) -> dict[str, Any]:
    return {
        "ok": True,
        "url": f"https://{ctx.ws.team_domain}.slack.com/",
        "team": ctx.ws.team_name,
        "user": ctx.bot.name,
        "team_id": ctx.ws.team_id,
        "user_id": ctx.bot.id,
        "bot_id": ctx.bot.bot_id,
        "is_enterprise_install": False,
    }


def users_info(ctx: ApiContext, p: Params) -> dict[str, Any]:
    user = ctx.ws.users.get(p.require("user", "user_not_found"))
    if user is None:
        raise ApiError("user_not_found")
    return {"ok": True, "user": user.to_api(ctx.ws.team_id)}


def users_list(ctx: ApiContext, p: Params) -> dict[str, Any]:
    members = [u.to_api(ctx.ws.team_id) for u in ctx.ws.users.values()]
    return {"ok": True, "members": members, "response_metadata": {"next_cursor": ""}}


def usergroups_users_list(ctx: ApiContext, p: Params) -> dict[str, Any]:
    group = ctx.ws.usergroups.get(p.require("usergroup", "no_such_subteam"))
    if group is None:
        raise ApiError("no_such_subteam")
    return {"ok": True, "users": list(group.users)}


def usergroups_list(ctx: ApiContext, p: Params) -> dict[str, Any]:
    groups = [g.to_api(ctx.ws.team_id) for g in ctx.ws.usergroups.values()]
    if not p.flag("include_users"):
        for group in groups:
            group.pop("users")
    return {"ok": True, "usergroups": groups}


def visible_channel(ctx: ApiContext, ref: str | None) -> Channel:
    channel = ctx.ws.channels.get(ref or "")
    # A private channel the bot is not in does not exist as far as the bot can tell.
    if channel is None or (channel.is_private and ctx.bot.id not in channel.members):
        raise ApiError("channel_not_found")
    return channel


def conversations_info(ctx: ApiContext, p: Params) -> dict[str, Any]:
    channel = visible_channel(ctx, p.string("channel"))
    info = channel.to_api(team_id=ctx.ws.team_id, viewer=ctx.bot.id)
    if not channel.is_im:  # an IM object has no is_member: both people are in it
        info["is_member"] = ctx.bot.id in channel.members
    return {"ok": True, "channel": info}


def conversations_members(ctx: ApiContext, p: Params) -> dict[str, Any]:
    channel = visible_channel(ctx, p.string("channel"))
    return {
        "ok": True,
        "members": sorted(channel.members),
        "response_metadata": {"next_cursor": ""},
    }


def conversations_history(ctx: ApiContext, p: Params) -> dict[str, Any]:
    channel = visible_channel(ctx, p.string("channel"))
    if ctx.bot.id not in channel.members:
        raise ApiError("not_in_channel")
    oldest, latest = float(p.string("oldest") or 0), float(p.string("latest") or "inf")
    limit = int(p.string("limit") or 100)
    messages = [
        m for m in ctx.ws.channel_messages(channel.id) if oldest <= float(m["ts"]) <= latest
    ]
    newest_first = list(reversed(messages))
    return {
        "ok": True,
        "messages": public(newest_first[:limit]),
        "has_more": len(newest_first) > limit,
        "response_metadata": {"next_cursor": ""},
    }


def conversations_replies(ctx: ApiContext, p: Params) -> dict[str, Any]:
    channel = visible_channel(ctx, p.string("channel"))
    ts = p.require("ts", "thread_not_found")
    if ts not in ctx.ws.messages[channel.id]:
        raise ApiError("thread_not_found")
    limit = int(p.string("limit") or 1000)
    thread = ctx.ws.thread(channel.id, ts)
    return {"ok": True, "messages": public(thread[:limit]), "has_more": len(thread) > limit}


def conversations_open(ctx: ApiContext, p: Params) -> dict[str, Any]:
    """One user: the IM with them; two to eight: the group DM of them and the caller."""
    users = [u for u in (p.string("users") or "").split(",") if u]
    if not users:
        raise ApiError("users_list_not_supplied")
    if len(users) > 8:
        raise ApiError("too_many_users")
    if any(u not in ctx.ws.users for u in users):
        raise ApiError("user_not_found")
    if len(users) == 1:
        channel = ctx.ws.dm(users[0])
    else:
        channel = ctx.ws.add_mpim(users)
    return {"ok": True, "channel": {"id": channel.id}}


METHODS: dict[str, Handler] = {
    "auth.test": auth_test,
    "users.info": users_info,
    "users.list": users_list,
    "usergroups.users.list": usergroups_users_list,
    "usergroups.list": usergroups_list,
    "conversations.info": conversations_info,
    "conversations.members": conversations_members,
    "conversations.history": conversations_history,
    "conversations.replies": conversations_replies,
    "conversations.open": conversations_open,
}
