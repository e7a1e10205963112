"""Modals: trigger_ids, views.open/push/update, and the view stack per user.

Also applies a view_submission's synchronous answer (`response_action`) the way the
Slack client does, so driver tests see the modal the user would see next.
"""

from __future__ import annotations

import secrets
from typing import Any

from sandbox.slack.api import ApiContext, ApiError, Handler, Params, public
from sandbox.slack.blockkit import assign_ids, view_errors
from sandbox.slack.models import Trigger

MAX_STACK = 3  # Slack lets a modal stack hold at most three views


def issue_trigger(ctx: ApiContext, user: str) -> str:
    """A trigger_id like Slack's, valid once for `ctx.trigger_ttl` seconds."""
    now = ctx.ws.clock()
    trigger_id = f"{int(now * 1000)}.{secrets.randbelow(10**10):010d}.{secrets.token_hex(16)}"
    ctx.ws.triggers[trigger_id] = Trigger(trigger_id, user, now)
    return trigger_id


def _consume_trigger(ctx: ApiContext, trigger_id: str | None) -> str:
    trigger = ctx.ws.triggers.get(trigger_id or "")
    if trigger is None:
        raise ApiError("invalid_trigger_id")
    if trigger.used:
        raise ApiError("exchanged_trigger_id")
    if ctx.ws.clock() - trigger.issued_at > ctx.trigger_ttl:
        raise ApiError("expired_trigger_id")
    trigger.used = True
    return trigger.user


def _view_spec(p: Params) -> dict[str, Any]:
    spec = p.json("view")
    if spec is None:
        raise ApiError("invalid_arguments", messages=["missing required field: view"])
    errors = view_errors(spec)
    if errors:
        raise ApiError("invalid_arguments", messages=errors)
    return dict(spec)


def build_view(
    ctx: ApiContext,
    spec: dict[str, Any],
    *,
    view_id: str | None = None,
    root_view_id: str | None = None,
    previous_view_id: str | None = None,
) -> dict[str, Any]:
    """The stored view object, shaped like the one views.open returns."""
    external_id = spec.get("external_id") or ""
    if external_id:
        for other in ctx.ws.views.values():
            if other["external_id"] == external_id and other["id"] != view_id:
                raise ApiError("duplicate_external_id")
    vid = view_id or ctx.ws.new_id("V")
    return {
        "id": vid,
        "team_id": ctx.ws.team_id,
        "type": "modal",
        "blocks": assign_ids(spec.get("blocks", [])),
        "private_metadata": spec.get("private_metadata", ""),
        "callback_id": spec.get("callback_id", ""),
        "state": {"values": {}},
        "hash": f"{int(ctx.ws.clock())}.{secrets.token_hex(4)}",
        "title": spec["title"],
        "clear_on_close": bool(spec.get("clear_on_close", False)),
        "notify_on_close": bool(spec.get("notify_on_close", False)),
        "close": spec.get("close"),
        "submit": spec.get("submit"),
        "previous_view_id": previous_view_id,
        "root_view_id": root_view_id or vid,
        "app_id": ctx.app_id,
        "external_id": external_id,
        "app_installed_team_id": ctx.ws.team_id,
        "bot_id": ctx.bot.bot_id,
    }


def owner_of(ctx: ApiContext, view_id: str) -> str | None:
    """The user whose open stack holds the view; None once it is closed."""
    for user, stack in ctx.ws.view_stacks.items():
        if view_id in stack:
            return user
    return None


def views_open(ctx: ApiContext, p: Params) -> dict[str, Any]:
    spec = _view_spec(p)
    user = _consume_trigger(ctx, p.string("trigger_id"))
    view = build_view(ctx, spec)
    ctx.ws.views[view["id"]] = view
    # Opening from a new trigger replaces whatever stack the user had.
    ctx.ws.view_stacks[user] = [view["id"]]
    ctx.ws._emit("view.opened", user=user, view_id=view["id"])
    return {"ok": True, "view": public(view)}


def views_push(ctx: ApiContext, p: Params) -> dict[str, Any]:
    spec = _view_spec(p)
    user = _consume_trigger(ctx, p.string("trigger_id"))
    view = push_view(ctx, user, spec)
    return {"ok": True, "view": public(view)}


