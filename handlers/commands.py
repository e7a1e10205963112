"""The ``/rollback`` slash command: ack at once, then answer or hand off to the service."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.commands import parse
from bot.errors import UserFacingError
from bot.service import RollbackService
from handlers import ids, views
from handlers.errors import render, tell_user
from handlers.middleware import MalformedPayload, first_delivery, open_view
from handlers.mrkdwn import escape

log = logging.getLogger(__name__)


def _loading_modal() -> dict[str, Any]:
    return {"type": "modal", "callback_id": ids.REQUEST_MODAL,
            "title": {"type": "plain_text", "text": "Request rollback"},
            "blocks": [views.section(":hourglass: Reading the revision history…")]}


def register(app: App, service: RollbackService) -> None:
    config = service.config

    @app.command(ids.COMMAND)
    def rollback_command(ack: Ack, body: dict[str, Any], respond: Respond,
                         client: WebClient) -> None:
        raw = body.get("text")
        text = raw.strip() if isinstance(raw, str) else ""
        user, channel = body.get("user_id"), body.get("channel_id")
        if not (isinstance(user, str) and user and isinstance(channel, str) and channel):
            ack(response_type="ephemeral", text=render(MalformedPayload()))
            return
        try:
            parsed = parse(text)
        except UserFacingError as exc:
            message = render(exc)
            ack(response_type="ephemeral", text=message,
                blocks=views.error_blocks(message) + views.help_blocks(ids.COMMAND))
            return
        quick: dict[str, Callable[[], list[dict[str, Any]]]] = {
            "help": lambda: views.help_blocks(ids.COMMAND),
            "services": lambda: views.services_blocks(config),
        }
        if parsed.verb in quick:
            ack(response_type="ephemeral", text="rollback-bot", blocks=quick[parsed.verb]())
            return
        if parsed.verb == "modal" and parsed.service not in config.services:
            ack()
            tell_user(service.chat, body, _unknown(service, parsed.service or ""), respond)
            return
        if parsed.verb == "modal":
            ack()
            try:
                if first_delivery(service.store, body):
                    _open_request_modal(client, service, body, parsed.service or "")
            except Exception as exc:
                tell_user(service.chat, body, exc, respond)
            return
        if parsed.verb == "request":
            ack(response_type="ephemeral",
                text=":hourglass: Preparing the rollback plan for "
                     f"`{escape(parsed.service)}`…")
        else:
            ack()
        try:
            if parsed.verb in ("request", "cancel", "clear-known-bad") and not first_delivery(
                    service.store, body):
                return
            if parsed.verb == "request":
                service.request(parsed, requester=user, channel_id=channel)
            elif parsed.verb == "status":
                found = service.status(parsed.argument)
                respond(response_type="ephemeral", text="status",
                        blocks=views.rollback_list_blocks("Rollbacks", found))
            elif parsed.verb == "history":
                found = service.history(parsed.argument or "")
                respond(response_type="ephemeral", text="history", blocks=views.
                        rollback_list_blocks(f"History of {parsed.argument}", found))
            elif parsed.verb == "cancel":
                service.cancel(parsed.argument or "", user=user)
            elif parsed.verb == "known-bad":
                platform, marks = service.known_bad(parsed.service or "",
                                                    platform=parsed.platform)
                respond(response_type="ephemeral", text="known-bad revisions",
                        blocks=views.known_bad_blocks(parsed.service or "", platform, marks))
            elif parsed.verb == "clear-known-bad":
                cleared = service.clear_known_bad(parsed.service or "", parsed.to or 0,
                                                  user=user, reason=parsed.reason,
                                                  platform=parsed.platform)
                respond(response_type="in_channel", text=views.known_bad_cleared_text(
                    cleared, user=user, reason=parsed.reason))
        except Exception as exc:
            tell_user(service.chat, body, exc, respond)


def _unknown(service: RollbackService, name: str) -> Exception:
    try:
        service.service_config(name)
    except UserFacingError as exc:
        return exc
    return UserFacingError(f"Unknown service `{name}`.")


def _open_request_modal(client: WebClient, service: RollbackService, body: dict[str, Any],
                        name: str) -> None:
    # Open at once (trigger_id lives 3 s), then fill in what needs a platform round trip.
    opened = open_view(client, body, _loading_modal())
    view_id = opened["view"]["id"]
    try:
        d = service.modal_defaults(name)
        svc = service.service_config(name)
        view = views.request_modal(service=name, platform=d.platform, revisions=d.revisions,
                                   severity=d.severity, scope=d.scope,
                                   channel_id=body["channel_id"], platforms=svc.platforms(),
                                   known_bad=dict(d.known_bad))
    except Exception as exc:
        view = {"type": "modal", "title": {"type": "plain_text", "text": "Request rollback"},
                "blocks": views.error_blocks(render(exc))}
    client.views_update(view_id=view_id, view=view)
