"""Button clicks on rollback messages: ack first, then one service call; refusals are ephemeral."""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.errors import NotAllowed
from bot.service import RollbackService
from handlers import ids, views
from handlers.errors import tell_user
from handlers.middleware import ClickHandler, on_click

log = logging.getLogger(__name__)


def _value(body: dict[str, Any]) -> str:
    return str(body["actions"][0].get("value") or "")


def _channel(body: dict[str, Any]) -> str:
    """The conversation a click came from. Slack documents ``channel`` and ``container`` as
    optional (a click in a modal or App Home has neither): refuse clearly, never guess."""
    channel = ((body.get("channel") or {}).get("id")
               or (body.get("container") or {}).get("channel_id"))
    if not channel:
        raise NotAllowed("This button only works on the rollback message in its incident "
                         "channel.")
    return str(channel)


def register(app: App, service: RollbackService) -> None:
    def on(action: str | re.Pattern[str], fn: ClickHandler) -> None:
        on_click(app, action, fn, store=service.store, chat=service.chat)

    def approve(body: dict[str, Any], user: str, value: str, *, override: bool = False,
                known_bad_override: bool = False) -> None:
        flags = {"override": override, "known_bad_override": known_bad_override}
        rb = service.check_can_approve(value, user=user, channel_id=_channel(body),
                                       override=override,
                                       known_bad_override=known_bad_override)
        if rb.destructive_steps:  # a click is not enough: the approver types the name
            app.client.views_open(trigger_id=body["trigger_id"], view=views.
                                  approve_destructive_modal(rb, channel_id=_channel(body),
                                                            flags=flags))
            return
        service.approve(value, user=user, channel_id=_channel(body), override=override,
                        known_bad_override=known_bad_override)

    on(ids.APPROVE, lambda b, u, v: approve(b, u, v))
    on(ids.APPROVE_OVERRIDE, lambda b, u, v: approve(b, u, v, override=True))
    on(ids.APPROVE_KNOWN_BAD, lambda b, u, v: approve(b, u, v, known_bad_override=True))
    on(ids.SCALE_BACK_UP, lambda b, u, v: service.scale_back_up(v, user=u))
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
