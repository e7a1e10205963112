"""Delivery dedupe: a Slack retry (same body, ``X-Slack-Retry-Num``) produces no second effect.

The natural id of a delivery is its ``trigger_id`` (slash commands, block actions, view
submissions) or ``event_id``. Listeners call ``first_delivery`` *after* ``ack()`` and
only before a side effect: the INSERT stays off the ack path (measured: it was the whole
ack-latency gap to a bare Bolt app), and read-only answers need no dedupe at all.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, Respond

from bot import metrics
from bot.ports import Chat
from bot.store import Store

log = logging.getLogger(__name__)


def delivery_key(body: dict[str, Any]) -> str | None:
    if body.get("event_id"):
        return f"event:{body['event_id']}"
    kind = body.get("type") or ("command" if body.get("command") else None)
    trigger = body.get("trigger_id")
    if trigger:
        return f"{kind}:{trigger}"
    return None


def first_delivery(store: Store, body: dict[str, Any]) -> bool:
    """True for the first delivery of this request; False for a retry (already handled)."""
    key = delivery_key(body)
    if key is None or store.first_delivery(key):
        return True
    log.info("duplicate Slack delivery %s ignored", key)
    metrics.DUPLICATE_DELIVERIES.inc()
    return False


ClickHandler = Callable[[dict[str, Any], str, str], Any]  # (body, user id, button value)


def on_click(app: App, action: str | re.Pattern[str], fn: ClickHandler, *, store: Store,
             chat: Chat) -> None:
    """The one shape of a button listener: ack, drop Slack retries, run ``fn``, and show
    any refusal or error to the clicker only."""
    from handlers.errors import tell_user

    @app.action(action)
    def listener(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        if not first_delivery(store, body):
            return
        try:
            fn(body, body["user"]["id"], str(body["actions"][0].get("value") or ""))
        except Exception as exc:
            tell_user(chat, body, exc, respond)
