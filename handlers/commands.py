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
from handlers.errors import tell_user
from handlers.middleware import first_delivery

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
        text = (body.get("text") or "").strip()
        user = body["user_id"]
        channel = body["channel_id"]
        try:
            parsed = parse(text)
        except UserFacingError as exc:
            ack(response_type="ephemeral", text=str(exc),
                blocks=views.error_blocks(str(exc)) + views.help_blocks(ids.COMMAND))
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
            if first_delivery(service.store, body):
                _open_request_modal(client, service, body, parsed.service or "")
            return
        if parsed.verb == "request":
            ack(response_type="ephemeral",
                text=f":hourglass: Preparing the rollback plan for `{parsed.service}`…")
        else:
            ack()
        if parsed.verb in ("request", "cancel", "clear-known-bad") and not first_delivery(
                service.store, body):
            return
        try:
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
    opened = client.views_open(trigger_id=body["trigger_id"], view=_loading_modal())
    view_id = opened["view"]["id"]
    try:
        d = service.modal_defaults(name)
        svc = service.service_config(name)
        view = views.request_modal(service=name, platform=d.platform, revisions=d.revisions,
                                   severity=d.severity, scope=d.scope,
                                   channel_id=body["channel_id"], platforms=svc.platforms(),
                                   known_bad=dict(d.known_bad))
    except Exception as exc:
        from handlers.errors import render

        view = {"type": "modal", "title": {"type": "plain_text", "text": "Request rollback"},
                "blocks": views.error_blocks(render(exc))}
    client.views_update(view_id=view_id, view=view)
