"""Button clicks on rollback messages: ack first, then one service call; refusals are ephemeral."""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.service import RollbackService
from handlers import ids, views
from handlers.errors import tell_user
from handlers.middleware import ClickHandler, on_click

log = logging.getLogger(__name__)


def _value(body: dict[str, Any]) -> str:
    return str(body["actions"][0].get("value") or "")


def _channel(body: dict[str, Any]) -> str:
    return str((body.get("channel") or {}).get("id") or body["container"].get("channel_id"))


def register(app: App, service: RollbackService) -> None:
    def on(action: str | re.Pattern[str], fn: ClickHandler) -> None:
        on_click(app, action, fn, store=service.store, chat=service.chat)

    on(ids.APPROVE, lambda b, u, v: service.approve(v, user=u, channel_id=_channel(b)))
    on(ids.APPROVE_OVERRIDE, lambda b, u, v: service.approve(
        v, user=u, channel_id=_channel(b), override=True))
    on(ids.CANCEL, lambda b, u, v: service.cancel(v, user=u))
    on(ids.HOTFIX, lambda b, u, v: service.hotfix_in_progress(v, user=u))
    on(ids.ASSIGN_IC, lambda b, u, v: service.assign_incident_commander(v, user=u))

    def checklist(body: dict[str, Any], user: str, value: str) -> None:
        ref, _, item = value.partition(":")
        service.tick_checklist(ref, item=item, user=user)

    on(re.compile(rf"^{ids.CHECKLIST}:"), checklist)

    @app.action(ids.REJECT)
    def reject_clicked(ack: Ack, body: dict[str, Any], client: WebClient,
                       respond: Respond) -> None:
        ack()
        try:
            rb = service.get(_value(body))
            service.policy.check_reject(rb, user=body["user"]["id"])
            client.views_open(trigger_id=body["trigger_id"],
                              view=views.reject_modal(rb, channel_id=_channel(body)))
        except Exception as exc:
            tell_user(service.chat, body, exc, respond)

    # Selects inside the request modal fire block_actions too; nothing to do for them.
    for action_id in ids.MODAL_INPUT_ACTIONS:
        @app.action(action_id)
        def modal_input(ack: Ack) -> None:
            ack()
