"""Delivery dedupe: a Slack retry (same body, ``X-Slack-Retry-Num``) produces no second effect.

The natural id of a delivery is its ``trigger_id`` (slash commands, block actions, view
submissions) or ``event_id``; the first delivery is recorded in PostgreSQL and any later
copy is acknowledged with an empty 200 without reaching a listener.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import App, BoltResponse

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


def register(app: App, store: Store) -> None:
    @app.middleware
    def dedupe_deliveries(body: dict[str, Any], next: Callable[[], Any]) -> Any:  # noqa: A002
        key = delivery_key(body)
        if key is not None and not store.first_delivery(key):
            log.info("duplicate Slack delivery %s ignored", key)
            return BoltResponse(status=200, body="")
        return next()
