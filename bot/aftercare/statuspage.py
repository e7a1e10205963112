"""A small client for a Statuspage-compatible API: create, update and resolve an incident.

The API key is read at call time, sent only as a header and scrubbed from every error.

The aftercare layer's error tree is this one class (the other layers' are in
``bot.domain.errors``, ``bot.persistence.errors``, ``bot.integrations.errors`` and
``bot.execution.errors``)::

    RollbackBotError            (bot.domain.errors)
    └── StatuspageError         no API key, unreachable, an HTTP error or an answer without
                                JSON; the message is safe to post (the notifier says it in
                                the thread and carries on)
"""

from __future__ import annotations

from typing import Any

import httpx

from bot.checks.probes import safe_url, scrub_secrets
from bot.domain.config import StatuspageConfig, secret
from bot.domain.errors import RollbackBotError

INCIDENT_STATUSES = ("investigating", "identified", "monitoring", "resolved")
COMPONENT_STATUSES = ("operational", "degraded_performance", "partial_outage", "major_outage")


class StatuspageError(RollbackBotError):
    """The status page could not be updated; the message is safe to post.

    ``status`` is the HTTP status (None: no answer); ``retry_after`` the seconds a 429 asked
    to wait (Statuspage sends ``Retry-After`` with its rate-limit answers)."""

    def __init__(self, message: str, *, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after

    @property
    def permanent(self) -> bool:
        """A 4xx other than 429: the same request will be refused again (a deleted incident,
        a status the page does not accept, a wrong key)."""
        return self.status is not None and 400 <= self.status < 500 and self.status != 429


class StatuspageClient:
    def __init__(self, cfg: StatuspageConfig, *, client: httpx.Client | None = None,
                 timeout: float = 10.0) -> None:
        self.cfg = cfg
        # Usually the process's client (bot.integrations.http_client), not closed here; the
        # timeout goes with each request, since a shared client's default is not ours.
        self._client = client or httpx.Client(timeout=timeout)
        self._owns_client = client is None
        self.timeout = timeout

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> StatuspageClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ operations
    def create_incident(self, *, name: str, status: str, body: str,
                        component_status: str | None = None) -> str:
        incident: dict[str, Any] = {"name": name, "status": status, "body": body}
        incident.update(self._components(component_status))
        data = self._call("POST", "/incidents", {"incident": incident})
        return str(data["id"])

    def update_incident(self, incident_id: str, *, status: str, body: str,
                        component_status: str | None = None) -> None:
        incident: dict[str, Any] = {"status": status, "body": body}
        incident.update(self._components(component_status))
        self._call("PATCH", f"/incidents/{incident_id}", {"incident": incident})

    def resolve_incident(self, incident_id: str, *, body: str) -> None:
        self.update_incident(incident_id, status="resolved", body=body,
                             component_status="operational")

    def incident_bodies(self, incident_id: str) -> list[str]:
        """The bodies of the incident's updates (is an update whose answer was lost there?)."""
        data = self._call("GET", f"/incidents/{incident_id}", None)
        updates = data.get("incident_updates") if isinstance(data, dict) else None
        return [str(u.get("body", "")) for u in updates or [] if isinstance(u, dict)]

    def find_unresolved(self, name_contains: str) -> str | None:
        """The id of an open incident whose name contains ``name_contains`` (reconciling a
        create whose answer was lost)."""
        data = self._call("GET", "/incidents/unresolved", None)
        for incident in data if isinstance(data, list) else []:
            if name_contains in str(incident.get("name", "")):
                return str(incident["id"])
        return None

    # ------------------------------------------------------------------ plumbing
    def _components(self, status: str | None) -> dict[str, Any]:
        if not self.cfg.component_id or status is None:
            return {}
        return {"component_ids": [self.cfg.component_id],
                "components": {self.cfg.component_id: status}}

    def _call(self, method: str, path: str, payload: dict[str, Any] | None) -> Any:
        key = secret(self.cfg.api_key_env)
        if not key:
            raise StatuspageError(f"env var {self.cfg.api_key_env} is not set")
        url = f"{self.cfg.api_url.rstrip('/')}/pages/{self.cfg.page_id}{path}"
        where = safe_url(url)
        try:
            resp = self._client.request(method, url, json=payload,
                                        headers={"Authorization": f"OAuth {key}"},
                                        timeout=self.timeout)
        except httpx.HTTPError as exc:
            detail = scrub_secrets(f"{type(exc).__name__}: {exc}", [key])
            raise StatuspageError(f"status page {where} unreachable: {detail}") from None
        if resp.status_code >= 400:
            snippet = scrub_secrets(resp.text[:200], [key])
            raise StatuspageError(f"status page {method} {where} answered HTTP "
                                  f"{resp.status_code}: {snippet}", status=resp.status_code,
                                  retry_after=_retry_after(resp))
        try:
            return resp.json()
        except ValueError:
            raise StatuspageError(f"status page {where} answered without JSON") from None


def _retry_after(resp: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After: <seconds>`` header (the form Statuspage sends)."""
    try:
        return max(0.0, float(resp.headers.get("Retry-After", "")))
    except ValueError:
        return None