def push_view(ctx: ApiContext, user: str, spec: dict[str, Any]) -> dict[str, Any]:
    stack = ctx.ws.view_stacks.get(user) or []
    if not stack:
        raise ApiError("not_found")
    if len(stack) >= MAX_STACK:
        raise ApiError("push_limit_reached")
    view = build_view(ctx, spec, root_view_id=stack[0], previous_view_id=stack[-1])
    ctx.ws.views[view["id"]] = view
    stack.append(view["id"])
    ctx.ws._emit("view.pushed", user=user, view_id=view["id"])
    return view


def views_update(ctx: ApiContext, p: Params) -> dict[str, Any]:
    spec = _view_spec(p)
    view_id = p.string("view_id")
    external_id = p.string("external_id")
    if view_id is None and external_id is None:
        raise ApiError("invalid_arguments", messages=["view_id or external_id is required"])
    current = ctx.ws.views.get(view_id or "")
    if current is None and external_id:
        current = next((v for v in ctx.ws.views.values() if v["external_id"] == external_id), None)
    if current is None or owner_of(ctx, current["id"]) is None:
        raise ApiError("not_found")
    expected = p.string("hash")
    if expected is not None and expected != current["hash"]:
        raise ApiError("hash_conflict")
    return {"ok": True, "view": public(replace_view(ctx, current, spec))}


def replace_view(ctx: ApiContext, current: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """New content under the same id; input values survive for blocks that still exist."""
    view = build_view(
        ctx,
        spec,
        view_id=current["id"],
        root_view_id=current["root_view_id"],
        previous_view_id=current["previous_view_id"],
    )
    block_ids = {b["block_id"] for b in view["blocks"]}
    old_values = current["state"]["values"]
    view["state"]["values"] = {k: v for k, v in old_values.items() if k in block_ids}
    ctx.ws.views[view["id"]] = view
    ctx.ws.view_errors.pop(view["id"], None)
    ctx.ws._emit("view.updated", view_id=view["id"])
    return view


def close_views(ctx: ApiContext, user: str, *, all_views: bool = False) -> list[str]:
    """Pop the top view (or the whole stack); returns the ids closed."""
    stack = ctx.ws.view_stacks.get(user) or []
    closed = list(stack) if all_views else stack[-1:]
    del stack[len(stack) - len(closed) :]
    for view_id in closed:
        ctx.ws.view_errors.pop(view_id, None)
        ctx.ws._emit("view.closed", user=user, view_id=view_id)
    return closed


def apply_submission_response(
    ctx: ApiContext, user: str, view_id: str, body: dict[str, Any] | None
) -> str:
    """Do what the Slack client does with the app's answer to a view_submission."""
    action = (body or {}).get("response_action")
    if not action:
        close_views(ctx, user)
        return "closed"
    assert body is not None
    if action == "errors":
        errors = body.get("errors")
        view = ctx.ws.views[view_id]
        input_ids = {b["block_id"] for b in view["blocks"] if b.get("type") == "input"}
        if not isinstance(errors, dict) or not set(errors) <= input_ids:
            # Slack shows a generic failure when errors name anything but input blocks.
            raise ApiError("invalid_response_action", messages=[f"errors keys must be {input_ids}"])
        ctx.ws.view_errors[view_id] = dict(errors)
        ctx.ws._emit("view.errors", user=user, view_id=view_id, errors=dict(errors))
        return "errors"
    if action in ("update", "push"):
        spec = body.get("view")
        problems = view_errors(spec)
        if problems:
            raise ApiError("invalid_response_action", messages=problems)
        assert isinstance(spec, dict)
        if action == "update":
            replace_view(ctx, ctx.ws.views[view_id], spec)
        else:
            push_view(ctx, user, spec)
        return "updated" if action == "update" else "pushed"
    if action == "clear":
        close_views(ctx, user, all_views=True)
        return "cleared"
    raise ApiError("invalid_response_action", messages=[f"unknown response_action {action!r}"])


METHODS: dict[str, Handler] = {
    "views.open": views_open,
    "views.push": views_push,
    "views.update": views_update,
}
