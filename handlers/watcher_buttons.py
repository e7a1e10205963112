"""Buttons on the release watcher's proposal: *Request rollback* and *Snooze*.

*Request rollback* opens the ordinary request modal (``handlers.commands``), pre-filled with
the suggested severity and the proposal's evidence as the reason; submitting it is a normal
request (channel, policy, approvals). *Snooze* silences the service's proposals for
``watcher.snooze_seconds``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.aftercare.watcher import ReleaseWatcher
from bot.domain.config import Severity
from bot.domain.ports import Chat
from bot.persistence.store import Store
from bot.usecases.service import ModalDefaults, RollbackService
from handlers import ids
from handlers.commands import open_request_modal, read_defaults
from handlers.deliveries import MalformedPayload, field, first_delivery, hand_off, user_id
from handlers.errors import render, tell_user
from handlers.work_pool import Busy, SharedReads, WorkPool

log = logging.getLogger(__name__)


def _proposal(value: str) -> tuple[str, Severity | None, str]:
    try:
        data = json.loads(value)
        service = data["service"]
        severity = Severity(data["severity"]) if data.get("severity") else None
        evidence = str(data.get("evidence") or "")
    except (ValueError, KeyError, TypeError):
        raise MalformedPayload() from None
    if not isinstance(service, str):
        raise MalformedPayload()
    return service, severity, evidence


def _value(body: dict[str, Any]) -> str:
    # Not ``action_value``: these values carry a service name (or JSON), not an id.
    return field(body, "actions", 0, "value", kind=str)


def register(app: App, watcher: ReleaseWatcher, service: RollbackService, pool: WorkPool,
             modal_reads: SharedReads[ModalDefaults | str], *, store: Store,
             chat: Chat) -> None:
    """``store`` dedupes deliveries and ``chat`` tells a refusal."""
    @app.action(ids.WATCH_REQUEST)
    def request_clicked(ack: Ack, body: dict[str, Any], respond: Respond,
                        client: WebClient) -> None:
        ack()
        try:
            name, severity, evidence = _proposal(_value(body))
            channel = field(body, "channel", "id", kind=str)
            if name not in watcher.config.services:
                raise MalformedPayload()
        except MalformedPayload as exc:
            tell_user(chat, body, exc, respond)
            return
        defaults = modal_reads.join(name, lambda: read_defaults(service, name))
        if defaults is None:
            respond(response_type="ephemeral", replace_original=False, text=render(Busy()))
            return
        try:
            if first_delivery(store, body):
                open_request_modal(
                    client, service, body, name, defaults, channel=channel,
                    severity=severity, reason=evidence,
                    check=lambda: service.check_can_request(name, user=user_id(body),
                                                            channel_id=channel))
        except Exception as exc:
            tell_user(chat, body, exc, respond)

    @app.action(ids.WATCH_SNOOZE)
    def snooze_clicked(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        try:
            name, user = _value(body), user_id(body)
            channel = field(body, "channel", "id", kind=str)
            if name not in watcher.config.services:
                raise MalformedPayload()
        except MalformedPayload as exc:
            tell_user(chat, body, exc, respond)
            return
        slot = pool.reserve()
        if slot is None:
            tell_user(chat, body, Busy(), respond)
            return

        def snooze() -> None:
            # Silencing a production signal is as sensitive as asking for a rollback: the
            # request's rules (an incident channel, who may ask) decide who may snooze.
            service.check_can_request(name, user=user, channel_id=channel)
            watcher.snooze(name, user=user)

        hand_off(slot, body, snooze, store=store, chat=chat, respond=respond)
