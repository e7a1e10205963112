"""Delivery dedupe: a Slack retry (same body, ``X-Slack-Retry-Num``) produces no second effect.

The natural id of a delivery is its ``trigger_id`` (slash commands, block actions, view
submissions) or ``event_id``. Listeners call ``first_delivery`` *after* ``ack()`` and
only before a side effect: the INSERT stays off the ack path (measured: it was the whole
ack-latency gap to a bare Bolt app), and read-only answers need no dedupe at all.
"""

from __future__ import annotations

import logging
from typing import Any

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
    return False
