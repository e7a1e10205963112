"""Modal submissions: the rollback request form and the rejection reason."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App

from bot.commands import Parsed
from bot.config import Severity
from bot.service import RollbackService
from handlers import ids, views
from handlers.errors import tell_user
from handlers.middleware import first_delivery

log = logging.getLogger(__name__)


def _values(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for block_id, actions in body["view"]["state"]["values"].items():
        for _action_id, v in actions.items():
            if v.get("type") in ("static_select",):
                out[block_id] = (v.get("selected_option") or {}).get("value")
            elif v.get("type") == "checkboxes":
                out[block_id] = [o["value"] for o in v.get("selected_options") or []]
            else:
                out[block_id] = v.get("value")
    return out


def register(app: App, service: RollbackService) -> None:
    @app.view(ids.REQUEST_MODAL)
    def request_submitted(ack: Ack, body: dict[str, Any]) -> None:
        values = _values(body)
        service_name, _, channel = body["view"]["private_metadata"].partition("|")
        if not values.get("scope"):
            ack(response_action="errors", errors={"scope": "Choose at least one scope."})
            return
        ack()
        if not first_delivery(service.store, body):
            return
        try:
            to = values.get("target_revision")
            parsed = Parsed(
                "request", service=service_name, to=int(to) if to else None,
                severity=Severity(values["severity"]) if values.get("severity") else None,
                scope=list(values["scope"]), platform=values.get("platform"),
                reason=values.get("reason") or "",
            )
            service.request(parsed, requester=body["user"]["id"], channel_id=channel)
        except Exception as exc:
            tell_user(service.chat, body, exc)

    @app.view(ids.APPROVE_DESTRUCTIVE_MODAL)
    def destructive_approval_submitted(ack: Ack, body: dict[str, Any]) -> None:
        typed = (_values(body).get("confirm_service") or "").strip()
        rollback_id, channel, flags = views.parse_approval_metadata(
            body["view"]["private_metadata"])
        expected = views.approval_service(body["view"])
        if typed != expected:
            ack(response_action="errors", errors={
                "confirm_service": f"Type {expected} exactly to approve the destructive steps."})
            return
        ack()
        if not first_delivery(service.store, body):
            return
        try:
            service.approve(rollback_id, user=body["user"]["id"], channel_id=channel,
                            typed_confirmation=typed, override=flags.get("override", False),
                            known_bad_override=flags.get("known_bad_override", False))
        except Exception as exc:
            tell_user(service.chat, body, exc)

    @app.view(ids.REJECT_MODAL)
    def reject_submitted(ack: Ack, body: dict[str, Any]) -> None:
        reason = (_values(body).get("reason") or "").strip()
        if not reason:
            ack(response_action="errors", errors={"reason": "A rejection needs a reason."})
            return
        ack()
        if not first_delivery(service.store, body):
            return
        rollback_id = body["view"]["private_metadata"].partition("|")[0]
        try:
            service.reject(rollback_id, user=body["user"]["id"], reason=reason)
        except Exception as exc:
            tell_user(service.chat, body, exc)
