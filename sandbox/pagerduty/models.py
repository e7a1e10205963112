"""The Events API v2 as PagerDuty describes it: what an event must look like, what each
action does to the alert of its ``dedup_key``. An oracle written from the published text,
independent of the bot's client (``bot.integrations.pagerduty``).

Sources (PagerDuty/developer-docs): docs/events-API-v2/02-Trigger-Events.md (parameters,
"Alert De-Duplication", "Event Action Behavior"), 01-Overview.md ("Response Codes & Retry
Logic", PD-CEF), 05-Rate-Limits.md (429). The 400 body, ``{"status": "invalid event",
"message": "Event object is invalid", "errors": [...]}``, is the one PagerDuty's own client
documentation shows (the pagerduty Ruby gem's README, "Debugging Error Responses").
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")  # 02-Trigger-Events.md payload.severity
ROUTING_KEY_LENGTH = 32  # "the 32 character Integration Key"
SUMMARY_MAX, DEDUP_KEY_MAX = 1024, 255


@dataclass
class Alert:
    """One alert: opened by a trigger, acknowledged, resolved; ``triggers`` counts the
    trigger events it absorbed (a second trigger on an open key joins it)."""

    routing_key: str
    dedup_key: str
    summary: str
    severity: str
    status: str = "triggered"  # triggered | acknowledged | resolved
    triggers: int = 1
    payload: dict[str, Any] = field(default_factory=dict)
    links: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Received:
    """One request as it arrived and what it was answered (for tests and the console)."""

    event: Any
    status: int
    answer: dict[str, Any]


def validate(event: Any) -> list[str]:
    """The reasons ``event`` is an invalid event (empty: valid)."""
    if not isinstance(event, dict):
        return ["Event object must be a JSON object"]
    errors: list[str] = []
    key = event.get("routing_key")
    if not isinstance(key, str) or not key:
        errors.append("'routing_key' is missing or blank")
    elif len(key) != ROUTING_KEY_LENGTH:
        errors.append(f"Length of 'routing_key' is incorrect (should be {ROUTING_KEY_LENGTH} "
                      "characters)")
    action = event.get("event_action")
    if action not in ACTIONS:
        errors.append("'event_action' is invalid (must be one of trigger, acknowledge, "
                      "resolve)")
    dedup = event.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or len(dedup) > DEDUP_KEY_MAX):
        errors.append(f"'dedup_key' must be a string of at most {DEDUP_KEY_MAX} characters")
    # "dedup_key ... Required for acknowledge and resolve": a follow-up names its alert.
    if action in ("acknowledge", "resolve") and not dedup:
        errors.append(f"'dedup_key' is required for event_action {action}")
    if action == "trigger":
        errors += _payload_errors(event.get("payload"))
        errors += _context_errors(event, "links", "href")
        errors += _context_errors(event, "images", "src")
    return errors


def _payload_errors(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return ["'payload' is missing or not an object"]
    errors: list[str] = []
    for name in ("summary", "source", "severity"):  # PD-CEF's required fields
        if not isinstance(payload.get(name), str) or not payload.get(name):
            errors.append(f"'payload.{name}' is missing or blank")
    summary = payload.get("summary")
    if isinstance(summary, str) and len(summary) > SUMMARY_MAX:
        errors.append(f"'payload.summary' is longer than {SUMMARY_MAX} characters")
    severity = payload.get("severity")
    if isinstance(severity, str) and severity and severity not in SEVERITIES:
        errors.append("'payload.severity' is invalid (must be one of critical, error, "
                      "warning, info)")
    stamp = payload.get("timestamp")
    if stamp is not None:  # "Timestamp (ISO 8601)"
        try:
            datetime.fromisoformat(str(stamp))
        except ValueError:
            errors.append("'payload.timestamp' is not an ISO 8601 timestamp")
    details = payload.get("custom_details")
    if details is not None and not isinstance(details, dict | str):
        errors.append("'payload.custom_details' must be an object")
    return errors


def _context_errors(event: dict[str, Any], name: str, required: str) -> list[str]:
    items = event.get(name)
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(i, dict) and i.get(required)
                                              for i in items):
        return [f"'{name}' must be a list of objects, each with '{required}'"]
    return []


class Events:
    """The alerts of every routing key, changed the way "Event Action Behavior" says."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.alerts: list[Alert] = []  # oldest first; a resolved key may open a new one
        self.received: list[Received] = []

    def open_alert(self, routing_key: str, dedup_key: str) -> Alert | None:
        return next((a for a in reversed(self.alerts) if a.routing_key == routing_key
                     and a.dedup_key == dedup_key and a.status != "resolved"), None)

    def apply(self, event: dict[str, Any]) -> dict[str, Any]:
        """A valid event: its effect, and the 202 answer."""
        routing_key, action = str(event["routing_key"]), str(event["event_action"])
        key = str(event.get("dedup_key") or uuid.uuid4())  # a trigger without one: a UUID
        alert = self.open_alert(routing_key, key)
        if action == "trigger":
            if alert is None:  # none open (or the last one resolved): a new alert
                payload = dict(event["payload"])
                self.alerts.append(Alert(routing_key, key, payload["summary"],
                                         payload["severity"], payload=payload,
                                         links=list(event.get("links") or [])))
            else:  # "a trigger log entry is created on an existing alert"
                alert.triggers += 1
        elif alert is not None:  # acknowledge/resolve of an open alert of this routing key
            alert.status = "acknowledged" if action == "acknowledge" else "resolved"
        # else: "dropped" (no open alert for the key via this routing key), still accepted
        return {"status": "success", "message": "Event processed", "dedup_key": key}
