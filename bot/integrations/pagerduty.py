"""A client for PagerDuty's Events API v2: trigger, acknowledge and resolve one alert per key.

What it follows (PagerDuty/developer-docs, docs/events-API-v2/02-Trigger-Events.md and
01-Overview.md "Response Codes & Retry Logic"; 05-Rate-Limits.md):

* one endpoint, ``POST https://events.pagerduty.com/v2/enqueue``, a JSON event with
  ``routing_key`` (the integration key), ``event_action`` (trigger|acknowledge|resolve),
  ``dedup_key`` (at most 255 characters) and, for a trigger, ``payload`` {summary (at most
  1024 characters), source, severity (critical|error|warning|info), timestamp, component,
  group, class, custom_details} plus ``links``;
* 202 accepted ``{status, message, dedup_key}``; 400 "invalid event" is not retried (the
  event is wrong and stays wrong); 429 and 5xx and network errors are retried "after some
  time", with backoff;
* events with the same ``dedup_key`` apply to the open alert: a second trigger joins it,
  so sending an event again after a crash opens no second alert.

The routing key is read from the environment at call time, sent only in the body and never
logged: every error message here is built without it and scrubbed.

Errors (``bot.integrations.errors`` holds the layer's tree; these two are this module's)::

    IntegrationError
    └── PagerDutyError(status_code)      refused (400) or gave up after the retries
        └── PagerDutyRejected             400: the event itself is invalid; never retried
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import httpx

from bot.domain.config import PagerDutyConfig, secret
from bot.integrations.errors import IntegrationError
from bot.observability.scrub import scrub

log = logging.getLogger(__name__)

Action = Literal["trigger", "acknowledge", "resolve"]
SUMMARY_MAX = 1024  # 02-Trigger-Events.md: payload.summary
DEDUP_KEY_MAX = 255  # 02-Trigger-Events.md: dedup_key


class PagerDutyError(IntegrationError):
    """An event PagerDuty did not accept; the message is safe to post (no routing key)."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        self.status_code = status_code
        super().__init__(message)


class PagerDutyRejected(PagerDutyError):
    """400 "invalid event": sending it again cannot help."""


def dedup_key(rollback_ref: str) -> str:
    """One alert per rollback: every escalation of ``RB-12`` joins ``rollback-bot/RB-12``."""
    return f"rollback-bot/{rollback_ref}"


@dataclass(frozen=True)
class Alert:
    """The facts of a trigger (``payload`` and ``links`` of the event)."""

    summary: str
    source: str
    severity: str = "critical"
    timestamp: datetime | None = None
    component: str | None = None
    group: str | None = None
    event_class: str | None = None  # ``class`` on the wire
    custom_details: dict[str, Any] = field(default_factory=dict)
    links: tuple[tuple[str, str], ...] = ()  # (href, text)

    def payload(self) -> dict[str, Any]:
        summary = self.summary if len(self.summary) <= SUMMARY_MAX else \
            self.summary[:SUMMARY_MAX - 1] + "…"
        body: dict[str, Any] = {"summary": summary, "source": self.source,
                                "severity": self.severity}
        if self.timestamp is not None:
            body["timestamp"] = self.timestamp.isoformat()
        for key, value in (("component", self.component), ("group", self.group),
                           ("class", self.event_class)):
            if value:
                body[key] = value
        if self.custom_details:
            body["custom_details"] = self.custom_details
        return body


@dataclass(frozen=True)
class Accepted:
    """PagerDuty's 202 answer."""

    status: str
    message: str
    dedup_key: str


class PagerDutyClient:
    """Send one event, retrying 429/5xx/network errors with exponential backoff (the
    injected ``sleep``); a 400 is raised at once."""

    def __init__(self, cfg: PagerDutyConfig, *, routing_key_env: str | None = None,
                 client: httpx.Client | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 backoff_base_seconds: float = 1.0, max_backoff_seconds: float = 30.0) -> None:
        self.cfg = cfg
        self.routing_key_env = routing_key_env or cfg.routing_key_env
        # Usually the process's client (bot.integrations.http_client), not closed here; the
        # timeout goes with each request, since a shared client's default is not ours.
        self._client = client or httpx.Client(timeout=cfg.timeout_seconds)
        self._owns_client = client is None
        self.sleep = sleep
        self.backoff_base = backoff_base_seconds
        self.max_backoff = max_backoff_seconds

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> PagerDutyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ events
    def trigger(self, key: str, alert: Alert) -> Accepted:
        links = [{"href": href, "text": text} for href, text in alert.links]
        return self.send("trigger", key, payload=alert.payload(), links=links)

    def acknowledge(self, key: str) -> Accepted:
        return self.send("acknowledge", key)

    def resolve(self, key: str) -> Accepted:
        return self.send("resolve", key)

    def send(self, action: Action, key: str, *, payload: dict[str, Any] | None = None,
             links: list[dict[str, str]] | None = None) -> Accepted:
        routing_key = secret(self.routing_key_env)
        if not routing_key:
            raise PagerDutyError(f"the PagerDuty routing key variable {self.routing_key_env} "
                                 "is not set")
        if len(key) > DEDUP_KEY_MAX:
            raise PagerDutyRejected(f"dedup_key longer than {DEDUP_KEY_MAX} characters")
        event: dict[str, Any] = {"routing_key": routing_key, "event_action": action,
                                 "dedup_key": key}
        if payload is not None:
            event["payload"] = payload
        if links:
            event["links"] = links
        attempts = self.cfg.max_attempts
        for attempt in range(1, attempts + 1):
            try:
                return self._post(event, action, key)
            except PagerDutyRejected:
                raise
            except PagerDutyError as exc:
                if attempt == attempts:
                    raise PagerDutyError(f"{exc} (gave up after {attempts} attempts)",
                                         status_code=exc.status_code) from None
                delay = min(self.max_backoff, self.backoff_base * 2 ** (attempt - 1))
                log.warning("PagerDuty %s for %s: %s; retrying in %.1f s", action, key, exc,
                            delay)
                self.sleep(delay)
        raise AssertionError("unreachable")

    def _post(self, event: dict[str, Any], action: str, key: str) -> Accepted:
        try:
            resp = self._client.post(self.cfg.events_url, json=event,
                                     timeout=self.cfg.timeout_seconds)
        except httpx.HTTPError as exc:  # network: retried (01-Overview.md)
            raise PagerDutyError(scrub(f"PagerDuty unreachable: {type(exc).__name__}")) \
                from None
        body = _json(resp)
        if resp.status_code == 202:
            return Accepted(str(body.get("status", "")), str(body.get("message", "")),
                            str(body.get("dedup_key") or key))
        detail = "; ".join(str(e) for e in body.get("errors") or []) or \
            str(body.get("message") or resp.reason_phrase)
        message = scrub(f"PagerDuty refused the {action} ({resp.status_code}): {detail}")
        if resp.status_code == 400:
            raise PagerDutyRejected(message, status_code=400)
        # 429 and 5xx are retried; so is anything else unexpected, within the budget.
        raise PagerDutyError(message, status_code=resp.status_code)


def _json(resp: httpx.Response) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
